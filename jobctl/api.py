"""What a team's own job needs from jobctl, and nothing more (README: "Write your own job").

A processor is a plain function `fn(payload: dict, ctx: JobContext) -> JSON-able result`, the same
API as the built-in jobs:

- `ctx.progress(pct)` stores the job's progress (0-100), shown by `jobctl jobs show`;
- `ctx.job_id`, `ctx.attempt`, `ctx.max_attempts`, `ctx.settings`, `ctx.services` (database engine,
  storage, HTTP session, SMTP) and `ctx.rate_gate()` (wait for the queue's rate limit before a call);
- raise `RetryLater(delay_s)` to retry after a delay, `PermanentFailure(reason)` to dead-letter at
  once; any other exception is retried with the queue's back-off, then dead-lettered.

Declare it with a `JobType` (and a new queue with a `QueueSpec`) listed by an entry point of the
group `jobctl.jobs` in the package's pyproject.toml, or in jobctl.toml's `[jobs.NAME]` tables. Give
the model and processor as "module:attr" strings to keep `jobctl --help` from importing them.
This module imports neither pydantic nor any processor.
"""

from __future__ import annotations

from jobctl.context import JobContext
from jobctl.errors import PermanentFailure, RetryLater
from jobctl.jobtypes import JobType, QueueSpec

__all__ = ["JobContext", "JobType", "PermanentFailure", "QueueSpec", "RetryLater"]
