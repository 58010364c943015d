"""Measure the dashboard's jobs page with 1k, 100k and 1M waiting jobs (it must not grow with the queue).

Usage: .venv/bin/python bench/dashboard_paging.py [REDIS_URL]   (default redis://127.0.0.1:6379/1)
The database is FLUSHED before and after. The queue list holds every id; only the jobs on the pages
read get a real-shaped hash (a million hashes would take ~0.5 GB of a shared Redis, and a page reads
only its own rows). Times: `control.list_jobs` of the first, middle and last page of 50, and the whole
page rendered by the WSGI app (werkzeug's test client, in process: no socket).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jobctl import config, control, keys
from jobctl.jobs import job_fields
from jobctl.runtime import Runtime
from jobctl.web import create_app

QUEUE, JOB, SIZE = "push", "send-push", 50
PAYLOAD = {"userId": "u1", "title": "t", "message": "m"}


def fill(rt: Runtime, start: int, stop: int) -> None:
    """Ids start..stop-1 on the queue's home level."""
    for a in range(start, stop, 50_000):
        rt.redis.rpush(keys.queue_list(QUEUE), *(f"b{i:07d}" for i in range(a, min(stop, a + 50_000))))


def hashes(rt: Runtime, offsets: list[int]) -> None:
    """Real-shaped hashes for the page at each offset."""
    policy = rt.settings.queues.get(QUEUE)
    fields: dict[Any, Any] = job_fields(policy, JOB, PAYLOAD, policy.priority, datetime.now(UTC))
    with rt.redis.pipeline(transaction=False) as pipe:
        for off in offsets:
            for i in range(off, off + SIZE):
                pipe.hset(keys.job(f"b{i:07d}"), mapping=fields)
        pipe.execute()


def median_ms(fn: Callable[[], Any], runs: int = 30) -> float:
    """Median milliseconds of `fn` after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    """Fill to each size in turn and print the page times."""
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/1"
    data = tempfile.mkdtemp()
    rt = Runtime(config.load(env={"JOBCTL_REDIS_URL": url, "JOBCTL_DATA_DIR": data, "HOME": data}))
    client = create_app(rt).test_client()
    rt.redis.flushdb()
    try:
        have = 0
        for n in (1_000, 100_000, 1_000_000):
            fill(rt, have, n)
            have = n
            offsets = [0, n // 2, n - SIZE]
            hashes(rt, offsets)
            reads = [median_ms(lambda o=o: control.list_jobs(rt, QUEUE, "waiting", o, SIZE)) for o in offsets]
            last = n // SIZE
            page = median_ms(lambda last=last: client.get(f"/queues/{QUEUE}?state=waiting&page={last}"))
            print(f"{n:>9,} waiting: list_jobs first/middle/last page {reads[0]:.2f} / {reads[1]:.2f} / "
                  f"{reads[2]:.2f} ms; last page rendered {page:.2f} ms")
    finally:
        rt.redis.flushdb()


if __name__ == "__main__":
    main()
