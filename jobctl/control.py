"""Operator controls on queues, jobs and workers (read functions never write)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from jobctl import keys
from jobctl.errors import NotFound, OperationFailed
from jobctl.jobs import JobView, view
from jobctl.runtime import Runtime
from jobctl.scripts import Cancel


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
    rt.redis.sadd(keys.queues_set(), *(keys.queue_list(p.level()) for p in policies))


def empty_queue(rt: Runtime, name: str) -> int:
    """Delete every waiting job of a queue (all priority levels); returns how many."""
    removed = 0
    for _p, level in rt.settings.queues.get(name).levels():
        lk = keys.queue_list(level)
        while True:
            ids = rt.redis.lpop(lk, 1000)
            if not ids:
                break
            with rt.redis.pipeline(transaction=False) as pipe:
                for jid in ids:
                    pipe.delete(keys.job(_s(jid)))
                pipe.execute()
            removed += len(ids)
    return removed


@dataclass(frozen=True)
class WorkerView:
    """One live worker pool (SPEC §6 `workers`)."""

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
