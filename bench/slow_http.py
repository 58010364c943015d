"""A local HTTP server whose every GET takes `--delay-ms` (the I/O-bound job's remote service).

    python -m bench.slow_http [--delay-ms 50] [--max-s 300]

Listens on 127.0.0.1 at a random port, prints the port on the first line of stdout, and serves
(one thread per request) until SIGTERM or --max-s seconds. It runs in its own process so its
threads never share a GIL with the bench's sampler.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

CLIENTS = ("urllib", "requests")


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a listen backlog that holds 50+ simultaneous connects."""

    request_queue_size = 512
    daemon_threads = True
    delay_s = 0.05


class SlowHandler(BaseHTTPRequestHandler):
    """Sleep, then answer 200 with a tiny body."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        time.sleep(self.server.delay_s)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: Any) -> None:
        """Silent: 1,000 requests a second would flood the log."""


def fetcher(url: str, client: str = "urllib") -> Callable[[], None]:
    """One GET of url: `urllib` (~0.4 ms of CPU a call on this machine) or `requests` (~2 ms)."""
    if client == "requests":
        import requests

        return lambda: requests.get(url, timeout=10).raise_for_status()

    def get() -> None:
        with urllib.request.urlopen(url, timeout=10) as reply:
            reply.read()

    return get


def pool_rate(fetch: Callable[[], None], n: int, threads: int) -> float:
    """GETs/s of a bare thread pool doing n fetches: the ceiling any runtime can reach here and now."""
    with ThreadPoolExecutor(threads) as pool:
        t = time.perf_counter()
        list(pool.map(lambda _i: fetch(), range(n)))
        return n / (time.perf_counter() - t)


def main() -> None:
    """Serve until SIGTERM or --max-s."""
    ap = argparse.ArgumentParser(prog="python -m bench.slow_http")
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--max-s", type=float, default=300.0)
    args = ap.parse_args()
    server = Server(("127.0.0.1", 0), SlowHandler)
    server.delay_s = args.delay_ms / 1000
    print(server.server_address[1], flush=True)

    def stop(_sig: int = 0, _frame: FrameType | None = None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    timer = threading.Timer(args.max_s, stop)
    timer.daemon = True
    timer.start()
    server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
