"""Recurring schedules kept in Redis, fired at most once per due time by any number of schedulers.

A schedule is a cron string (UTC) or an interval anchored on the Unix epoch, so every scheduler
process computes the same due times from `now`. At a due time, whoever first wins `SET NX` on the
schedule's once-scope enqueues the run through `jobctl.producer` with a deterministic job id (or
runs its command in-process); the others skip. `jobctl cleanup` fires the same cleanup
schedules for the UTC day, so cron on several hosts and the scheduler never double a cleanup.

rq-scheduler is not used: it pickles jobs by default (and zlib-compresses even JSON data), enqueues
plain RQ jobs without jobctl's fields and wake-up marker under one reused job id, computes cron times
in host-local time, and lets two schedulers enqueue the same run when its lock expires mid-run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import redis
from croniter import croniter

from jobctl import keys
from jobctl.durations import iso, parse_instant
from jobctl.errors import JobctlError, JobSignal, OperationFailed, UsageError, printable
from jobctl.processors import BUILTINS
from jobctl.producer import enqueue
from jobctl.runtime import Runtime

log = logging.getLogger(__name__)

MAX_SLEEP_S = 30.0
CLEANUP_QUEUE = "data-cleanup"
CLEANUP_TASKS = tuple(t.name.removeprefix("cleanup-") for t in BUILTINS if t.queue == CLEANUP_QUEUE)
CLEANUP_CRON = "0 2 * * *"
CLEANUP_GUARD_S = 2 * 86400


@dataclass(frozen=True)
class Schedule:
    """A recurring run: `cron` (UTC) or every `every_s` seconds; enqueues `queue`/`job` or runs `command`."""

    name: str
    cron: str | None = None
    every_s: int | None = None
    queue: str | None = None
    job: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    command: str | None = None
    job_id: str = "{name}-{stamp}"
    once: str = "schedule:{name}:{stamp}"
    installed_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain dict, as stored in Redis."""
        return {**asdict(self), "payload": dict(self.payload)}

    @classmethod
    def from_json(cls, raw: str | bytes) -> Schedule:
        """A schedule from its stored JSON (unknown fields ignored); ValueError saying what is wrong with it."""
        try:
            doc = json.loads(raw)
        except ValueError as exc:  # also bytes that are not UTF-8
            raise ValueError(f"not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"not a JSON object but {type(doc).__name__}")
        if "name" not in doc:
            raise ValueError("no 'name' field")
        for key, kinds in _FIELD_TYPES.items():
            value = doc.get(key)
            if key in doc and (not isinstance(value, kinds) or isinstance(value, bool)):
                want = " or ".join("null" if k is type(None) else _TYPE_NAMES[k] for k in kinds)
                raise ValueError(f"field '{key}' is {type(value).__name__}, not {want}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    def fill(self, template: str, due: datetime) -> str:
        """A job-id or once-scope template filled for one due time."""
        return template.format(name=self.name, date=due.date().isoformat(), stamp=due.strftime("%Y%m%dT%H%M%SZ"))

    def same_as(self, other: Schedule) -> bool:
        """Whether the definitions match (ignoring when each was installed)."""
        return replace(self, installed_at=None).to_json() == replace(other, installed_at=None).to_json()


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "cron": (str, type(None)), "every_s": (int, type(None)), "queue": (str, type(None)),
    "job": (str, type(None)), "payload": (dict,), "command": (str, type(None)), "job_id": (str,),
    "once": (str,), "installed_at": (str, type(None)),
}
_TYPE_NAMES = {str: "a string", int: "an integer", dict: "an object"}


def cleanup_schedule(task: str) -> Schedule:
    """The daily schedule of one cleanup task; `jobctl cleanup` shares its job id and once-scope."""
    job = f"cleanup-{task}"
    return Schedule(job, cron=CLEANUP_CRON, queue=CLEANUP_QUEUE, job=job,
                    job_id="{name}-{date}", once=f"cleanup:{task}:{{date}}")


DEFAULTS: tuple[Schedule, ...] = (
    *(cleanup_schedule(t) for t in CLEANUP_TASKS),
    Schedule("health", every_s=300, command="health"),
)


def last_due(s: Schedule, now: datetime) -> datetime:
    """The latest due time at or before `now`."""
    if s.cron:
        return croniter(s.cron, now + timedelta(microseconds=1)).get_prev(datetime).replace(fold=0)
    step = int(s.every_s or 0)
    return datetime.fromtimestamp(int(now.timestamp()) // step * step, UTC)


def next_due(s: Schedule, now: datetime) -> datetime:
    """The earliest due time strictly after `now`."""
    if s.cron:
        return croniter(s.cron, now).get_next(datetime).replace(fold=0)
    return last_due(s, now) + timedelta(seconds=int(s.every_s or 0))


def guard_ttl_s(s: Schedule, due: datetime) -> int:
    """How long a fired run's guard lives: two periods, so the run cannot fire again while it is latest."""
    return max(60, int(2 * (next_due(s, due) - due).total_seconds()))


def sleep_s(schedules: Sequence[Schedule], now: datetime) -> float:
    """Seconds until the next due time, capped so new definitions are picked up soon."""
    waits = [(next_due(s, now) - now).total_seconds() for s in schedules]
    return max(0.2, min([MAX_SLEEP_S, *waits]))


def check(s: Schedule, rt: Runtime) -> Schedule:
    """The schedule, or a UsageError naming what is wrong with it."""
    if not s.name or len(s.name) > 64 or not all(c.isalnum() or c in "-_." for c in s.name):
        raise UsageError(f"invalid schedule name {s.name!r}: 1-64 letters, digits, '-', '_' or '.'")
    if (s.cron is None) == (s.every_s is None):
        raise UsageError(f"schedule {s.name}: give exactly one of a cron string or an interval")
    if s.cron is not None and not croniter.is_valid(s.cron):
        raise UsageError(f"schedule {s.name}: invalid cron string {s.cron!r} (five fields, UTC)")
    if s.every_s is not None and (not isinstance(s.every_s, int) or s.every_s < 1):
        raise UsageError(f"schedule {s.name}: interval must be a whole number of seconds >= 1")
    try:
        now = datetime.now(UTC)
        guard_ttl_s(s, last_due(s, now))
    except (ValueError, OverflowError):  # croniter's errors are ValueErrors: "0 0 31 2 *" never falls due
        when = f"cron string {s.cron!r}" if s.cron is not None else f"interval {s.every_s}"
        raise UsageError(f"schedule {s.name}: {when} never falls due (or not within this calendar)") from None
    if s.command is not None:
        if s.command not in COMMANDS or s.job is not None:
            raise UsageError(f"schedule {s.name}: command must be one of {', '.join(COMMANDS)}, without a job")
    elif s.queue is None or s.job is None:
        raise UsageError(f"schedule {s.name}: give a queue and a job, or a command")
    else:
        rt.settings.queues.check_job(s.queue, s.job)  # the payload is validated when enqueued (pydantic: ~0.3 s)
    for what, template in (("job_id", s.job_id), ("once", s.once)):
        try:
            s.fill(template, datetime(2026, 1, 1, tzinfo=UTC))
        except (KeyError, IndexError, ValueError, AttributeError):
            raise UsageError(f"schedule {s.name}: invalid {what} template {template!r} "
                             "(fields: {name}, {date}, {stamp})") from None
    if s.installed_at is not None:
        parse_instant(s.installed_at, f"schedule {s.name}: installed_at")
    return s


@dataclass(frozen=True)
class Invalid:
    """A stored entry that is not a valid schedule: skipped by the scheduler, listed with the reason."""

    name: str
    reason: str
    raw: str

    def to_json(self) -> dict[str, Any]:
        """The fields of a schedule (null), marked invalid, with the reason and the stored text."""
        empty = dict.fromkeys(f.name for f in fields(Schedule))
        return empty | {"name": self.name, "next_run": None, "valid": False, "error": self.reason, "raw": self.raw}


class StoreUnreadable(OperationFailed):
    """The schedules key holds something other than a hash: no schedule can be read (exit 1)."""


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


@contextlib.contextmanager
def _readable(rt: Runtime) -> Iterator[None]:
    """Redis's WRONGTYPE on the schedules key becomes StoreUnreadable, naming what the key holds."""
    try:
        yield
    except redis.ResponseError as exc:
        if "WRONGTYPE" not in str(exc):
            raise
        kind = _text(rt.redis.type(keys.schedules()))
        raise StoreUnreadable(f"{keys.schedules()} is a {kind}, not a hash: no schedule can be read; delete it "
                              "and run `jobctl schedule install`") from None


def parse(rt: Runtime, name: str, raw: bytes | str) -> Schedule | Invalid:
    """The stored entry `name` as a checked Schedule, or Invalid with the reason."""
    try:
        s = Schedule.from_json(raw)
        if s.name != name:
            raise ValueError(f"stored under {name!r} but named {s.name!r}")
        return check(s, rt)
    except (ValueError, UsageError) as exc:
        reason = str(exc).removeprefix(f"schedule {name}: ")
        return Invalid(name, reason, _text(raw))


def load(rt: Runtime) -> tuple[list[Schedule], list[Invalid]]:
    """The installed schedules that are valid and those that are not, each by name (StoreUnreadable when the
    key is not a hash)."""
    with _readable(rt):
        raw = rt.redis.hgetall(keys.schedules())
    good: list[Schedule] = []
    bad: list[Invalid] = []
    for key, value in sorted(raw.items()):
        entry = parse(rt, _text(key), value)
        if isinstance(entry, Schedule):
            good.append(entry)
        else:
            bad.append(entry)
    return good, bad


def load_all(rt: Runtime) -> list[Schedule]:
    """Every installed schedule that is valid, by name (see `load` for the others)."""
    return load(rt)[0]


def install(rt: Runtime, schedules: Sequence[Schedule], now: datetime) -> list[tuple[str, str]]:
    """Store schedules idempotently; returns (name, "installed" | "updated" | "unchanged") pairs."""
    out = []
    with _readable(rt):
        for s in schedules:
            check(s, rt)
            stamped = replace(s, installed_at=iso(now))
            raw = rt.redis.hget(keys.schedules(), s.name)
            if raw is None:
                added = rt.redis.hsetnx(keys.schedules(), s.name, json.dumps(stamped.to_json()))
                out.append((s.name, "installed" if added else "unchanged"))
            elif _same(raw, s):
                out.append((s.name, "unchanged"))
            else:  # changed, or not a valid entry: the definition replaces it
                rt.redis.hset(keys.schedules(), s.name, json.dumps(stamped.to_json()))
                out.append((s.name, "updated"))
    return out


def _same(raw: bytes | str, s: Schedule) -> bool:
    try:
        return Schedule.from_json(raw).same_as(s)
    except (ValueError, TypeError):
        return False


def remove(rt: Runtime, names: Sequence[str], everything: bool = False) -> list[str]:
    """Delete schedules by name (or all); an unknown name removes nothing and lists the known ones."""
    with _readable(rt):
        known = [_text(n) for n in rt.redis.hkeys(keys.schedules())]
    if everything:
        names = known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"unknown schedule {unknown[0]!r}; known schedules: {', '.join(sorted(known)) or 'none'}")
    if names:
        rt.redis.hdel(keys.schedules(), *names)
    return sorted(set(names))


@dataclass(frozen=True)
class Fired:
    """What a schedule did at one due time: `action` is enqueued, duplicate, ran or failed."""

    name: str
    due: datetime
    action: str
    job_id: str | None = None
    detail: str | None = None


def health_check(rt: Runtime) -> str:
    """`jobctl health --notify` in this process: the scheduler's 5-minute check; returns the status."""
    from jobctl import health

    report = health.run(rt)
    for sent in health.notify(rt, report):
        if sent.error:
            log.warning("%s alert not sent: %s", sent.name, sent.error)
    return report.status


COMMANDS: dict[str, Callable[[Runtime], str]] = {"health": health_check}


def fire(rt: Runtime, s: Schedule, due: datetime, ttl_s: int | None = None) -> Fired:
    """Run `s` for `due` unless another process already did (SET NX on its once-scope)."""
    scope = keys.once(s.fill(s.once, due))
    job_id = s.fill(s.job_id, due) if s.job else None
    owner = f"{socket.gethostname()}:{os.getpid()}"
    if not rt.redis.set(scope, owner, nx=True, ex=ttl_s or guard_ttl_s(s, due)):
        return Fired(s.name, due, "duplicate", job_id)
    try:
        if s.command:
            return Fired(s.name, due, "ran", None, COMMANDS[s.command](rt))
        out = enqueue(rt, str(s.queue), str(s.job), dict(s.payload), job_id=job_id)
    except BaseException:
        rt.redis.delete(scope)  # not run: let the next tick (here or on another host) try again
        raise
    return Fired(s.name, due, "duplicate" if out.status == "duplicate" else "enqueued", job_id)


def tick(rt: Runtime, now: datetime, schedules: Sequence[Schedule] | None = None) -> list[Fired]:
    """Fire each schedule's latest due time (at or before `now`, not before it was installed) once."""
    out = []
    for s in load_all(rt) if schedules is None else schedules:
        due = last_due(s, now)
        if s.installed_at and due < parse_instant(s.installed_at):
            continue
        try:
            out.append(fire(rt, s, due))
        except (JobctlError, redis.ResponseError) as exc:  # one bad schedule never stops others
            log.error("schedule %s at %s failed: %s", printable(s.name), iso(due), printable(exc))
            out.append(Fired(s.name, due, "failed", detail=str(exc)))
    return out


def report_invalid(invalid: Sequence[Invalid], reported: dict[str, str]) -> None:
    """Log each invalid entry once (again only when its stored text changes); `reported` remembers them."""
    for bad in invalid:
        if reported.get(bad.name) != bad.raw:
            log.error("schedule %s skipped: %s", printable(bad.name), printable(bad.reason))
    reported.clear()
    reported.update((bad.name, bad.raw) for bad in invalid)


def run(rt: Runtime, stop: threading.Event, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """Tick until `stop` is set; a Redis outage is logged and retried, an invalid entry logged once and skipped."""
    reported: dict[str, str] = {}
    unreadable = ""
    while not stop.is_set():
        try:
            schedules, invalid = load(rt)
            unreadable = ""
            report_invalid(invalid, reported)
            for f in tick(rt, clock(), schedules):
                level = logging.DEBUG if f.action == "duplicate" else logging.INFO
                log.log(level, "%s due %s: %s %s", printable(f.name), iso(f.due), f.action,
                        printable(f.job_id or f.detail or ""))
            wait = sleep_s(schedules, clock()) if schedules else MAX_SLEEP_S
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Redis unavailable (%s); retrying in 5 s", type(exc).__name__)
            wait = 5.0
        except StoreUnreadable as exc:
            if str(exc) != unreadable:
                log.error("%s; retrying every 5 s", exc)
            unreadable, wait = str(exc), 5.0
        stop.wait(wait)


@dataclass(frozen=True)
class TaskOutcome:
    """One cleanup task's outcome (`jobctl cleanup --json`); `error` only when it failed."""

    task: str
    action: str
    job_id: str | None = None
    deletedCount: int | None = None  # noqa: N815 - documented field name (docs/commands/cleanup.md)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain dict for `--json` (no `error` key unless it failed)."""
        doc = asdict(self)
        if self.error is None:
            del doc["error"]
        return doc


def check_tasks(names: Sequence[str]) -> list[str]:
    """Known cleanup task names in the given order without repeats (none given: all)."""
    unknown = [n for n in names if n not in CLEANUP_TASKS]
    if unknown:
        raise UsageError(f"unknown cleanup task {unknown[0]!r}; known tasks: {', '.join(CLEANUP_TASKS)}")
    return list(dict.fromkeys(names)) or list(CLEANUP_TASKS)


def enqueue_cleanup(rt: Runtime, tasks: Sequence[str], day: date) -> list[TaskOutcome]:
    """Enqueue each cleanup task at most once per UTC `day`, whichever host or scheduler asks first."""
    due = datetime.combine(day, time(0), UTC)
    out = []
    for task in tasks:
        f = fire(rt, cleanup_schedule(task), due, ttl_s=CLEANUP_GUARD_S)
        out.append(TaskOutcome(task, f.action, f.job_id))
    return out


def run_cleanup(rt: Runtime, tasks: Sequence[str], dry_run: bool = False) -> list[TaskOutcome]:
    """Run cleanup processors in this process; `dry_run` only counts. A job signal marks the task failed."""
    from jobctl.context import JobContext
    from jobctl.services import Services

    services = Services(rt.settings)
    out = []
    try:
        for task in tasks:
            job = f"cleanup-{task}"
            fn = rt.settings.queues.job_type(job).function()
            ctx = JobContext(job_id=f"{job}-now", job_name=job, queue=CLEANUP_QUEUE,
                             settings=rt.settings, services=services)
            try:
                result = fn(rt.settings.queues.validate(job, {"dryRun": dry_run}), ctx)
            except JobSignal as exc:
                out.append(TaskOutcome(task, "failed", error=str(exc)))
            else:
                out.append(TaskOutcome(task, "ran", deletedCount=int(result["deletedCount"])))
    finally:
        services.close()
    return out
