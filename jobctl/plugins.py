"""The hooks a production worker runs with (dead-letter store, logging)."""

from __future__ import annotations

import logging

from jobctl.capture import DeadLetterHook
from jobctl.errors import printable
from jobctl.hooks import Hooks, JobEvent
from jobctl.runtime import Runtime

log = logging.getLogger("jobctl.jobs")


class LogHook:
    """Logs retries and dead letters (never payload values: they may hold personal data)."""

    def retrying(self, e: JobEvent) -> None:
        """A failed attempt will be retried."""
        log.info("job %s (%s) attempt %d/%d failed, retry in %.1fs: %s", printable(e.job_id), printable(e.job),
                 e.attempt, e.max_attempts, e.delay_s, printable(e.error))

    def dead_lettered(self, e: JobEvent) -> None:
        """A job failed permanently."""
        log.warning("job %s (%s) failed permanently after %d attempt(s): %s", printable(e.job_id), printable(e.job),
                    e.attempt, printable(e.error))


def default_hooks(rt: Runtime) -> Hooks:
    """Hooks for `jobctl work`."""
    return Hooks([LogHook(), DeadLetterHook(rt)])
