"""Runs a real worker Pool in its own process with test processors (for signal and crash tests).

Usage: python -m tests.support.pool_harness REDIS_URL QUEUE[,QUEUE…] PROCESSES [--burst] [--max-jobs N]
       [--slots N] [--config TOML]

The `send-push` processor records each start in the Redis list `test:starts` as
"job_id unix_time", sleeps `data.sleep` seconds, records "job_id" in `test:done`, and fails with
a plain error when `data.fail` is true.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import redis

from jobctl import config
from jobctl.context import JobContext
from jobctl.errors import JobTimeout
from jobctl.pool import Pool


def main() -> int:
    """Parse the arguments and run the pool until it stops."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    url, queues, processes = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
    total = int(sys.argv[sys.argv.index("--slots") + 1]) if "--slots" in sys.argv else None
    burst = "--burst" in sys.argv
    max_jobs = int(sys.argv[sys.argv.index("--max-jobs") + 1]) if "--max-jobs" in sys.argv else None
    settings = config.load(env={"JOBCTL_REDIS_URL": url, "JOBCTL_DATA_DIR": "/tmp/jobctl-harness",
                                "HOME": "/tmp"}, config=sys.argv[sys.argv.index("--config") + 1]
                           if "--config" in sys.argv else None)
    client = redis.Redis.from_url(url)

    def record(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        data = payload.get("data") or payload.get("eventData") or {}
        client.rpush("test:starts", f"{ctx.job_id} {time.time()}")
        if data.get("once") and client.incr(f"test:once:{ctx.job_id}") > 1:
            data = {}
        end = time.time() + float(data.get("sleep", 0))
        while time.time() < end:
            try:
                time.sleep(max(0.0, end - time.time()))
            except JobTimeout:
                if not data.get("ignore_timeout"):
                    raise
        if data.get("fail"):
            raise RuntimeError("asked to fail")
        client.rpush("test:done", ctx.job_id)
        return {"ok": True}

    processors = {name: record for name in ("send-push", "send-email", "process-image", "retry-webhook")}
    return Pool(settings, queues, processes=processes, total_slots=total, burst=burst, max_jobs=max_jobs,
                processors=processors).run()


if __name__ == "__main__":
    sys.exit(main())
