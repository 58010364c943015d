"""Operator controls on queues, jobs and workers (read functions never write)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from jobctl import keys
from jobctl.errors import NotFound, OperationFailed, printable
from jobctl.jobs import JobView, view
from jobctl.runtime import Runtime
from jobctl.scripts import Cancel

log = logging.getLogger("jobctl.control")


def _dec(h: Any) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in h.items()}


def _s(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def show_job(rt: Runtime, job_id: str) -> JobView:
    """A job's state, or NotFound (exit 3)."""
    h = rt.redis.hgetall(keys.job(job_id))
    if not h:
        raise NotFound(f"no job {job_id!r} (finished jobs are kept 1 hour)")
    return view(job_id, _dec(h), h)


def cancel_job(rt: Runtime, job_id: str) -> str:
    """Cancel a waiting or delayed job so it never runs; returns its previous status."""
    before = rt.scripts.run(Cancel(job=keys.job(job_id)))
    before = before.decode() if isinstance(before, bytes) else str(before)
    if not before:
        raise NotFound(f"no job {job_id!r}")
    if before not in ("queued", "scheduled"):
        raise OperationFailed(f"job {job_id} is {before}; only queued or scheduled jobs can be cancelled")
    return before


def paused(rt: Runtime) -> set[str]:
    """Names of paused queues."""
    return {_s(m) for m in rt.redis.smembers(keys.paused())}


def set_paused(rt: Runtime, names: list[str], pause: bool) -> None:
    """Pause or resume queues (workers stop taking from them; jobs keep arriving)."""
    for name in names:
        rt.settings.queues.get(name)
    if pause:
        rt.redis.sadd(keys.paused(), *names)
    else:
        rt.redis.srem(keys.paused(), *names)
        for name in names:
            rt.redis.zadd(keys.marker(name), {"m": 0})


def register_queues(rt: Runtime, names: list[str] | None = None) -> None:
    """Add the queues' own levels to RQ's queue set, so RQ tools list them before any job arrives."""
    policies = [rt.settings.queues.get(n) for n in names] if names else rt.settings.queues.policies
    try:
        rt.redis.sadd(keys.queues_set(), *(keys.queue_list(p.level()) for p in policies))
    except redis.ResponseError as exc:  # foreign data (SPEC §9): RQ's tools miss the queues, jobctl runs on
        if "WRONGTYPE" not in str(exc):
            raise
        kind = printable(_s(rt.redis.type(keys.queues_set())))
        log.warning("Redis key %s holds a %s where RQ keeps its set of queues: RQ's tools will not list "
                    "jobctl's queues until it is removed; jobs still run", keys.queues_set(), kind)


def empty_queue(rt: Runtime, name: str, progress: Callable[[int, int], None] | None = None) -> int:
    """Delete every waiting job of a queue (all priority levels); returns how many.
    `progress(done, total)` follows the batches deleted."""
    removed = 0
    levels = [keys.queue_list(level) for _p, level in rt.settings.queues.get(name).levels()]
    total = sum(rt.redis.llen(lk) for lk in levels) if progress else 0
    for lk in levels:
        while True:
            ids = rt.redis.lpop(lk, 1000)
            if not ids:
                break
            with rt.redis.pipeline(transaction=False) as pipe:
                for jid in ids:
                    pipe.delete(keys.job(_s(jid)))
                pipe.execute()
            removed += len(ids)
            if progress:
                progress(removed, max(total, removed))
    return removed


@dataclass(frozen=True)
class WorkerView:
    """One live worker pool (docs/commands/workers.md)."""

    name: str
    host: str
    pid: int
    queues: list[str]
    state: str
    concurrency: int  # slots, all queues together
    current_jobs: list[str] = field(default_factory=list)
    last_heartbeat: str | None = None
    slots: dict[str, int] = field(default_factory=dict)  # queue -> slots
    processes: int = 0

    def to_json(self) -> dict[str, Any]:
        """Plain dict for `--json`."""
        return asdict(self)


def pool_slots(raw: str | bytes | None) -> dict[str, int]:
    """A pool's `slots` field (queue -> slots, JSON); {} when absent or unreadable."""
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int)} if isinstance(value, dict) else {}


def list_workers(rt: Runtime) -> list[WorkerView]:
    """Live worker pools with their running jobs (expired entries are skipped, not deleted)."""
    from datetime import UTC, datetime

    from jobctl.durations import iso

    names = [_s(n) for n in rt.redis.zrange(keys.workers(), 0, -1)]
    with rt.redis.pipeline(transaction=False) as pipe:
        for n in names:
            pipe.hgetall(keys.worker(n))
        infos = [_dec(h) for h in pipe.execute()]
    out = []
    for name, info in zip(names, infos, strict=True):
        if not info:
            continue
        runners = [r for r in info.get("runners", "").split(",") if r]
        with rt.redis.pipeline(transaction=False) as pipe:
            for r in runners:
                pipe.hkeys(keys.active(r))
            jobs = [_s(j) for ks in pipe.execute() for j in ks]
        hb = info.get("heartbeat")
        out.append(WorkerView(name, info.get("host", "?"), int(info.get("pid", 0)),
                              info.get("queues", "").split(","), info.get("state", "?"),
                              int(info.get("concurrency", 0)), jobs,
                              iso(datetime.fromtimestamp(float(hb), UTC)) if hb else None,
                              pool_slots(info.get("slots")), int(info.get("processes") or 0)))
    return out


