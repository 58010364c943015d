"""Scrub configured secrets out of error text before it is stored or logged.

Upstream services answer errors with bodies that jobctl keeps (the job hash, the dead-letter row, the
log); a proxy that echoes the request's `Authorization` header puts an API key in all three. Every
place that records an error passes its text through `Redactor.scrub`:

- the worker's failure path (`Runner.fail`): the job hash, RQ's result stream, the hooks' events;
- the dead-letter capture (`deadletter.capture` and `reconcile`), for reasons written by others.

The secrets are every `config.SECRET_FIELDS` value (API keys, tokens, passwords, secret URLs whole
and their path), and the credentials of every URL setting (user info, query values), each also in
its percent-encoded and HTTP Basic (base64 `user:password`) forms, as a client would send them.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from jobctl.config import SECRET_FIELDS, Settings

MASK = "****"
MIN_SECRET_CHARS = 4  # a shorter value would mask ordinary words of the text
_SECRET_PARAM = re.compile(r"(?i)token|key|secret|pass|sig|auth|credential")


def _url_parts(url: str, whole: bool) -> list[str]:
    """The secret parts of one URL: its user info and secret-looking query values (for a secret URL:
    every query value, the URL itself and its path)."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:  # unparseable: the whole value is all we can name
        return [url]
    out: list[str] = []
    if password:
        out += [password, unquote(password)]
        pair = f"{unquote(user or '')}:{unquote(password)}"
        out.append(base64.b64encode(pair.encode()).decode())
    if user and not password and parts.scheme in ("http", "https"):  # https://token@host
        out.append(unquote(user))
    out += [v for k, v in parse_qsl(parts.query) if whole or _SECRET_PARAM.search(k)]
    if whole:
        out += [url, parts.path.strip("/")] if len(parts.path.strip("/")) >= 8 else [url]
    return out


def secrets_of(settings: Settings) -> list[str]:
    """Every configured secret of `settings`, longest first (so a secret containing another is
    masked whole)."""
    found: list[str] = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name, None)
        if not isinstance(value, str) or not value:
            continue
        secret = f.name in SECRET_FIELDS
        if "://" in value:
            found += _url_parts(value, whole=secret)
        elif secret:
            found.append(value)
    variants = {v for s in found for v in (s, quote(s, safe=""))}
    return sorted((v for v in variants if len(v) >= MIN_SECRET_CHARS), key=len, reverse=True)


class Redactor:
    """Replaces every configured secret with `****`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        ordered = sorted(set(secrets), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def scrub(self, text: str | None) -> str | None:
        """`text` with each secret masked (None stays None)."""
        if not text or self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def __call__(self, text: str) -> str:
        """`scrub` for a str that is never None."""
        return self.scrub(text) or ""


_cache: dict[int, tuple[Settings, Redactor]] = {}
_lock = threading.Lock()


def for_settings(settings: Settings) -> Redactor:
    """The Redactor of one Settings object (built once per object)."""
    with _lock:
        hit = _cache.get(id(settings))
        if hit is None or hit[0] is not settings:
            if len(_cache) > 64:
                _cache.clear()
            hit = _cache[id(settings)] = (settings, Redactor(secrets_of(settings)))
        return hit[1]


def scrub(settings: Settings, text: str | None) -> str | None:
    """`text` without any secret configured in `settings`."""
    return for_settings(settings).scrub(text)
