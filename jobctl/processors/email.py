"""send-email: render a template, send it by SMTP (or write it to the outbox), at most once per key."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from jobctl import mailer
from jobctl.context import JobContext
from jobctl.db import email_claims, email_log, utcnow
from jobctl.errors import RetryLater
from jobctl.payloads import SendEmail
from jobctl.processors._common import claim, parse, release, remember, safe_filename, seen
from jobctl.storage import atomic_write

log = logging.getLogger(__name__)
STALE_CLAIM_S = 300.0  # a claim this old belongs to a run that died mid-send (the queue's timeout is 30 s)
BUSY_RETRY_S = 5.0  # when another run is sending the same key: look again after this


def idempotency_key(payload: SendEmail, job_id: str) -> str:
    """The payload's idempotencyKey, else one derived from the job id (stable across retries)."""
    return payload.idempotencyKey or f"job:{job_id}"


def send_email(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Send the e-mail unless this key was already sent; record it only once sent. The key is claimed
    first, so two runs at once (two jobs with one idempotencyKey) cannot both send: the second retries
    later and then finds the key in the e-mail log."""
    p = parse(SendEmail, payload)
    key = idempotency_key(p, ctx.job_id)
    engine = ctx.services.engine
    if seen(engine, email_log.c.idempotency_key, key):
        return {"skipped": "already sent", "idempotencyKey": key}
    if not claim(engine, email_claims, key, ctx.job_id, utcnow(), STALE_CLAIM_S):
        raise RetryLater(BUSY_RETRY_S, f"another run is sending e-mail {key}")
    try:
        if seen(engine, email_log.c.idempotency_key, key):  # sent by the run whose claim just ended
            return {"skipped": "already sent", "idempotencyKey": key}
        return _send(p, key, ctx)
    finally:
        release(engine, email_claims, key, ctx.job_id)


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
