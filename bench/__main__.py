"""Same-run benchmark of jobctl beside BullMQ, Dramatiq and plain RQ, on one Redis, with one no-op job.

    python -m bench [--repeat 3] [--jobs 10000] [--single 2000] [--io-jobs 2000]
                    [--only jobctl,bullmq,dramatiq,rq,io,idle] [--quick] [--json FILE|-]
                    [--redis redis://127.0.0.1:6379/8]

THE REDIS DATABASE GIVEN (default 8) IS FLUSHED before and after every measurement.

Each round measures every selected system in turn (the order rotates between rounds, so noise
hits all alike): enqueue --single jobs one at a time, enqueue --jobs in bulk, then drain those with
the system's workers while sampling its progress every ~15 ms. Printed: medians over the rounds,
jobctl's ratio to each peer, and pass/fail against the targets. --json writes every raw round.

  jobctl    Pool with 2 processes, queue image-processing with 50 slots, no rate limit
  bullmq    one node worker process, concurrency 50 (bench/node, npm ci on first use)
  dramatiq  `dramatiq --processes 2 --threads 8`, RedisBroker
  rq        two RQ SimpleWorker processes, JSON serializer
  io        jobctl only: 1 process, 50 slots, each job one GET (urllib; --io-client) of a local
            server that answers in 50 ms; beside it the same GETs from a bare 50-thread pool
  idle      jobctl only: `jobctl --redis-url URL work --all` idle for 3 s: processes, PSS, RSS
  image-rss jobctl only: peak RSS of process-image on the worst accepted images, a fresh process
            each (bench/image_rss.py; no Redis)
  producer  jobctl only: `jobctl.enqueue` in a gunicorn request handler (2 processes x 4 threads),
            --single requests: the call's time inside the handler and request latency with and
            without it, median and p99 (bench/producer.py)

Every step is bounded (--timeout per drain); a system that fails or times out is reported as
such and the others go on. --quick (1 round, small counts) finishes in about a minute.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

import redis

from bench.image_rss import measure_image_rss
from bench.jobctl_side import Jobctl, measure_idle, measure_io
from bench.peers import BullMQ, Dramatiq, PlainRQ
from bench.producer import measure_producer
from bench.report import medians, render
from bench.system import Params, Round, System, measure

NORMAL = {"repeat": 3, "jobs": 10_000, "single": 2_000, "io_jobs": 2_000, "timeout": 120.0}
QUICK = {"repeat": 1, "jobs": 2_000, "single": 300, "io_jobs": 300, "timeout": 20.0}
Task = Callable[[redis.Redis, Params, argparse.Namespace, Round], None]


def compared(make: Callable[[Params], System]) -> Task:
    """A task measuring one system of the comparison."""
    return lambda client, p, _args, rec: measure(lambda: make(p), client, p, rec)


TASKS: dict[str, tuple[str, Task]] = {
    "jobctl": ("jobctl", compared(Jobctl)),
    "bullmq": ("BullMQ", compared(BullMQ)),
    "dramatiq": ("Dramatiq", compared(Dramatiq)),
    "rq": ("RQ", compared(PlainRQ)),
    "io": ("jobctl:io", lambda client, p, args, rec: measure_io(client, p, args.io_jobs, args.io_client, rec)),
    "idle": ("jobctl:idle", lambda client, p, _args, rec: measure_idle(client, p, rec)),
    "image-rss": ("jobctl:image-rss", lambda _client, _p, _args, rec: measure_image_rss(rec)),
    "producer": ("jobctl:producer", lambda client, p, _args, rec: measure_producer(client, p, rec)),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options; counts left unset take the --quick or the normal defaults."""
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/8", help="Redis URL; its database is FLUSHED")
    ap.add_argument("--repeat", type=int, help="rounds, interleaved across systems (default 3; quick 1)")
    ap.add_argument("--jobs", type=int, help="jobs enqueued in bulk and drained (default 10000; quick 2000)")
    ap.add_argument("--single", type=int, help="jobs enqueued one at a time (default 2000; quick 300)")
    ap.add_argument("--io-jobs", type=int, help="I/O-bound jobs (default 2000; quick 300)")
    ap.add_argument("--io-client", default="keepalive", choices=["keepalive", "urllib", "requests"],
                    help="HTTP client of the I/O-bound processor (requests costs ~5x the CPU per GET)")
    ap.add_argument("--timeout", type=float, help="seconds a drain may take (default 120; quick 20)")
    ap.add_argument("--only", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    ap.add_argument("--quick", action="store_true", help="1 round, small counts: a smoke test of about a minute")
    ap.add_argument("--json", metavar="FILE", help="write params, raw rounds and medians as JSON ('-': stdout)")
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else NORMAL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.only = [name.strip().lower() for name in args.only.split(",") if name.strip()]
    if unknown := [n for n in args.only if n not in TASKS]:
        ap.error(f"unknown --only name(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    return args


def run_rounds(client: redis.Redis, p: Params, args: argparse.Namespace) -> list[Round]:
    """Every selected task once per round, the order rotated each round."""
    rounds: list[Round] = []
    for r in range(args.repeat):
        order = args.only[r % len(args.only):] + args.only[:r % len(args.only)]
        for name in order:
            system, task = TASKS[name]
            rec = Round(system, r + 1)
            t = time.perf_counter()
            task(client, p, args, rec)
            status = f"FAILED: {rec.error}" if rec.error else "ok"
            print(f"[round {r + 1}/{args.repeat}] {system}: {time.perf_counter() - t:.1f} s, {status}",
                  file=sys.stderr, flush=True)
            rounds.append(rec)
    return rounds


def main() -> None:
    """Run the rounds and print the report (and the JSON)."""
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))  # unwind: every Group stops its workers
    client = redis.Redis.from_url(args.redis, socket_timeout=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        sys.exit(f"bench: Redis at {args.redis} does not answer: {exc}")
    p = Params(args.redis, args.jobs, args.single, args.timeout)
    t = time.perf_counter()
    rounds = run_rounds(client, p, args)
    header = (f"jobctl beside its peers: {args.jobs:,} no-op jobs drained, {args.single:,} enqueued one at a time, "
              f"median of {args.repeat} round(s), {time.perf_counter() - t:.0f} s in all")
    doc = {"params": vars(args), "rounds": [asdict(r) for r in rounds], "medians": medians(rounds)}
    if args.json == "-":
        print(json.dumps(doc, indent=2))
        return
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
    print(render(rounds, header))


if __name__ == "__main__":
    main()
