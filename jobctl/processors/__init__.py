"""The built-in job types: one record per job, naming its queue, payload model and processor.

A processor is `fn(payload: dict, ctx: JobContext) -> JSON-able result`. It raises
`RetryLater(delay_s)` or `PermanentFailure(reason)` (jobctl.errors) to steer retries and knows
nothing of Redis, RQ or the console. Models and processors are "module:attr" strings, imported on
first use (`jobctl.jobtypes`), so listing names and queues imports no processor and no pydantic.
Every registry (enqueue's, the worker's, `queues`, completion, the dashboard) is derived from these
records and from the job types a team declares (`jobctl.jobtypes`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobctl.jobtypes import JobType

if TYPE_CHECKING:
    from jobctl.context import JobContext

Processor = Callable[[dict[str, Any], "JobContext"], Any]

BUILTINS: tuple[JobType, ...] = (
    JobType("send-email", "email", "jobctl.payloads:SendEmail", "jobctl.processors.email:send_email"),
    JobType("send-push", "push", "jobctl.payloads:SendPush", "jobctl.processors.push:send_push"),
    JobType("process-image", "image-processing", "jobctl.payloads:ProcessImage",
            "jobctl.processors.image:process_image"),
    JobType("retry-webhook", "webhook-retry", "jobctl.payloads:RetryWebhook",
            "jobctl.processors.webhook:retry_webhook"),
    JobType("cleanup-audit-logs", "data-cleanup", "jobctl.payloads:Cleanup",
            "jobctl.processors.cleanup:cleanup_audit_logs"),
    JobType("cleanup-notifications", "data-cleanup", "jobctl.payloads:Cleanup",
            "jobctl.processors.cleanup:cleanup_notifications"),
    JobType("cleanup-temp-files", "data-cleanup", "jobctl.payloads:Cleanup",
            "jobctl.processors.cleanup:cleanup_temp_files"),
)


def registry() -> dict[str, Processor]:
    """Name -> processor of the built-in job types (a configuration's own: `Registry.processors`)."""
    from jobctl.queues import DEFAULT_POLICIES, Registry

    return Registry(DEFAULT_POLICIES).processors()
