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
