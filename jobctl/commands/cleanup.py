"""`jobctl cleanup`: enqueue the daily cleanups at most once per UTC day, or run them here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from jobctl import render, schedules
from jobctl.errors import OperationFailed
from jobctl.runtime import Runtime


def cleanup_cmd(
    ctx: typer.Context,
    tasks: Annotated[list[str] | None, typer.Argument(
        help="audit-logs, notifications, temp-files (default: all).", show_default=False)] = None,
    now: Annotated[bool, typer.Option("--now", help="Run in this process and print the deleted counts.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted (runs here, "
                                                            "deletes nothing, enqueues nothing).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """For cron: enqueue the cleanup jobs on data-cleanup once per UTC day across hosts, or run them --now."""
    rt: Runtime = ctx.obj
    names = schedules.check_tasks(tasks or [])
    if now or dry_run:
        out = schedules.run_cleanup(rt, names, dry_run=dry_run)
    else:
        out = schedules.enqueue_cleanup(rt, names, datetime.now(UTC).date())
    if as_json:
        render.print_json({"tasks": [o.to_json() for o in out]})
    else:
        counted = "would delete" if dry_run else "deleted"
        render.stdout().print(render.table(
            "Cleanup (dry run)" if dry_run else "Cleanup", ["task", "action", "job id", counted],
            [(o.task, o.action, o.job_id, o.deletedCount if o.error is None else o.error) for o in out]))
    failed = [o.task for o in out if o.action == "failed"]
    if failed:
        raise OperationFailed(f"{len(failed)} of {len(out)} cleanup task(s) failed: {', '.join(failed)}")
