"""Redis memory per 1,000 completed jobs, before and after retention runs.

    python bench/retention.py [--jobs 5000] [--redis redis://127.0.0.1:6379/8]   (FLUSHES that database)

Runs N no-op jobs with retention off (keep_completed_count very large), measures used_memory per
1,000 completed jobs, then applies the default policy (newest 1000 per queue level) with
`jobctl.retention.trim_finished` and measures again.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobctl import config  # noqa: E402
from jobctl.producer import enqueue_many  # noqa: E402
from jobctl.queues import Registry  # noqa: E402
from jobctl.retention import trim_finished  # noqa: E402
from jobctl.runtime import Runtime  # noqa: E402
from jobctl.worker import Runner  # noqa: E402

PAYLOAD = {"userId": "u", "originalPath": "a.png", "targetPath": "b.jpg", "maxWidth": 10, "maxHeight": 10}


def used(rt: Runtime) -> int:
    """Redis used_memory in bytes."""
    return int(rt.redis.info("memory")["used_memory"])


def main() -> None:
    """Measure and print."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/8")
    args = ap.parse_args()
    base = config.load(redis_url=args.redis)
    keep_all = Registry(dataclasses.replace(p, keep_completed_count=10**7) for p in base.queues.policies)
    rt = Runtime(dataclasses.replace(base, queues=keep_all))
    rt.redis.flushdb()
    empty = used(rt)
    enqueue_many(rt, "image-processing", "process-image", [PAYLOAD] * args.jobs)
    Runner(rt, ["image-processing"], processors={"process-image": lambda p, c: {"ok": True}},
           services=object()).work(burst=True)
    before = used(rt)
    removed = trim_finished(Runtime(base))
    after = used(rt)
    kept = rt.redis.zcard("rq:finished:image-processing")
    print(f"completed jobs: {args.jobs}, kept after retention: {kept}, removed: {removed}")
    print(f"Redis memory before retention: {(before - empty) / 1024:.0f} KiB "
          f"({(before - empty) / args.jobs * 1000 / 1024:.0f} KiB per 1,000 completed jobs)")
    print(f"Redis memory after retention:  {(after - empty) / 1024:.0f} KiB "
          f"(bounded: at most 1,000 completed jobs per queue level, whatever the volume)")
    rt.redis.flushdb()


if __name__ == "__main__":
    main()
