"""The durable dead-letter store (docs/commands/dlq.md): the `dead_letters` and `dead_letter_audit` tables,
their entries and filters, and who acts on them.

Every permanent failure becomes one `open` row, written by `jobctl.capture` (the worker's hook, or
reconciliation from Redis after a database outage). A job has at most one open row (the partial unique
index `uq_dead_letters_open_job`): when a job that RQ's tools requeued fails again, its failure
supersedes the open row in one atomic upsert (`DeadLetterStore.record`) instead of adding a second one.
`jobctl.replay` replays and purges entries, `jobctl.export` exports them. Every database error here is
ServiceUnavailable (exit 4), naming the database with its password masked.
"""

from __future__ import annotations

import contextvars
import functools
import getpass
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    Index,
    Integer,
    Select,
    Table,
    Text,
    case,
    event,
    func,
    insert,
    inspect,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from jobctl import db
from jobctl.db import UtcDateTime, dead_letters, utcnow
from jobctl.durations import iso
from jobctl.errors import NotFound, ServiceUnavailable
from jobctl.progress import Tick
from jobctl.runtime import Runtime

log = logging.getLogger("jobctl.deadletter")
BATCH = 500
BUSY_WAITS_S = (0.5, 1.0)  # a locked SQLite file: try again after these before calling it an outage
STATUSES = ("open", "replayed", "purged")
MAX_ID = 2**31 - 1  # the largest id an `integer` column holds on PostgreSQL (SQLite's is larger)
OPEN_INDEX = "uq_dead_letters_open_job"
PAGE_INDEX = "ix_dead_letters_failed_id"  # keyset pages over every status (jobctl.web.paging)
_READY: set[str] = set()  # database URLs whose tables this process has created

dead_letter_audit = Table(
    "dead_letter_audit",
    db.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, default=utcnow),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("entry_ids", Text, nullable=False),  # JSON array of dead-letter ids
    Column("detail", Text, nullable=False, server_default=""),
    Index("ix_dead_letter_audit_at", "at"),
)


@dataclass(frozen=True)
class Failure:
    """One permanent failure as captured from the worker or from Redis."""

    queue: str
    job: str
    job_id: str
    payload: dict[str, Any]
    error: str
    traceback: str | None
    attempts: int
    failed_at: datetime


@dataclass(frozen=True)
class Entry:
    """One dead-letter row (the entry fields of docs/commands/dlq.md, plus traceback and first failure)."""

    id: int
    queue: str
    job: str
    job_id: str
    data: Any
    error: str
    attempts: int
    failed_at: datetime
    status: str
    replayed_at: datetime | None
    replay_job_id: str | None
    traceback: str | None = None
    first_failed_at: datetime | None = None

    def to_json(self, full: bool = False) -> dict[str, Any]:
        """The documented entry fields with ISO-8601 UTC times; `full` adds traceback and first_failed_at."""
        doc = asdict(self)
        for k in ("failed_at", "replayed_at", "first_failed_at"):
            doc[k] = iso(doc[k]) if doc[k] else None
        if not full:
            del doc["traceback"], doc["first_failed_at"]
        return doc


@dataclass(frozen=True)
class Ref:
    """An entry's keys: enough to settle it (`jobctl.capture.settle`)."""

    id: int
    job_id: str
    failed_at: datetime
    status: str


