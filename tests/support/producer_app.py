"""A minimal WSGI web app that enqueues one job per request through `jobctl.enqueue` (for gunicorn).

It enqueues once at import, so with `--preload` the master process holds a runtime before forking
its workers: each worker must then build its own (connections are never shared across fork).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import jobctl

PRELOADED = jobctl.enqueue("webhook-retry", "retry-webhook",
                           {"eventId": "preload", "eventType": "t", "eventData": {}, "attemptNumber": 0}).id


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """POST /?n=N enqueues a webhook re-delivery for event N and answers its job id."""
    n = environ.get("QUERY_STRING", "").removeprefix("n=")
    job = jobctl.enqueue("webhook-retry", "retry-webhook",
                         {"eventId": f"evt_{n}", "eventType": "t", "eventData": {}, "attemptNumber": 0})
    body = json.dumps({"id": job.id, "status": job.status}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
