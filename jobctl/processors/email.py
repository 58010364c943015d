"""send-email: render a template, send it by SMTP (or write it to the outbox), at most once per key."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from jobctl import mailer
from jobctl.context import JobContext
from jobctl.db import email_log, utcnow
from jobctl.payloads import SendEmail
from jobctl.processors._common import once, parse, remember, safe_filename
from jobctl.storage import atomic_write

log = logging.getLogger(__name__)


def idempotency_key(payload: SendEmail, job_id: str) -> str:
    """The payload's idempotencyKey, else one derived from the job id (stable across retries)."""
    return payload.idempotencyKey or f"job:{job_id}"


def send_email(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Send the e-mail at most once per key (`_common.once`: claimed first, recorded once sent)."""
    p = parse(SendEmail, payload)
    key = idempotency_key(p, ctx.job_id)
    return once(ctx.services.engine, email_log.c.idempotency_key, key, ctx.job_id, "e-mail",
                lambda: _send(p, key, ctx), {"skipped": "already sent", "idempotencyKey": key})


def _send(p: SendEmail, key: str, ctx: JobContext) -> dict[str, Any]:
    engine = ctx.services.engine
    settings = ctx.settings
    text, html = mailer.render(p.template, p.lang, p.data, settings.templates_dir)
    msg_id = mailer.message_id(key, settings.mail_from)
    msg = mailer.compose(
        sender=settings.mail_from, to=str(p.to), subject=p.subject, text=text, html=html, msg_id=msg_id
    )
    smtp = ctx.services.smtp
    result: dict[str, Any]
    if smtp is None:
        path = write_outbox(settings.data_dir, key, msg.as_bytes())
        result = {"outbox": str(path), "to": str(p.to), "messageId": msg_id}
    else:
        mailer.deliver(msg, smtp)
        result = {"sent": True, "to": str(p.to), "messageId": msg_id}
    row = {"idempotency_key": key, "recipient": str(p.to), "template": p.template}
    remember(engine, email_log, {**row, "message_id": msg_id, "sent_at": utcnow()})
    log.info("e-mail %s (%s/%s) %s", msg_id, p.lang, p.template, "sent" if smtp else "written to outbox")
    return result


def write_outbox(data_dir: Path, key: str, message: bytes) -> Path:
    """Write the message to `<data_dir>/outbox/email/<key>.eml` atomically."""
    folder = data_dir / "outbox" / "email"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{safe_filename(key)}.eml"
    atomic_write(path, message)
    return path
