"""Moves delayed jobs and retries to their queues when due (a maintenance task of every worker pool).

Not to be confused with `jobctl scheduler` (`jobctl.schedules`), which fires recurring schedules.
"""

from __future__ import annotations

from jobctl.runtime import Runtime
from jobctl.scripts import Promote, json_arg

BATCH = 500


def promote(rt: Runtime, queues: list[str]) -> tuple[int, float]:
    """Move due jobs of `queues`; returns (moved, seconds until the next one is due or -1)."""
    pairs = [[name, level] for name in queues for _p, level in rt.settings.queues.get(name).levels()]
    moved, next_due = rt.scripts.run(Promote(batch=BATCH, levels=json_arg(pairs)))
    return int(moved), float(next_due)
