"""What a processor receives besides its payload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobctl.config import Settings

if TYPE_CHECKING:
    from jobctl.services import Services


def _no_progress(_pct: int) -> None:
    return None


def no_gate() -> None:
    """The gate of a queue without a rate limit: never waits."""
    return None


@dataclass
class JobContext:
    """The running job's identity, its settings and service clients, and a progress reporter."""

    job_id: str
    job_name: str
    queue: str
    settings: Settings
    services: Services
    attempt: int = 1
    max_attempts: int = 1
    progress: Callable[[int], None] = field(default=_no_progress)
    # call right before an external request: blocks until the queue's rate limit allows one more
    # call (jobs are limited when they start too; this holds the limit for the call itself)
    rate_gate: Callable[[], None] = field(default=no_gate)
