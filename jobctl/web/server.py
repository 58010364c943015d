"""Serving the dashboard until SIGTERM or SIGINT: werkzeug's threaded server in a thread, stopped from the
main thread (a signal handler cannot call `shutdown` on the thread that runs `serve_forever`)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from werkzeug.serving import ThreadedWSGIServer


def serve(app: Any, host: str, port: int, stop: threading.Event | None = None,
          ready: threading.Event | None = None) -> None:
    """Serve `app` on host:port until `stop` is set, or SIGTERM/SIGINT arrives (when called in the main
    thread); in-flight requests finish, then the socket closes."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    server = ThreadedWSGIServer(host, port, app)
    server.daemon_threads = False  # server_close then joins the request threads: in-flight requests finish
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="dashboard",
                              daemon=True)
    thread.start()
    if ready is not None:
        ready.set()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
