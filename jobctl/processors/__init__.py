"""The registry of job names -> processor functions: the only code a worker ever runs.

A processor is `fn(payload: dict, ctx: JobContext) -> JSON-able result`. It raises
`RetryLater(delay_s)` or `PermanentFailure(reason)` (jobctl.errors) to steer retries and knows
nothing of Redis, RQ or the console.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobctl.context import JobContext

Processor = Callable[[dict[str, Any], JobContext], Any]


def registry() -> dict[str, Processor]:
    """Name -> processor, imported lazily so `jobctl --help` stays fast."""
    from jobctl.processors import cleanup, email, image, push, webhook

    return {
        "send-email": email.send_email,
        "send-push": push.send_push,
        "process-image": image.process_image,
        "retry-webhook": webhook.retry_webhook,
        "cleanup-audit-logs": cleanup.cleanup_audit_logs,
        "cleanup-notifications": cleanup.cleanup_notifications,
        "cleanup-temp-files": cleanup.cleanup_temp_files,
    }
