"""Moves delayed jobs and retries to their queues when due (run by every worker pool)."""

from __future__ import annotations

from jobctl import keys
from jobctl.runtime import Runtime

BATCH = 500


def promote(rt: Runtime, queues: list[str]) -> tuple[int, float]:
    """Move due jobs of `queues`; returns (moved, seconds until the next one is due or -1)."""
    pairs: list[str] = []
    for name in queues:
        policy = rt.settings.queues.get(name)
        for _p, level in policy.levels():
            pairs += [name, level]
    moved, next_due = rt.scripts.promote(keys=[], args=[
        keys.job(""), keys.queue_list(""), keys.scheduled(""), keys.marker(""),
        keys.scheduler_heartbeat(), BATCH, *pairs])
    return int(moved), float(next_due)
