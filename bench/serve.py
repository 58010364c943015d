"""Worker processes the bench starts: `python -m bench.serve rq|jobctl ...` (they run until SIGTERM).

Each imports only what its system needs, so one system's memory figure never carries another's
modules.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
from typing import Any


def serve_rq(url: str) -> None:
    """One plain RQ SimpleWorker (no fork per job), JSON serializer."""
    import redis
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    client = redis.Redis.from_url(url)
    queue = Queue("bench", connection=client, serializer=JSONSerializer)
    SimpleWorker([queue], connection=client, serializer=JSONSerializer).work(burst=False, logging_level="WARNING")


def io_processor(target: str, client: str) -> Any:
    """A processor doing one HTTP GET of target (the I/O-bound job)."""
    from bench.slow_http import fetcher

    get = fetcher(target, client)
    return lambda _payload, _ctx: get()


def serve_jobctl(url: str, config_path: str, processes: int, http: str | None, http_client: str) -> None:
    """A jobctl Pool of `processes` processes on QUEUE, its processor passed in-process."""
    from bench.jobctl_side import JOB, QUEUE
    from jobctl import config
    from jobctl.pool import Pool

    data = tempfile.mkdtemp(prefix="jobctl-bench-")
    settings = config.load(env={"JOBCTL_REDIS_URL": url, "JOBCTL_DATA_DIR": data, "HOME": data},
                           config=config_path)
    fn = io_processor(http, http_client) if http else (lambda _payload, _ctx: None)
    # Pick the signature by inspection, not by catching TypeError: a TypeError raised inside the new
    # constructor must fail the run, not silently select the old path.
    if "processes" in inspect.signature(Pool).parameters:  # after the worker rewrite
        pool = Pool(settings, [QUEUE], processes=processes, processors={JOB: fn})  # type: ignore[call-arg]
        api = "Pool(settings, queues, processes=N)"
    else:  # before it: the third argument is the number of runner processes
        pool = Pool(settings, [QUEUE], processes, processors={JOB: fn})
        api = "Pool(settings, queues, concurrency) (pre-rewrite signature)"
    print(f"BENCH pool-api: {api}", file=sys.stderr, flush=True)
    pool.run()


def main() -> None:
    """Parse `rq` or `jobctl` and serve."""
    ap = argparse.ArgumentParser(prog="python -m bench.serve")
    ap.add_argument("system", choices=["rq", "jobctl"])
    ap.add_argument("--redis", required=True)
    ap.add_argument("--config")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--http", help="URL the I/O-bound processor fetches (jobctl only)")
    ap.add_argument("--http-client", default="keepalive", choices=["keepalive", "urllib", "requests"])
    args = ap.parse_args()
    if args.system == "rq":
        serve_rq(args.redis)
    else:
        serve_jobctl(args.redis, args.config, args.processes, args.http, args.http_client)


if __name__ == "__main__":
    main()
