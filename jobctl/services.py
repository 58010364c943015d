"""Service clients of one worker process, built lazily from Settings (STYLE rule 4).

Nothing connects until a processor first uses it, so a test points a `Settings` at local
servers and gets clients for them; a forked worker builds its own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import unquote, urlsplit

import requests
from sqlalchemy import Engine

from jobctl.config import Settings, mask_url
from jobctl.db import engine_for, init_db
from jobctl.storage import Storage, open_storage

USER_AGENT = "jobctl/0.1"


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to send mail, parsed from `smtp://user:pass@host:587` or `smtps://…`."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"SmtpConfig({self.host!r}, {self.port}, tls={self.implicit_tls}, user={self.username!r})"

    @property
    def loopback(self) -> bool:
        """Whether the server is on this host (plain SMTP without TLS is then acceptable)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_smtp_url(url: str) -> SmtpConfig:
    """SmtpConfig from an smtp:// (STARTTLS when offered) or smtps:// (implicit TLS) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"invalid SMTP URL {mask_url(url)}: use smtp://user:pass@host:587 or smtps://")
    implicit = parts.scheme == "smtps"
    return SmtpConfig(
        host=parts.hostname,
        port=parts.port or (465 if implicit else 587),
        implicit_tls=implicit,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class Services:
    """The database engine, storage, HTTP session and SMTP settings of one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def engine(self) -> Engine:
        """The application database, its tables created on first use."""
        engine = engine_for(self.settings.database_url)
        init_db(engine)
        return engine

    @cached_property
    def storage(self) -> Storage:
        """The configured object storage."""
        return open_storage(self.settings.storage_url, self.settings.s3_endpoint_url)

    @cached_property
    def http(self) -> requests.Session:
        """One pooled HTTP session (OneSignal, webhooks)."""
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        return session

    @cached_property
    def smtp(self) -> SmtpConfig | None:
        """SMTP settings, or None to write e-mails to the outbox."""
        return parse_smtp_url(self.settings.smtp_url) if self.settings.smtp_url else None

    def close(self) -> None:
        """Release pooled HTTP connections (the engine is shared per process; see db.dispose_engines)."""
        if "http" in self.__dict__:
            self.http.close()
