"""The producer API's overhead per web request: `jobctl.enqueue` in a handler served by gunicorn.

    python -m bench --only producer [--single N]

gunicorn serves `bench/producer_app.py` with 2 worker processes x 4 threads (gthread, keep-alive);
8 client threads, each with its own keep-alive connection, send N requests to `/enqueue` (one
`jobctl.enqueue` each) and N to `/noop` (the same handler without it), interleaved. Reported: the time
of the `jobctl.enqueue` call measured inside the handler (median and p99, µs), the request latency
seen by the client with and without it (median and p99, ms), and a check that Redis holds exactly N
jobs. The first requests of each worker process, which build its runtime, are warm-up and not counted.
THE REDIS DATABASE GIVEN IS FLUSHED before and after.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from bench.jobctl_side import data_dir
from bench.procs import Group, SystemFailed
from bench.system import PYTHON, ROOT, Params, Round, describe
from jobctl import keys

WORKERS, THREADS, CLIENTS, WARMUP = 2, 4, 8, 100


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) by nearest rank; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Client:
    """One keep-alive HTTP connection per client thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def get(self, path: str) -> tuple[float, dict[str, object]]:
        """(seconds, JSON answer) of one GET."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        t = time.perf_counter()
        conn.request("GET", path)
        reply = conn.getresponse()
        body = reply.read()
        took = time.perf_counter() - t
        if reply.status != 200:
            raise SystemFailed(f"{path}: HTTP {reply.status}")
        return took, json.loads(body)


def _wait_ready(client: _Client, server: Group, wait_s: float = 20.0) -> None:
    deadline = time.time() + wait_s
    while True:
        try:
            client.get("/noop")
            return
        except OSError:
            server.check()
            if time.time() > deadline:
                raise SystemFailed("gunicorn did not answer in 20 s") from None
            client.local.conn = None
            time.sleep(0.1)


def measure_producer(client: redis.Redis, p: Params, rec: Round) -> None:
    """Figures of `jobctl.enqueue` inside a gunicorn request handler (see the module docstring)."""
    gunicorn = shutil.which("gunicorn", path=str(Path(PYTHON).parent))
    data = data_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")} | {
        "HOME": data, "JOBCTL_DATA_DIR": data, "JOBCTL_REDIS_URL": p.url, "PYTHONPATH": str(ROOT)}
    try:
        if gunicorn is None:
            raise SystemFailed("gunicorn not found in the venv (a dev dependency)")
        client.flushdb()
        port = _free_port()
        cmd = [gunicorn, "-w", str(WORKERS), "--threads", str(THREADS), "-b", f"127.0.0.1:{port}",
               "--keep-alive", "30", "--log-level", "warning", "bench.producer_app:app"]
        with Group("gunicorn producer app", [cmd], env=env, cwd=str(ROOT)) as server:
            http = _Client(port)
            _wait_ready(http, server)
            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(lambda n: http.get(f"/enqueue?n=warm{n}"), range(WARMUP)))
                paths = [f"/enqueue?n={i}" if k == 0 else "/noop" for i in range(p.single) for k in (0, 1)]
                answers = list(pool.map(lambda path: (path, *http.get(path)), paths))
            server.check()
            server.stop(grace_s=20.0)
        inside = [float(str(a["enqueue_us"])) for path, _t, a in answers if path.startswith("/enqueue")]
        with_enqueue = [t * 1e3 for path, t, _a in answers if path.startswith("/enqueue")]
        without = [t * 1e3 for path, t, _a in answers if path == "/noop"]
        jobs = client.llen(keys.queue_list("webhook-retry"))
        if jobs != p.single + WARMUP:
            raise SystemFailed(f"Redis holds {jobs} jobs after {p.single + WARMUP} enqueue requests")
        rec.figures.update({
            "producer_enqueue_p50_us": percentile(inside, 0.5), "producer_enqueue_p99_us": percentile(inside, 0.99),
            "producer_request_p50_ms": percentile(with_enqueue, 0.5),
            "producer_request_p99_ms": percentile(with_enqueue, 0.99),
            "producer_noop_p50_ms": percentile(without, 0.5), "producer_noop_p99_ms": percentile(without, 0.99)})
        rec.notes.append(f"gunicorn {WORKERS} processes x {THREADS} threads, {CLIENTS} keep-alive clients, "
                         f"{p.single} requests each to /enqueue and /noop; Redis holds {jobs} jobs as sent")
    except Exception as exc:
        rec.error = describe(exc)
    finally:
        client.flushdb()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    import sys

    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/8"
    r = Round("jobctl:producer", 1)
    measure_producer(redis.Redis.from_url(url), Params(url, 0, int(sys.argv[2]) if len(sys.argv) > 2 else 300, 60),
                     r)
    print(json.dumps(r.figures if not r.error else {"error": r.error}, indent=2))