@dataclass(frozen=True)
class Filter:
    """Which entries a command addresses (empty = every entry)."""

    ids: tuple[int, ...] = ()
    queue: str | None = None
    job: str | None = None
    since_s: float | None = None
    older_than_s: float | None = None
    status: str | None = None
    limit: int | None = None
    error: str | None = None  # a substring, any case, of the failure reason or of its traceback, whose last
    # line names the exception class (a permanent failure's reason reads "permanent failure: ...")

    def query(self, now: datetime, newest_first: bool = True) -> Select[Any]:
        """The SELECT of the matching rows."""
        t = dead_letters.c
        conds: list[ColumnElement[bool]] = [t.id.in_(self.ids)] if self.ids else []
        conds += [t.queue == self.queue] if self.queue else []
        conds += [t.job == self.job] if self.job else []
        conds += [t.status == self.status] if self.status else []
        if self.error:
            escaped = self.error.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
            conds.append(or_(t.error.ilike(pattern, escape="\\"), t.traceback.ilike(pattern, escape="\\")))
        if self.since_s is not None:
            conds.append(t.failed_at >= now - timedelta(seconds=self.since_s))
        if self.older_than_s is not None:
            conds.append(t.failed_at <= now - timedelta(seconds=self.older_than_s))
        order = (t.failed_at.desc(), t.id.desc()) if newest_first else (t.failed_at, t.id)
        return select(dead_letters).where(*conds).order_by(*order).limit(self.limit)


@dataclass(frozen=True)
class Outcome:
    """What replay (or purge) did to one entry: replayed, would replay, skipped, failed, purged."""

    id: int
    queue: str
    job: str
    action: str
    replay_job_id: str | None = None
    reason: str | None = None


def _entry(row: Any) -> Entry:
    m = row._mapping
    try:
        data = json.loads(m["data"])
    except ValueError:
        data = m["data"]
    return Entry(m["id"], m["queue"], m["job"], m["job_id"], data, m["error"], m["attempts"], m["failed_at"],
                 m["status"], m["replayed_at"], m["replay_job_id"], m["traceback"], m["first_failed_at"])


_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("jobctl_actor", default=None)


@contextmanager
def acting_as(who: str) -> Iterator[None]:
    """Audit records written inside this block name `who` (the dashboard's signed-in user) as the actor."""
    token = _ACTOR.set(who)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def actor() -> str:
    """Who runs this command: the user set by `acting_as`, else `user@host`."""
    if who := _ACTOR.get():
        return who
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


_READY_LOCK = threading.Lock()


@functools.cache
def _upsert(dialect: str) -> Any:
    """`record`'s statement (built once per dialect: building it costs more than running it)."""
    t = dead_letters.c
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(dead_letters)
    ex = ins.excluded
    return ins.on_conflict_do_update(
        index_elements=[t.job_id], index_where=text("status = 'open'"),
        set_={"queue": ex.queue, "job": ex.job, "data": ex.data, "error": ex.error, "traceback": ex.traceback,
              "failed_at": ex.failed_at, "first_failed_at": func.coalesce(t.first_failed_at, t.failed_at),
              "attempts": case((ex.attempts > t.attempts, ex.attempts), else_=t.attempts + ex.attempts)},
        where=t.failed_at < ex.failed_at).returning(t.id)


