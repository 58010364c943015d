"""The WSGI app of `python -m bench --only producer`: a request handler that enqueues one job through
`jobctl.enqueue` and answers how long that call took inside the handler (`/enqueue`), and one that
does the same work without enqueueing (`/noop`), so the two request latencies can be compared."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import jobctl


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """GET /enqueue?n=N enqueues a webhook re-delivery for event N; GET /noop enqueues nothing."""
    n = environ.get("QUERY_STRING", "").removeprefix("n=")
    took_us = 0.0
    job_id = None
    if environ.get("PATH_INFO") == "/enqueue":
        t = time.perf_counter()
        job_id = jobctl.enqueue("webhook-retry", "retry-webhook",
                                {"eventId": f"evt_{n}", "eventType": "bench", "eventData": {}}).id
        took_us = (time.perf_counter() - t) * 1e6
    body = json.dumps({"id": job_id, "enqueue_us": took_us}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
