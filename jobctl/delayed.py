"""Moves delayed jobs and retries to their queues when due (a maintenance task of every worker pool).

Not to be confused with `jobctl scheduler` (`jobctl.schedules`), which fires recurring schedules.
A due id that cannot be moved (no job hash, a key of another type, a status RQ does not know) is
dead-lettered with its reason, as a take refuses such ids; a scheduled registry of the wrong type is
skipped and reported (`Quarantine`), the other levels are still served.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jobctl import keys
from jobctl.hooks import Hooks, JobEvent
from jobctl.jobs import FAILURE_TTL_S, rq_time
from jobctl.runtime import Runtime
from jobctl.scripts import Promote, json_arg

BATCH = 500


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def promote(rt: Runtime, queues: list[str], hooks: Hooks | None = None,
            broken: Callable[[str, str], None] | None = None) -> tuple[int, float]:
    """Move due jobs of `queues`; returns (moved, seconds until the next one is due or -1). Refused ids
    are dead-lettered (through `hooks`); `broken(key, type)` hears of each registry of the wrong type."""
    pairs = [[name, level] for name in queues for _p, level in rt.settings.queues.get(name).levels()]
    moved, next_due, *rest = rt.scripts.run(Promote(batch=BATCH, levels=json_arg(pairs)))
    refused, bad = (rest + [[], []])[:2]
    for key, kind in bad or []:
        if broken is not None:
            broken(_text(key), _text(kind))
    for item in refused or []:
        job_id, level, queue, reason = (_text(x) for x in item)
        _refuse(rt, job_id, level, queue, reason, hooks)
    return int(moved), float(next_due)


def _refuse(rt: Runtime, job_id: str, level: str, queue: str, reason: str, hooks: Hooks | None) -> None:
    """Take a due id off the scheduled registry as a failure: a job hash (or, when there is none, a
    record in its place) in RQ's failed registry, which the dead-letter store records or reconciles."""
    jk = keys.job(job_id)
    secs, micros = rt.redis.time()
    now = secs + micros / 1e6
    stamp = rq_time(datetime.fromtimestamp(now, UTC))
    with rt.redis.pipeline(transaction=True) as pipe:
        pipe.zrem(keys.scheduled(level), job_id)
        if not reason.startswith("job key is a "):  # never write into a key that is not a hash
            pipe.hset(jk, mapping={"status": "failed", "jc_error": reason, "exc_info": reason, "ended_at": stamp,
                                   "jc_queue": queue})
            pipe.hsetnx(jk, "origin", level)
            pipe.hsetnx(jk, "created_at", stamp)
            pipe.zadd(keys.failed(level), {job_id: now + FAILURE_TTL_S})
        pipe.execute(raise_on_error=False)
    if hooks is not None:
        hooks.emit("dead_lettered", JobEvent(job_id, queue, "?", {}, 0, 0, error=reason))
