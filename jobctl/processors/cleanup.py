"""cleanup-audit-logs / cleanup-notifications / cleanup-temp-files: delete what is past retention.

Retention comes from `Settings.retention_days` (audit-logs 365, notifications 90, temp-files 1),
overridden by the payload's `retentionDays`. Rows go in batches of BATCH ids, each batch its own
transaction, so a large backlog never holds one long lock. Temp files are swept under
`<data_dir>/tmp` through directory file descriptors: symlinks are removed as links, never followed.
"""

from __future__ import annotations

import contextlib
import os
import stat
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, delete, func, select

from jobctl.context import JobContext
from jobctl.db import audit_logs, notifications, reachable
from jobctl.errors import PermanentFailure
from jobctl.payloads import Cleanup
from jobctl.processors._common import parse

BATCH = 1000


def cutoff(now: datetime, retention_days: float) -> datetime:
    """Everything created strictly before this instant is past retention."""
    if retention_days <= 0:
        raise ValueError("retention must be a positive number of days")
    return now - timedelta(days=retention_days)


def retention_days(ctx: JobContext, task: str, override: int | None) -> float:
    """The payload's retentionDays, else the configured retention of `task`."""
    return float(override) if override is not None else float(ctx.settings.retention_days[task])


def cleanup_audit_logs(payload: dict[str, Any], ctx: JobContext, now: datetime | None = None) -> dict[str, Any]:
    """Delete audit-log rows past retention (365 days by default)."""
    return _rows(payload, ctx, audit_logs, "audit-logs", now)


def cleanup_notifications(
    payload: dict[str, Any], ctx: JobContext, now: datetime | None = None
) -> dict[str, Any]:
    """Delete notifications past retention (90 days by default)."""
    return _rows(payload, ctx, notifications, "notifications", now)


def cleanup_temp_files(payload: dict[str, Any], ctx: JobContext, now: datetime | None = None) -> dict[str, Any]:
    """Delete files under <data_dir>/tmp not modified within retention (1 day by default)."""
    p = parse(Cleanup, payload)
    before = cutoff(now or datetime.now(UTC), retention_days(ctx, "temp-files", p.retentionDays))
    root = ctx.settings.data_dir / "tmp"
    if root.is_symlink():
        raise PermanentFailure(f"refusing to clean {root}: it is a symbolic link")
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return _result(0, p.dryRun, before)
    try:
        count = sweep(fd, before.timestamp(), p.dryRun)
    finally:
        os.close(fd)
    return _result(count, p.dryRun, before)


def _rows(payload: dict[str, Any], ctx: JobContext, table: Table, task: str, now: datetime | None) -> dict[str, Any]:
    p = parse(Cleanup, payload)
    before = cutoff(now or datetime.now(UTC), retention_days(ctx, task, p.retentionDays))
    engine = ctx.services.engine
    count = count_older(engine, table, before) if p.dryRun else delete_older(engine, table, before)
    return _result(count, p.dryRun, before)


def _result(count: int, dry_run: bool, before: datetime) -> dict[str, Any]:
    result: dict[str, Any] = {"deletedCount": count, "before": before.isoformat()}
    if dry_run:
        result["dryRun"] = True
    return result


def count_older(engine: Engine, table: Table, before: datetime) -> int:
    """How many rows were created before `before`."""
    query = select(func.count()).select_from(table).where(table.c.created_at < before)
    with reachable(engine), engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def delete_older(engine: Engine, table: Table, before: datetime, batch: int = BATCH) -> int:
    """Delete rows created before `before`, `batch` ids per transaction; the number deleted."""
    total = 0
    ids_query = select(table.c.id).where(table.c.created_at < before).order_by(table.c.id).limit(batch)
    while True:
        with reachable(engine), engine.begin() as conn:
            ids = list(conn.execute(ids_query).scalars())
            if not ids:
                return total
            total += conn.execute(delete(table).where(table.c.id.in_(ids))).rowcount


def sweep(dir_fd: int, before_ts: float, dry_run: bool) -> int:
    """Remove (or count) files and links older than `before_ts` below `dir_fd`; then empty old dirs."""
    count = 0
    with os.scandir(dir_fd) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            count += _sweep_dir(dir_fd, name, before_ts, dry_run)
            if st.st_mtime < before_ts and not dry_run:
                _rmdir_if_empty(dir_fd, name)
        elif st.st_mtime < before_ts:
            if not dry_run:
                os.unlink(name, dir_fd=dir_fd)  # a symlink is removed itself, its target untouched
            count += 1
    return count


def _sweep_dir(parent_fd: int, name: str, before_ts: float, dry_run: bool) -> int:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
    except OSError:  # replaced by a symlink or removed meanwhile
        return 0
    try:
        return sweep(fd, before_ts, dry_run)
    finally:
        os.close(fd)


def _rmdir_if_empty(parent_fd: int, name: str) -> None:
    with contextlib.suppress(OSError):  # not empty: something recent is still inside
        os.rmdir(name, dir_fd=parent_fd)