# -- reads for the web dashboard: index-range reads only, so a page costs the same at 1,000,000 jobs ---------

JOB_STATES = ("waiting", "active", "delayed", "completed", "failed", "canceled")
_ROW_FIELDS = ("status", "jc_job", "description", "jc_attempt", "jc_max", "enqueued_at", "ended_at", "jc_error")


@dataclass(frozen=True)
class JobRow:
    """One job of a page: id, priority level and the hash fields a list shows (None when the hash is gone)."""

    id: str
    level: str
    status: str | None
    job: str | None
    attempts: int | None
    max_attempts: int | None
    enqueued_at: str | None
    ended_at: str | None
    error: str | None


@dataclass(frozen=True)
class JobPage:
    """A slice of a queue's jobs in one state, levels in priority order (each in its own order)."""

    queue: str
    state: str
    total: int
    offset: int
    rows: list[JobRow]


def _state_key(state: str, level: str) -> str:
    return {"waiting": keys.queue_list, "active": keys.wip, "delayed": keys.scheduled, "completed": keys.finished,
            "failed": keys.failed, "canceled": keys.canceled}[state](level)


def _slices(sizes: list[int], offset: int, limit: int) -> list[tuple[int, int, int]]:
    """(level index, start, stop inclusive) ranges covering [offset, offset + limit) of the concatenated levels."""
    out = []
    for i, n in enumerate(sizes):
        if limit <= 0:
            break
        if offset >= n:
            offset -= n
            continue
        stop = min(n, offset + limit) - 1
        out.append((i, offset, stop))
        limit -= stop - offset + 1
        offset = 0
    return out


def job_counts(rt: Runtime, queue: str) -> dict[str, int]:
    """How many jobs a queue has in each state, levels merged (LLEN/ZCARD per level and state, one round trip)."""
    levels = [level for _p, level in rt.settings.queues.get(queue).levels()]
    with rt.redis.pipeline(transaction=False) as pipe:
        for state in JOB_STATES:
            for level in levels:
                (pipe.llen if state == "waiting" else pipe.zcard)(_state_key(state, level))
        sizes = iter(pipe.execute())
    return {state: sum(int(next(sizes)) for _level in levels) for state in JOB_STATES}


def list_jobs(rt: Runtime, queue: str, state: str, offset: int = 0, limit: int = 50) -> JobPage:
    """A page of a queue's jobs in one state: LLEN/ZCARD per level, then LRANGE/ZRANGE of the page only, then
    HMGET of its rows (three round trips whatever the queue holds). Waiting jobs come in taking order, delayed
    ones soonest first, the registries of ended jobs newest first."""
    if state not in JOB_STATES:
        from jobctl.errors import UsageError

        raise UsageError(f"unknown state {state!r}; known: {', '.join(JOB_STATES)}")
    levels = [level for _p, level in rt.settings.queues.get(queue).levels()]
    r = rt.redis
    with r.pipeline(transaction=False) as pipe:
        for level in levels:
            (pipe.llen if state == "waiting" else pipe.zcard)(_state_key(state, level))
        sizes = [int(n) for n in pipe.execute()]
    ranges = _slices(sizes, max(0, offset), max(0, limit))
    with r.pipeline(transaction=False) as pipe:
        for i, start, stop in ranges:
            key = _state_key(state, levels[i])
            if state == "waiting":
                pipe.lrange(key, start, stop)
            elif state in ("active", "delayed"):
                pipe.zrange(key, start, stop)
            else:
                pipe.zrevrange(key, start, stop)
        found = [(levels[i], _s(m).split(":")[0]) for (i, _a, _b), ms in zip(ranges, pipe.execute(), strict=True)
                 for m in ms]
    with r.pipeline(transaction=False) as pipe:
        for _level, jid in found:
            pipe.hmget(keys.job(jid), list(_ROW_FIELDS))
        hashes = pipe.execute() if found else []
    rows = []
    for (level, jid), values in zip(found, hashes, strict=True):
        v = dict(zip(_ROW_FIELDS, (_s(x) if x is not None else None for x in values), strict=True))
        rows.append(JobRow(jid, level, v["status"], v["jc_job"] or v["description"], _num(v["jc_attempt"]),
                           _num(v["jc_max"]), v["enqueued_at"], v["ended_at"], (v["jc_error"] or "")[:200] or None))
    return JobPage(queue, state, sum(sizes), max(0, offset), rows)


def _num(v: str | None) -> int | None:
    try:
        return int(v) if v else None
    except ValueError:
        return None


@dataclass(frozen=True)
class JobDetail:
    """`show_job` plus what a job page shows besides: its level, traceback and dead-letter entry."""

    view: JobView
    level: str | None
    traceback: str | None
    dead_letter_id: int | None
    created_at: str | None


def job_detail(rt: Runtime, job_id: str) -> JobDetail:
    """A job's view with its traceback and dead-letter id (one HGETALL), or NotFound (exit 3)."""
    h = rt.redis.hgetall(keys.job(job_id))
    if not h:
        raise NotFound(f"no job {job_id!r} (finished jobs are kept 1 hour)")
    d = _dec(h)
    return JobDetail(view(job_id, d, h), d.get("origin") or None, d.get("jc_traceback") or None,
                     _num(d.get("jc_dlq")), d.get("created_at") or None)

