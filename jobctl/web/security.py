"""The dashboard's safety rules as small pure functions: who may sign in, which Host and Origin are accepted,
which addresses it may bind. `app.py` applies them to every request."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from jobctl.config import Settings

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def has_credential(s: Settings) -> bool:
    """Whether actions can be enabled: a token, or a user and a password, is set."""
    return bool(s.dashboard_token or (s.dashboard_user and s.dashboard_password))


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts local connections (`localhost`, 127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_login(s: Settings, user: str, secret: str) -> str | None:
    """The user name to audit when `user`/`secret` match the configured credential, else None. With a token,
    the name typed is recorded as `name (token)` (a shared token cannot prove who typed it)."""
    user = user.strip()[:64]
    if s.dashboard_user and s.dashboard_password and hmac.compare_digest(user.encode(), s.dashboard_user.encode()) \
            and hmac.compare_digest(secret.encode(), s.dashboard_password.encode()):
        return user
    if s.dashboard_token and hmac.compare_digest(secret.encode(), s.dashboard_token.encode()):
        return f"{user or 'anonymous'} (token)"
    return None


def session_key(s: Settings) -> bytes:
    """The key that signs session cookies: derived from the credential, so every process serving the
    dashboard agrees on it and changing the credential signs everybody out."""
    secret = "\0".join([s.dashboard_token or "", s.dashboard_user or "", s.dashboard_password or ""])
    return hmac.new(secret.encode(), b"jobctl-dashboard-session-v1", hashlib.sha256).digest()


def host_name(host_header: str) -> str:
    """The name part of a Host header (`127.0.0.1:9181` -> `127.0.0.1`, `[::1]:80` -> `::1`), lower case."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:].partition("]")[0]
    return h.rpartition(":")[0] if h.count(":") == 1 else h


def host_allowed(host_header: str, allowed: Iterable[str] | None) -> bool:
    """Whether a request's Host is one the dashboard answers (None: any, the host app checks it)."""
    if allowed is None:
        return True
    return host_name(host_header) in {a.strip().lower().strip("[]") for a in allowed if a.strip()}


def same_origin(origin: str | None, referer: str | None, host_header: str) -> bool:
    """Whether a state-changing request comes from a page of this dashboard: its Origin (or, without one, its
    Referer) names the Host it was sent to. Neither header: refused (browsers send Origin with every POST)."""
    source = origin if origin and origin != "null" else referer
    if not source:
        return False
    try:
        netloc = urlsplit(source).netloc.lower()
    except ValueError:
        return False
    return bool(netloc) and netloc == host_header.strip().lower()


def allowed_hosts(bind_host: str, extra: str | None) -> list[str] | None:
    """Host names `jobctl dashboard` answers: loopback names (and the bound address) plus `dashboard_hosts`;
    None (any) when bound to every interface without a list, where the credential guards every page."""
    names = [h.strip() for h in (extra or "").split(",") if h.strip()]
    if bind_host in ("0.0.0.0", "::", "") and not names:
        return None
    return [*LOOPBACK_NAMES, bind_host, *names]
