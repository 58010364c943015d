"""Measure `metrics.snapshot` latency with 1k, 100k and 1M waiting jobs (it must not grow).

Usage: .venv/bin/python bench/stats_latency.py [REDIS_URL]   (default redis://127.0.0.1:6379/10)
The database is FLUSHED before and after. Jobs are real-shaped hashes plus the queue list, as
ENQUEUE writes them, filled with pipelined writes (the Lua enqueue path is not what is measured).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from jobctl import config, keys, metrics
from jobctl.jobs import job_fields, new_id
from jobctl.runtime import Runtime

QUEUE, JOB = "data-cleanup", "cleanup-audit-logs"


def fill(rt: Runtime, n: int) -> None:
    """Add n waiting jobs to QUEUE."""
    policy = rt.settings.queues.get(QUEUE)
    fields: dict[Any, Any] = job_fields(policy, JOB, {}, policy.priority, datetime.now(UTC))
    for start in range(0, n, 10_000):
        ids = [new_id() for _ in range(min(10_000, n - start))]
        with rt.redis.pipeline(transaction=False) as pipe:
            for jid in ids:
                pipe.hset(keys.job(jid), mapping=fields)
            pipe.rpush(keys.queue_list(policy.level()), *ids)
            pipe.execute()


def measure(rt: Runtime, runs: int = 50) -> tuple[float, float]:
    """(median, p95) milliseconds of one snapshot of all queues."""
    metrics.snapshot(rt, dead_letters=False)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        metrics.snapshot(rt, dead_letters=False)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    """Fill to each size in turn and print the latency."""
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/10"
    data = tempfile.mkdtemp()
    rt = Runtime(config.load(env={"JOBCTL_REDIS_URL": url, "JOBCTL_DATA_DIR": data, "HOME": data}))
    rt.redis.flushdb()
    try:
        have = 0
        for size in (1_000, 100_000, 1_000_000):
            fill(rt, size - have)
            have = size
            waiting = metrics.snapshot(rt, [QUEUE], dead_letters=False).queues[0].waiting
            med, p95 = measure(rt)
            print(f"{waiting:>9,} waiting: median {med:6.2f} ms, p95 {p95:6.2f} ms")
    finally:
        rt.redis.flushdb()


if __name__ == "__main__":
    main()
