"""Throughput of jobctl against plain RQ, measured in the same run on the same Redis.

    python -m bench [--jobs 10000] [--single 2000] [--repeat 3] [--redis redis://127.0.0.1:6379/8]

Prints medians over --repeat runs and the ratio jobctl / RQ for: enqueue one at a time, bulk
enqueue, processing a no-op job with 2 worker processes, Redis commands and Redis CPU per
processed job, and memory (RSS and PSS) per worker process. The database given is FLUSHED.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from bench.noop import noop
from jobctl import config
from jobctl.enqueue import enqueue, enqueue_many
from jobctl.pool import Pool
from jobctl.runtime import Runtime

QUEUE = "image-processing"  # no rate limit: measures the runtime, not the limiter
JOB = "process-image"
PAYLOAD = {"userId": "u", "originalPath": "a.png", "targetPath": "b.jpg", "maxWidth": 10, "maxHeight": 10}


def redis_cost(client: redis.Redis) -> tuple[int, int, float]:
    """(commands incl. inside scripts, client calls, Redis CPU seconds) so far."""
    stats = client.info("commandstats")
    calls = sum(int(v["calls"]) for v in stats.values())
    evals = sum(int(v["calls"]) for k, v in stats.items() if k.startswith(("cmdstat_evalsha", "cmdstat_eval")))
    cpu = client.info("cpu")
    return calls, evals, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in kB."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def children(pid: int) -> list[int]:
    """Direct child pids."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def rq_queue(client: redis.Redis) -> Queue:
    """Plain RQ queue with the JSON serializer (jobctl never pickles; compare like with like)."""
    return Queue("bench", connection=client, serializer=JSONSerializer)


def bench_enqueue_single(rt: Runtime, n: int) -> tuple[float, float]:
    """Jobs/s enqueued one at a time: (jobctl, rq)."""
    rt.redis.flushdb()
    t = time.perf_counter()
    for _ in range(n):
        enqueue(rt, QUEUE, JOB, PAYLOAD)
    ours = n / (time.perf_counter() - t)
    rt.redis.flushdb()
    q = rq_queue(rt.redis)
    t = time.perf_counter()
    for _ in range(n):
        q.enqueue(noop, PAYLOAD)
    return ours, n / (time.perf_counter() - t)


def bench_enqueue_bulk(rt: Runtime, n: int) -> tuple[float, float]:
    """Jobs/s enqueued in bulk: (jobctl enqueue_many, rq enqueue_many)."""
    rt.redis.flushdb()
    t = time.perf_counter()
    enqueue_many(rt, QUEUE, JOB, [PAYLOAD] * n)
    ours = n / (time.perf_counter() - t)
    rt.redis.flushdb()
    q = rq_queue(rt.redis)
    t = time.perf_counter()
    for start in range(0, n, 1000):
        q.enqueue_many([Queue.prepare_data(noop, (PAYLOAD,)) for _ in range(min(1000, n - start))])
    return ours, n / (time.perf_counter() - t)


def _drain(client: redis.Redis, start: Callable[[], list[subprocess.Popen[bytes]]], remaining: Callable[[], int],
           n: int) -> dict[str, float]:
    before = redis_cost(client)
    t = time.perf_counter()
    procs = start()
    mem: list[tuple[int, int]] = []
    while remaining() > 0:
        time.sleep(0.02)
        if not mem and time.perf_counter() - t > 0.5:
            pids = [c for p in procs for c in (children(p.pid) or [p.pid])]
            mem = [memory_kb(pid) for pid in pids]
    elapsed = time.perf_counter() - t
    after = redis_cost(client)
    for p in procs:
        p.terminate()
        p.wait()
    return {"jobs_s": n / elapsed, "cmds": (after[0] - before[0]) / n, "calls": (after[1] - before[1]) / n,
            "cpu_ms": (after[2] - before[2]) * 1000 / n,
            "rss_mb": statistics.median(m[0] for m in mem) / 1024 if mem else 0.0,
            "pss_mb": statistics.median(m[1] for m in mem) / 1024 if mem else 0.0}


