"""Named hooks where metrics, the dead-letter store and others plug into the worker.

A hook object implements any of `started`, `succeeded`, `retrying`, `dead_lettered`, each taking
one `JobEvent`. A failing hook is logged and never fails the job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("jobctl.hooks")
EVENTS = ("started", "succeeded", "retrying", "dead_lettered")


@dataclass(frozen=True)
class JobEvent:
    """What happened to one job attempt."""

    job_id: str
    queue: str
    job: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    duration_ms: float = 0.0
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    delay_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Hooks:
    """An ordered set of hook objects, called safely."""

    def __init__(self, hooks: Sequence[object] = ()) -> None:
        self.hooks = list(hooks)

    def add(self, hook: object) -> None:
        """Register one more hook object."""
        self.hooks.append(hook)

    def emit(self, name: str, event: JobEvent) -> None:
        """Call `name` on every hook that has it; log and swallow any error."""
        for hook in self.hooks:
            fn = getattr(hook, name, None)
            if fn is None:
                continue
            try:
                fn(event)
            except Exception:  # a broken hook must never fail the job
                log.exception("hook %s.%s failed for job %s", type(hook).__name__, name, event.job_id)
