"""A local HTTP server whose every GET takes `--delay-ms` (the I/O-bound job's remote service).

    python -m bench.slow_http [--delay-ms 50] [--max-s 300]

Listens on 127.0.0.1 at a random port, prints the port on the first line of stdout, and serves
(asyncio, keep-alive) until SIGTERM or --max-s seconds. It runs in its own process so its
threads never share a GIL with the bench's sampler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import signal
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

CLIENTS = ("keepalive", "urllib", "requests")


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """HTTP/1.1 with keep-alive: every request waits `delay_s`, then gets `200 ok`."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(delay_s)
            close = b"connection: close" in head.lower()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + (b"Connection: close\r\n" if close else b"")
                         + b"\r\nok")
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def fetcher(url: str, client: str = "keepalive") -> Callable[[], None]:
    """One GET of url: `keepalive` (http.client, one persistent connection per thread, as a job with a
    session has), `urllib` (a new connection a call) or `requests` (~2 ms of CPU a call here)."""
    if client == "requests":
        import requests

        return lambda: requests.get(url, timeout=10).raise_for_status()
    if client == "keepalive":
        return _keepalive(url)

    def get() -> None:
        with urllib.request.urlopen(url, timeout=10) as reply:
            reply.read()

    return get


def _keepalive(url: str) -> Callable[[], None]:
    parts = urllib.parse.urlsplit(url)
    local = threading.local()

    def get() -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        try:
            conn.request("GET", parts.path or "/")
            reply = conn.getresponse()
            reply.read()
        except (OSError, http.client.HTTPException):
            local.conn = None
            conn.close()
            raise
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status}")

    return get


def pool_rate(fetch: Callable[[], None], n: int, threads: int) -> float:
    """GETs/s of a bare thread pool doing n fetches: the ceiling any runtime can reach here and now."""
    with ThreadPoolExecutor(threads) as pool:
        t = time.perf_counter()
        list(pool.map(lambda _i: fetch(), range(n)))
        return n / (time.perf_counter() - t)


def main() -> None:
    """Serve until SIGTERM or --max-s (asyncio: one thread holds every connection)."""
    ap = argparse.ArgumentParser(prog="python -m bench.slow_http")
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--max-s", type=float, default=300.0)
    args = ap.parse_args()
    asyncio.run(_main(args.delay_ms / 1000, args.max_s))


async def _main(delay_s: float, max_s: float) -> None:
    server = await asyncio.start_server(lambda r, w: _serve_connection(r, w, delay_s), "127.0.0.1", 0, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_s)
    server.close()


if __name__ == "__main__":
    main()
