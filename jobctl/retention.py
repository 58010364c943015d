"""Retention of completed jobs: kept `keep_completed_s` and at most the newest
`keep_completed_count` per priority level (BullMQ's removeOnComplete {age, count}).

The finish step trims as it goes; `trim_finished` applies the policy to what is already there
(after a policy change, or to jobs finished by plain RQ workers)."""

from __future__ import annotations

import redis

from jobctl import keys
from jobctl.runtime import Runtime
from jobctl.scripts import Trim

MAX_BATCHES = 10  # per level and call: a large backlog is trimmed over a few calls


def trim_finished(rt: Runtime) -> int:
    """Apply every queue's completed-job retention now; returns how many jobs were removed."""
    secs, micros = rt.redis.time()
    now = secs + micros / 1e6
    removed = 0
    for policy in rt.settings.queues.policies:
        for _p, level in policy.levels():
            for _batch in range(MAX_BATCHES):  # 1000 per call keeps each script short
                try:
                    n = int(rt.scripts.run(Trim(finished=keys.finished(level), now=now,
                                                keep_count=policy.keep_completed_count)))
                except redis.ResponseError as exc:  # a registry of the wrong type: skip it, trim the rest
                    if "WRONGTYPE" not in str(exc):
                        raise
                    break
                removed += n
                if n < 1000:
                    break
    return removed
