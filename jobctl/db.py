"""The application database (docs/settings.md): SQLAlchemy Core tables on one MetaData, and engines.

SQLite in the data directory by default (WAL, busy timeout), PostgreSQL via psycopg 3 in
production. Every timestamp column is `UtcDateTime`: written from aware datetimes, stored as
UTC (naive on SQLite, `timestamptz` on PostgreSQL), always read back as aware UTC.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Engine,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
    text,
    true,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.types import TypeDecorator

from jobctl.config import mask_url
from jobctl.errors import ServiceUnavailable

SQLITE_BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_S = 5


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that only accepts aware datetimes and always returns aware UTC ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC; SQLite stores it naive so string comparisons stay ordered."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware UTC whatever the backend returned."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("email", Text, nullable=False),
    Column("lang", Text, nullable=False, server_default="en"),
    Column("push_enabled", Boolean, nullable=False, server_default=true()),
    Column("onesignal_player_id", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False, default=utcnow),
)

audit_logs = Table(
    "audit_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime, nullable=False, default=utcnow, index=True),
    Column("action", Text, nullable=False, server_default=""),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Text, nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False, default=utcnow, index=True),
    Column("body", Text, nullable=False, server_default=""),
)

email_log = Table(
    "email_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("recipient", Text, nullable=False),
    Column("template", Text, nullable=False),
    Column("message_id", Text, nullable=True),
    Column("sent_at", UtcDateTime, nullable=False, default=utcnow),
)

claims = Table(  # a side effect in progress ("email:<key>", "webhook:<event id>"): claimed before it
    "claims",      # starts, removed once its log (email_log, webhook_events) records it or it failed
    metadata,
    Column("idempotency_key", Text, primary_key=True),
    Column("owner", Text, nullable=False),  # the job id of the run doing it
    Column("claimed_at", UtcDateTime, nullable=False, default=utcnow),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", Text, nullable=False, unique=True),
    Column("event_type", Text, nullable=False),
    Column("processed_at", UtcDateTime, nullable=False, default=utcnow),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("queue", Text, nullable=False),
    Column("job", Text, nullable=False),
    Column("job_id", Text, nullable=False),
    Column("data", Text, nullable=False),  # the payload as JSON text
    Column("error", Text, nullable=False, server_default=""),
    Column("traceback", Text, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("first_failed_at", UtcDateTime, nullable=True),
    Column("failed_at", UtcDateTime, nullable=False, default=utcnow),
    Column("status", Text, nullable=False, server_default="open"),
    Column("replayed_at", UtcDateTime, nullable=True),
    Column("replay_job_id", Text, nullable=True),
    UniqueConstraint("job_id", "failed_at", name="uq_dead_letters_job_failed"),
    Index("ix_dead_letters_status_failed", "status", "failed_at"),
    Index("ix_dead_letters_queue_failed", "queue", "failed_at"),
    Index("ix_dead_letters_failed_id", "failed_at", "id"),  # pages over every status: newest first, no sort
    # at most one open entry per job (a job that fails again supersedes it); added to existing stores,
    # after merging duplicates, by jobctl.deadletter's migration
    Index("uq_dead_letters_open_job", "job_id", unique=True, sqlite_where=text("status = 'open'"),
          postgresql_where=text("status = 'open'")),
)

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """The engine of `url`, created once per process (call `dispose_engines` after a fork)."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create(url)
        return engine


def forget_engines_after_fork() -> None:
    """In a forked child: drop inherited engines without closing the parent's connections."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()


def dispose_engines() -> None:
    """Close every pooled connection and forget the engines (after fork, at exit, in tests)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _create(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed.render_as_string(hide_password=False))
    args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        args["connect_timeout"] = CONNECT_TIMEOUT_S
    return create_engine(parsed, pool_pre_ping=True, connect_args=args)


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise unavailable(url, exc) from None
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def masked(url: str) -> str:
    """The database URL with its password replaced by ****."""
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError):
        return mask_url(url)
    text = parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)
    return text.replace(":***@", ":****@", 1)


def unavailable(url: str, exc: BaseException) -> ServiceUnavailable:
    """A ServiceUnavailable naming the database with its password masked (and never the password)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    try:
        password = make_url(url).password
    except (sa_exc.ArgumentError, ValueError):
        password = None
    if password:
        reason = reason.replace(str(password), "****")
    connect = not isinstance(exc, sa_exc.DBAPIError) or exc.connection_invalidated or _is_connect_error(exc)
    what = "unreachable at" if connect else "failed at"
    return ServiceUnavailable(f"database {what} {masked(url)}: {reason}")


@contextmanager
def reachable(engine: Engine) -> Iterator[None]:
    """Turn every database error inside the block into ServiceUnavailable (exit code 4) naming the
    database with its password masked: a refused connection, a read-only or full disk, an I/O error,
    a lock timeout. Only IntegrityError passes through (callers use it to detect concurrent inserts)."""
    try:
        yield
    except sa_exc.IntegrityError:
        raise
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
        raise unavailable(engine.url.render_as_string(hide_password=False), exc) from None


def _is_connect_error(exc: sa_exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(s in text for s in ("connect", "unable to open", "could not translate", "timeout"))


def _is_creation_race(exc: sa_exc.DBAPIError) -> bool:
    """Another process created a table (or its type) between our check and our CREATE."""
    return isinstance(exc, sa_exc.IntegrityError) or "already exists" in str(exc.orig).lower()


def init_db(engine: Engine) -> None:
    """Create the application tables that do not exist yet (idempotent; another process creating
    them at the same moment is waited out, table by table)."""
    import time

    url = engine.url.render_as_string(hide_password=False)
    for attempt in range(5):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except sa_exc.DBAPIError as exc:
            if attempt == 4 or not _is_creation_race(exc):
                raise unavailable(url, exc) from None
            time.sleep(0.05 * (attempt + 1))
        except sa_exc.TimeoutError as exc:
            raise unavailable(url, exc) from None
