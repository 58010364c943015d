"""Helpers shared by processors: payload parsing, HTTP status policy, outbox files, side effects once per key."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from hashlib import sha256
from typing import Any, TypeVar

import requests
from pydantic import BaseModel, ValidationError
from sqlalchemy import Column, Engine, Table, delete, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from jobctl.config import mask_url
from jobctl.db import claims, reachable
from jobctl.errors import PermanentFailure, RetryLater
from jobctl.payloads import describe

M = TypeVar("M", bound=BaseModel)
DEFAULT_RETRY_AFTER_S = 5.0
MAX_RETRY_AFTER_S = 3600.0
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


EXCERPT_CHARS = 1000  # of an error answer, kept with the dead letter (the error line holds 200)


class HttpDeferred(Exception):
    """A remote HTTP service failed in a way worth retrying (5xx, 408, network); an HTTP answer's
    status and excerpt ride along (`http_status`, `http_excerpt`) for the dead letter's traceback."""

    def __init__(self, reason: str, status: int | None = None, excerpt: str = "") -> None:
        super().__init__(reason)
        self.http_status = status
        self.http_excerpt = excerpt


class HttpRefused(PermanentFailure):
    """A remote HTTP service refused the request (4xx but 408/429): not retried; keeps the status and
    a bounded excerpt of the answer for the dead letter's traceback."""

    def __init__(self, reason: str, status: int, excerpt: str) -> None:
        super().__init__(reason)
        self.http_status = status
        self.http_excerpt = excerpt


def parse(model: type[M], payload: object) -> M:
    """The payload as `model`; an invalid one is a permanent failure naming the field."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise PermanentFailure(f"invalid payload: {describe(exc)}") from None


def safe_filename(key: str) -> str:
    """`key` as a file name: itself when already safe, else a cleaned prefix plus a short hash."""
    cleaned = _SAFE.sub("_", key).strip("._")[:80]
    if cleaned == key and key:
        return key
    return f"{cleaned}-{sha256(key.encode()).hexdigest()[:12]}"


def retry_after_s(value: str | None, now: datetime, default: float = DEFAULT_RETRY_AFTER_S) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), capped at an hour."""
    if not value:
        return default
    try:
        delay = float(value.strip())
    except ValueError:
        try:
            delay = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError):
            return default
    return min(max(delay, 0.0), MAX_RETRY_AFTER_S)


def check_response(resp: requests.Response, service: str, throttle_queue: bool = False) -> None:
    """Nothing on 2xx; RetryLater on 429 (with `throttle_queue`, the whole queue pauses for
    Retry-After); HttpDeferred on 408/5xx; HttpRefused (a PermanentFailure) on other codes."""
    status = resp.status_code
    if 200 <= status < 300:
        return
    detail = f"{service} answered HTTP {status}: {resp.text[:200]!r}"
    if status == 429:
        raise RetryLater(retry_after_s(resp.headers.get("Retry-After"), datetime.now(UTC)), detail,
                         throttle_queue=throttle_queue)
    excerpt = resp.text[:EXCERPT_CHARS]
    if status == 408 or status >= 500:
        raise HttpDeferred(detail, status, excerpt)
    raise HttpRefused(detail, status, excerpt)


def post(session: requests.Session, url: str, service: str, **kwargs: object) -> requests.Response:
    """POST, turning network errors into HttpDeferred without echoing the URL's secrets."""
    try:
        return session.post(url, **kwargs)  # type: ignore[arg-type]
    except requests.RequestException as exc:
        raise HttpDeferred(f"{service} at {mask_url(url)} unreachable: {type(exc).__name__}") from None


def seen(engine: Engine, column: Column[str], value: str) -> bool:
    """Whether a row with `column == value` exists (an idempotency record)."""
    with reachable(engine), engine.connect() as conn:
        return bool(conn.execute(select(exists().where(column == value))).scalar())


def remember(engine: Engine, table: Table, values: dict[str, object]) -> bool:
    """Insert an idempotency record; False when a concurrent run already recorded it."""
    try:
        with reachable(engine), engine.begin() as conn:
            conn.execute(insert(table).values(**values))
    except IntegrityError:
        return False
    return True


STALE_CLAIM_S = 300.0  # a claim this old belongs to a run that died mid-way (the queues' timeouts are <= 30 s)
BUSY_RETRY_S = 5.0  # when another run is doing the same side effect: look again after this


def once(engine: Engine, log_column: Column[str], key: str, owner: str, what: str,
         effect: Callable[[], dict[str, Any]], skipped: dict[str, Any]) -> dict[str, Any]:
    """Run `effect` (which records `key` in `log_column`'s table when done) at most once per key, also
    when two runs with one key run at once: the key is claimed in `claims` first, so the second run
    raises RetryLater and its retry finds the log. Already logged: `skipped`. A claim left by a run that
    died is taken over by the same job's retry at once, by any other after STALE_CLAIM_S."""
    if seen(engine, log_column, key):
        return skipped
    name = f"{log_column.table.name}:{key}"
    if not _claim(engine, name, owner, datetime.now(UTC), STALE_CLAIM_S):
        raise RetryLater(BUSY_RETRY_S, f"another run is doing {what} {key}")
    try:
        if seen(engine, log_column, key):  # done by the run whose claim just ended
            return skipped
        return effect()
    finally:
        _release(engine, name, owner)


def _claim(engine: Engine, key: str, owner: str, now: datetime, stale_s: float) -> bool:
    """True when the claim on `key` is new, already `owner`'s, or older than `stale_s`; False while
    another live run holds it."""
    c = claims.c
    with reachable(engine):
        try:
            with engine.begin() as conn:
                conn.execute(insert(claims).values(idempotency_key=key, owner=owner, claimed_at=now))
            return True
        except IntegrityError:
            pass
        with engine.begin() as conn:
            taken = conn.execute(update(claims).where(
                c.idempotency_key == key,
                or_(c.owner == owner, c.claimed_at < now - timedelta(seconds=stale_s)),
            ).values(owner=owner, claimed_at=now))
            return bool(taken.rowcount == 1)


def _release(engine: Engine, key: str, owner: str) -> None:
    with reachable(engine), engine.begin() as conn:
        conn.execute(delete(claims).where(claims.c.idempotency_key == key, claims.c.owner == owner))
