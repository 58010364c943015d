"""Runs a real worker Pool in its own process with test processors (for signal and crash tests).

Usage: python -m tests.support.pool_harness REDIS_URL QUEUE[,QUEUE…] PROCESSES [--burst] [--max-jobs N]
       [--slots N] [--config TOML] [--track] [--hooks] [--database-url URL]

The `send-push` processor records each start in the Redis list `test:starts` as
"job_id unix_time", sleeps `data.sleep` seconds, records "job_id" in `test:done`, and fails with
a plain error when `data.fail` is true. The sleep is one `time.sleep` call, which a slot's JobTimeout
cannot interrupt; with `data.busy` it sleeps in 0.05 s steps, so a JobTimeout lands at the next step.

`--track` counts running jobs per queue: `test:running:{queue}` (INCR at start, DECR at the end; the
value INCR returns is exactly how many run at that moment), the zset `test:peak` keeps the highest
count per queue (ZADD GT, order-independent) and, as member `{queue}:wip`, the most started-registry
entries seen at any start (the count a `global_concurrency` cap applies to, stale leases included);
the list `test:spans` gets "queue start end supervisor_pid" per job. `--hooks` runs the production
hooks (`jobctl.plugins.default_hooks`: logging and the dead-letter store); `--database-url` points them
at the test's database instead of the shared /tmp/jobctl-harness one.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import redis

from jobctl import config, keys
from jobctl.context import JobContext
from jobctl.errors import JobTimeout
from jobctl.pool import Pool

BUSY_STEP_S = 0.05


def main() -> int:
    """Parse the arguments and run the pool until it stops."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    url, queues, processes = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
    total = int(sys.argv[sys.argv.index("--slots") + 1]) if "--slots" in sys.argv else None
    burst = "--burst" in sys.argv
    max_jobs = int(sys.argv[sys.argv.index("--max-jobs") + 1]) if "--max-jobs" in sys.argv else None
    track = "--track" in sys.argv
    env = {"JOBCTL_REDIS_URL": url, "JOBCTL_DATA_DIR": "/tmp/jobctl-harness", "HOME": "/tmp"}
    if "--database-url" in sys.argv:
        env["JOBCTL_DATABASE_URL"] = sys.argv[sys.argv.index("--database-url") + 1]
    settings = config.load(env=env, config=sys.argv[sys.argv.index("--config") + 1]
                           if "--config" in sys.argv else None)
    client = redis.Redis.from_url(url)

    def begin(queue: str) -> float:
        n = client.incr(f"test:running:{queue}")
        with client.pipeline(transaction=True) as pipe:
            for _p, level in settings.queues.get(queue).levels():
                pipe.zcard(keys.wip(level))
            wip = sum(pipe.execute())
        client.zadd("test:peak", {queue: n, f"{queue}:wip": wip}, gt=True)
        return time.time()

    def end(queue: str, started: float) -> None:
        client.decr(f"test:running:{queue}")
        client.rpush("test:spans", f"{queue} {started} {time.time()} {os.getppid()}")

    def record(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        data = payload.get("data") or payload.get("eventData") or {}
        client.rpush("test:starts", f"{ctx.job_id} {time.time()}")
        if data.get("once") and client.incr(f"test:once:{ctx.job_id}") > 1:
            data = {}
        started = begin(ctx.queue) if track else 0.0
        try:
            end_at = time.time() + float(data.get("sleep", 0))
            while time.time() < end_at:
                try:
                    left = max(0.0, end_at - time.time())
                    time.sleep(min(left, BUSY_STEP_S) if data.get("busy") else left)
                except JobTimeout:
                    if not data.get("ignore_timeout"):
                        raise
        finally:
            if track:
                end(ctx.queue, started)
        if data.get("fail"):
            raise RuntimeError("asked to fail")
        client.rpush("test:done", ctx.job_id)
        return {"ok": True}

    hooks = None
    if "--hooks" in sys.argv:
        from jobctl.plugins import default_hooks

        hooks = default_hooks
    processors = {name: record for name in ("send-push", "send-email", "process-image", "retry-webhook")}
    return Pool(settings, queues, processes=processes, total_slots=total, burst=burst, max_jobs=max_jobs,
                hooks=hooks, processors=processors).run()


if __name__ == "__main__":
    sys.exit(main())