class DeadLetterStore:
    """The `dead_letters` and `dead_letter_audit` tables of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def conn(self, create: bool = True) -> Iterator[Connection]:
        """A transaction; database outages become ServiceUnavailable (exit 4)."""
        key = str(self.engine.url)
        with db.reachable(self.engine):
            if create and key not in _READY:
                with _READY_LOCK:  # slots of one process dead-letter at once into a fresh database
                    if key not in _READY:
                        db.init_db(self.engine)
                        _READY.add(key)
            with self.engine.begin() as conn:
                yield conn

    def ready(self) -> None:
        """Create the tables if needed; ServiceUnavailable (exit 4) if the database does not answer."""
        with self.conn():
            pass

    def exists(self, table: Table = dead_letters) -> bool:
        """Whether a table exists (reads never create them)."""
        with db.reachable(self.engine):
            return inspect(self.engine).has_table(table.name)

    def record(self, f: Failure) -> tuple[int, bool]:
        """Insert one failure unless already recorded (same job id and failure time): (id, new). A locked
        SQLite file (another process's writer past the busy timeout) is contention, not an outage: it is
        tried again after each of BUSY_WAITS_S (idempotent: a retry never records twice)."""
        for wait_s in BUSY_WAITS_S:
            try:
                return self._record(f)
            except ServiceUnavailable as exc:
                if "database is locked" not in str(exc) and "database table is locked" not in str(exc):
                    raise
                time.sleep(wait_s)
        return self._record(f)

    def _record(self, f: Failure) -> tuple[int, bool]:
        """One atomic upsert on the job's open row (never check-then-insert, so two runners recording the
        same job at once leave one open row): no open row yet inserts one; an open row of an earlier
        failure takes this one's reason, traceback, payload and time, keeps its first failure time in
        `first_failed_at`, and counts the attempts of both runs (a requeued job with attempts left
        continues its count; one whose attempts were spent starts again from 1, so they are added).
        An open row of this failure or a later one is left as it is (not new)."""
        row = {"queue": f.queue, "job": f.job, "job_id": f.job_id, "data": json.dumps(f.payload),
               "error": f.error, "traceback": f.traceback, "attempts": f.attempts, "failed_at": f.failed_at,
               "status": "open"}
        for _ in range(3):  # the row found below can be settled meanwhile: then upsert again
            try:
                with self.conn() as c:
                    key = c.execute(_upsert(c.dialect.name), row).scalar()
                    if key is not None:
                        return int(key), True
            except IntegrityError:  # this very failure is recorded already, and no longer open
                pass
            found = self.find(f.job_id, f.failed_at)
            if found is not None:
                return found, False
        raise ServiceUnavailable(f"dead letter of job {f.job_id} neither recorded nor found")

    def find(self, job_id: str, failed_at: datetime) -> int | None:
        """The entry id of one failure if recorded, else of the job's open entry (of a later failure)."""
        t = dead_letters.c
        with self.conn() as c:
            return (c.execute(select(t.id).where(t.job_id == job_id, t.failed_at == failed_at)).scalar()
                    or c.execute(select(t.id).where(t.job_id == job_id, t.status == "open")).scalar())

    def entries(self, flt: Filter, newest_first: bool = True) -> list[Entry]:
        """The matching entries (no tables yet: none)."""
        if not self.exists():
            return []
        with self.conn(create=False) as c:
            return [_entry(r) for r in c.execute(flt.query(utcnow(), newest_first))]

    def open_after(self, after_id: int, limit: int) -> list[Ref]:
        """Up to `limit` open entries with ids above `after_id`, by id (keyset paging; only their keys).
        The table must exist (see `exists`)."""
        t = dead_letters.c
        with self.conn(create=False) as c:
            return [Ref(*r) for r in c.execute(select(t.id, t.job_id, t.failed_at, t.status)
                                               .where(t.status == "open", t.id > after_id).order_by(t.id)
                                               .limit(limit))]

    def get(self, ids: Sequence[int]) -> list[Entry]:
        """Entries by id, in the order given; NotFound (exit 3) names any unknown id."""
        found = {e.id: e for e in self.entries(Filter(ids=tuple(ids)))}
        missing = [str(i) for i in ids if i not in found]
        if missing:
            raise NotFound(f"no dead letter with id {', '.join(missing)}")
        return [found[i] for i in dict.fromkeys(ids)]

    def claim(self, entry_id: int, replay_job_id: str, failed_at: datetime | None = None) -> bool:
        """Atomically move an open entry to `replayed`; False if someone else got it first, or (with
        `failed_at`) if a later failure of its job superseded the failure it recorded meanwhile."""
        t = dead_letters.c
        conds = [t.id == entry_id, t.status == "open"] + ([t.failed_at == failed_at] if failed_at else [])
        with self.conn() as c:
            res = c.execute(update(dead_letters).where(*conds)
                            .values(status="replayed", replay_job_id=replay_job_id, replayed_at=utcnow()))
            return res.rowcount == 1

    def purge(self, ids: Sequence[int], progress: Tick | None = None) -> list[int]:
        """Mark the open ones of `ids` purged (one transaction); returns those it changed."""
        t = dead_letters.c
        done: list[int] = []
        with self.conn() as c:
            for start in range(0, len(ids), BATCH):
                stmt = (update(dead_letters).where(t.id.in_(ids[start:start + BATCH]), t.status == "open")
                        .values(status="purged").returning(t.id))
                done += [r[0] for r in c.execute(stmt)]
                if progress:
                    progress(min(start + BATCH, len(ids)), len(ids))
        return sorted(done)

    def audit(self, action: str, ids: Sequence[int], detail: str = "") -> None:
        """Record who did what to which entries."""
        with self.conn() as c:
            c.execute(insert(dead_letter_audit).values(at=utcnow(), actor=actor(), action=action,
                                                       entry_ids=json.dumps(list(ids)), detail=detail))

    def audit_log(self, limit: int | None = 50) -> list[dict[str, Any]]:
        """Audit records, newest first."""
        if not self.exists(dead_letter_audit):
            return []
        t = dead_letter_audit
        with self.conn(create=False) as c:
            rows = c.execute(select(t).order_by(t.c.at.desc(), t.c.id.desc()).limit(limit)).all()
        return [{"id": r.id, "at": iso(r.at), "actor": r.actor, "action": r.action,
                 "entry_ids": json.loads(r.entry_ids), "detail": r.detail} for r in rows]


