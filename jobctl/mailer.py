"""E-mail: render a template in a language, compose a MIME message, deliver it by SMTP.

Templates live in `jobctl/templates/<lang>/<name>.{txt,html}`; a `Settings.templates_dir` with
the same layout is searched first. HTML is autoescaped; a variable a template needs but the
payload lacks is an error (StrictUndefined), not an empty string.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)
from jinja2 import UndefinedError as JinjaUndefined

from jobctl.errors import PermanentFailure
from jobctl.services import SmtpConfig

PACKAGE_TEMPLATES = Path(__file__).parent / "templates"
MESSAGE_ID_NAMESPACE = uuid.UUID("8f5d2a3e-4b1c-5e6f-9a7b-1c2d3e4f5a6b")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class MailDeferred(Exception):
    """The SMTP server is unreachable or answered 4xx: try again later (policy back-off)."""


@lru_cache(maxsize=8)
def environment(templates_dir: Path | None = None) -> Environment:
    """The Jinja2 environment: an optional user directory first, then the packaged templates."""
    loaders = [FileSystemLoader(str(templates_dir))] if templates_dir else []
    loaders.append(FileSystemLoader(str(PACKAGE_TEMPLATES)))
    return Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render(
    template: str, lang: str, data: dict[str, Any], templates_dir: Path | None = None
) -> tuple[str, str]:
    """(text, html) of `template` in `lang`; PermanentFailure when unknown or missing a variable."""
    if not _NAME.match(template) or not _NAME.match(lang):
        raise PermanentFailure(f"invalid template {template!r} or language {lang!r}")
    env = environment(templates_dir)
    try:
        text = env.get_template(f"{lang}/{template}.txt").render(data=data)
        html = env.get_template(f"{lang}/{template}.html").render(data=data)
    except TemplateNotFound:
        raise PermanentFailure(f"no e-mail template {template!r} in language {lang!r}") from None
    except JinjaUndefined as exc:
        raise PermanentFailure(f"template {lang}/{template} needs a value the payload lacks: {exc}") from None
    return text, html


def message_id(key: str, sender: str) -> str:
    """A Message-ID derived from the idempotency key, so a re-send carries the same id."""
    domain = sender.rpartition("@")[2] or "jobctl.localhost"
    return f"<{uuid.uuid5(MESSAGE_ID_NAMESPACE, key)}@{domain}>"


def compose(*, sender: str, to: str, subject: str, text: str, html: str, msg_id: str) -> EmailMessage:
    """A text + HTML alternative message under the strict SMTP policy (no header injection)."""
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = msg_id
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def deliver(msg: EmailMessage, cfg: SmtpConfig, timeout_s: float = 20.0) -> None:
    """Send by SMTP: 5xx -> PermanentFailure; 4xx, refused or dropped connections -> MailDeferred."""
    where = f"SMTP server {cfg.host}:{cfg.port}"
    try:
        with _connect(cfg, timeout_s) as smtp:
            _secure(smtp, cfg)
            if cfg.username:
                smtp.login(cfg.username, cfg.password or "")
            smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()))
        _raise_for(code, reply, f"{where} refused the recipient")
    except smtplib.SMTPResponseException as exc:
        _raise_for(exc.smtp_code, exc.smtp_error, f"{where} answered")
    except smtplib.SMTPNotSupportedError as exc:
        raise PermanentFailure(f"{where}: {exc}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise MailDeferred(f"{where} unreachable: {type(exc).__name__}: {exc}") from None


def _raise_for(code: int, reply: bytes | str, what: str) -> None:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    message = f"{what} {code} {text}".strip()
    if 500 <= code < 600:
        raise PermanentFailure(message)
    raise MailDeferred(message)


def _connect(cfg: SmtpConfig, timeout_s: float) -> smtplib.SMTP:
    if cfg.implicit_tls:
        return smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=timeout_s, context=ssl.create_default_context())
    return smtplib.SMTP(cfg.host, cfg.port, timeout=timeout_s)


def _secure(smtp: smtplib.SMTP, cfg: SmtpConfig) -> None:
    """STARTTLS when offered; credentials never travel in clear text except to this host."""
    if cfg.implicit_tls:
        return
    smtp.ehlo()
    if smtp.has_extn("starttls"):
        smtp.starttls(context=ssl.create_default_context())
        smtp.ehlo()
    elif cfg.username and not cfg.loopback:
        raise PermanentFailure(
            f"SMTP server {cfg.host}:{cfg.port} offers no STARTTLS; "
            "refusing to send credentials in clear text"
        )
