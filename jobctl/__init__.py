"""jobctl: background jobs on RQ + Redis, operated through one command-line tool."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from jobctl.enqueue import Enqueued

_runtime: Any = None


def enqueue(queue: str, job: str, data: dict[str, Any], *, priority: int | None = None,
            delay_s: float | None = None, job_id: str | None = None) -> Enqueued:
    """Validate and enqueue one job using settings from the environment (for web apps)."""
    global _runtime
    from jobctl import config
    from jobctl.enqueue import When
    from jobctl.enqueue import enqueue as _enqueue
    from jobctl.runtime import Runtime

    if _runtime is None:
        _runtime = Runtime(config.load())
    return _enqueue(_runtime, queue, job, data, priority=priority, when=When(delay_s=delay_s), job_id=job_id)