def bench_process(rt: Runtime, n: int) -> tuple[dict[str, float], dict[str, float]]:
    """Processing a no-op job with 2 worker processes: (jobctl pool, 2 RQ SimpleWorkers)."""
    url = rt.settings.redis_url
    rt.redis.flushdb()
    enqueue_many(rt, QUEUE, JOB, [PAYLOAD] * n)
    ours = _drain(rt.redis, lambda: [subprocess.Popen([sys.executable, "-m", "bench", "--serve-jobctl", url])],
                  lambda: rt.redis.llen("rq:queue:" + QUEUE) + rt.redis.zcard("rq:wip:" + QUEUE), n)
    rt.redis.flushdb()
    q = rq_queue(rt.redis)
    for start in range(0, n, 1000):
        q.enqueue_many([Queue.prepare_data(noop, (PAYLOAD,), result_ttl=3600) for _ in range(min(1000, n - start))])
    theirs = _drain(rt.redis, lambda: [subprocess.Popen([sys.executable, "-m", "bench", "--serve-rq", url])
                                       for _ in range(2)],
                    lambda: q.count + q.started_job_registry.count, n)
    return ours, theirs


def serve_jobctl(url: str) -> None:
    """A jobctl pool of 2 runner processes whose registered no-op processor does nothing."""
    settings = config.load(env={"JOBCTL_REDIS_URL": url, "HOME": os.environ.get("HOME", "/tmp")})
    processors: dict[str, Any] = {JOB: lambda payload, ctx: noop(payload)}
    Pool(settings, [QUEUE], 2, processors=processors).run()


def serve_rq(url: str) -> None:
    """One plain RQ SimpleWorker (no fork per job), JSON serializer."""
    client = redis.Redis.from_url(url)
    SimpleWorker([rq_queue(client)], connection=client, serializer=JSONSerializer).work(
        burst=False, logging_level="WARNING")


def main() -> None:
    """Run every benchmark --repeat times and print medians and ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--single", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/8")
    ap.add_argument("--serve-jobctl")
    ap.add_argument("--serve-rq")
    args = ap.parse_args()
    if args.serve_jobctl:
        return serve_jobctl(args.serve_jobctl)
    if args.serve_rq:
        return serve_rq(args.serve_rq)
    rt = Runtime(config.load(redis_url=args.redis))
    rows: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.repeat):
        rows.setdefault("enqueue one at a time (jobs/s)", []).append(bench_enqueue_single(rt, args.single))
        rows.setdefault("bulk enqueue (jobs/s)", []).append(bench_enqueue_bulk(rt, args.jobs))
        ours, theirs = bench_process(rt, args.jobs)
        for key, label in [("jobs_s", "process no-op, 2 workers (jobs/s)"),
                           ("cmds", "Redis commands per job (incl. inside Lua)"),
                           ("calls", "Lua script calls per job"),
                           ("cpu_ms", "Redis CPU per job (ms)"), ("rss_mb", "RSS per worker process (MB)"),
                           ("pss_mb", "PSS per worker process (MB)")]:
            rows.setdefault(label, []).append((ours[key], theirs[key]))
    rt.redis.flushdb()
    print(f"{'measure (median of ' + str(args.repeat) + ')':48} {'jobctl':>10} {'plain RQ':>10} {'ratio':>7}")
    for label, pairs in rows.items():
        ours_m = statistics.median(p[0] for p in pairs)
        theirs_m = statistics.median(p[1] for p in pairs)
        ratio = f"{ours_m / theirs_m:6.2f}x" if theirs_m >= 0.05 else "    n/a"
        print(f"{label:48} {ours_m:10.2f} {theirs_m:10.2f} {ratio}")


if __name__ == "__main__":
    main()
