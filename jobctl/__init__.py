"""jobctl: background jobs on RQ + Redis, operated through one command-line tool.

Producers call `jobctl.enqueue(queue, job, payload, …)`: any number of times, from many threads at once,
and after `fork()` (gunicorn's preloaded app): the first call in a process builds one runtime (settings
from the environment, one Redis connection pool) under a lock, and a forked child builds its own.
From asyncio code, `await asyncio.to_thread(jobctl.enqueue, …)` keeps the event loop free.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from jobctl.producer import Enqueued
    from jobctl.runtime import Runtime

_runtime: Runtime | None = None
_lock = threading.Lock()


def _forget_runtime() -> None:
    global _runtime, _lock
    _runtime, _lock = None, threading.Lock()  # a child never shares its parent's connections or lock


os.register_at_fork(after_in_child=_forget_runtime)


def _shared_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            from jobctl import config
            from jobctl.runtime import Runtime

            _runtime = Runtime(config.load())
        return _runtime


def enqueue(queue: str, job: str, data: dict[str, Any], *, priority: int | None = None,
            delay_s: float | None = None, job_id: str | None = None) -> Enqueued:
    """Validate and enqueue one job with settings from the environment (the same validation, errors and
    `job_id` idempotency as `jobctl enqueue`)."""
    from jobctl import producer

    return producer.enqueue(_shared_runtime(), queue, job, data, priority=priority,
                            when=producer.When(delay_s=delay_s), job_id=job_id)