@event.listens_for(db.metadata, "after_create")
def _migrate(_metadata: Any, conn: Connection, **_kw: Any) -> None:
    """`db.init_db` (`jobctl db init`, or a store's first use in a process) on a store made before
    `uq_dead_letters_open_job`: merge each job's open entries into its newest (the older ones become
    `replayed` by the job itself, which ran again under its own id, and are audited), then add the index.
    A store made before the paging index (`ix_dead_letters_failed_id`) gets it too."""
    present = {i["name"] for i in inspect(conn).get_indexes(dead_letters.name)}
    if PAGE_INDEX not in present:
        next(i for i in dead_letters.indexes if i.name == PAGE_INDEX).create(conn, checkfirst=True)
    if OPEN_INDEX in present:
        return
    t = dead_letters.c
    dup = select(t.job_id).where(t.status == "open").group_by(t.job_id).having(func.count() > 1)
    rows = conn.execute(select(t.id, t.job_id, t.failed_at).where(t.status == "open", t.job_id.in_(dup))
                        .order_by(t.job_id, t.failed_at.desc(), t.id.desc())).all()
    newest: dict[str, int] = {}
    first = {r.job_id: r.failed_at for r in rows}  # each job's earliest failure (rows run newest first)
    for r in rows:
        if r.job_id not in newest:
            newest[r.job_id] = r.id
            conn.execute(update(dead_letters).where(t.id == r.id).values(
                first_failed_at=func.coalesce(t.first_failed_at, literal(first[r.job_id], UtcDateTime()))))
            continue
        conn.execute(update(dead_letters).where(t.id == r.id)
                     .values(status="replayed", replay_job_id=r.job_id, replayed_at=utcnow()))
        conn.execute(insert(dead_letter_audit).values(
            at=utcnow(), actor=actor(), action="replay", entry_ids=json.dumps([r.id]),
            detail=f"superseded by entry {newest[r.job_id]}: job {r.job_id} ran again under its own id"))
    next(i for i in dead_letters.indexes if i.name == OPEN_INDEX).create(conn, checkfirst=True)


def store_for(rt: Runtime) -> DeadLetterStore:
    """The store on the runtime's application database."""
    return DeadLetterStore(db.engine_for(rt.settings.database_url))


_MOVED = ("REDIS_KEEP_S", "RETRY_STORE_S", "DeadLetterHook", "capture", "defer", "failure_from_hash", "reconcile",
          "scrubbed", "settle_requeued")


def __getattr__(name: str) -> Any:
    """The capture side moved to `jobctl.capture`; its names still resolve here for existing callers."""
    if name in _MOVED:
        from jobctl import capture

        return getattr(capture, name)
    raise AttributeError(f"module 'jobctl.deadletter' has no attribute {name!r}")
