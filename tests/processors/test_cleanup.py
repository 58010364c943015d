"""cleanup-* processors: retention arithmetic, batched deletes on both databases, safe temp sweep."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from localservices import Ctx
from sqlalchemy import func, insert, select

from jobctl.config import Settings
from jobctl.db import audit_logs, notifications
from jobctl.errors import PermanentFailure
from jobctl.processors import cleanup
from jobctl.services import Services

NOW = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (365, datetime(2023, 3, 2, 2, 0, tzinfo=UTC)),
        (90, datetime(2023, 12, 2, 2, 0, tzinfo=UTC)),
        (1, datetime(2024, 2, 29, 2, 0, tzinfo=UTC)),
        (0.5, datetime(2024, 2, 29, 14, 0, tzinfo=UTC)),
    ],
)
def test_cutoff_is_now_minus_retention(days: float, expected: datetime) -> None:
    assert cleanup.cutoff(NOW, days) == expected


def test_cutoff_refuses_non_positive_retention() -> None:
    with pytest.raises(ValueError, match="positive"):
        cleanup.cutoff(NOW, 0)


def ages(settings: Settings, table: object, days: list[float]) -> None:
    rows = [{"created_at": NOW - timedelta(days=d)} for d in days]
    if table is notifications:
        rows = [{**r, "user_id": "u1", "body": "b"} for r in rows]
    with Services(settings).engine.begin() as conn:
        conn.execute(insert(table), rows)  # type: ignore[arg-type]


def remaining(settings: Settings, table: object) -> int:
    with Services(settings).engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(JOBCTL_DATABASE_URL=database_url)


def test_audit_logs_past_365_days_are_deleted(settings: Settings, make_ctx: Ctx) -> None:
    ages(settings, audit_logs, [800, 366, 365, 364, 1])
    ctx = make_ctx(settings, "cleanup-audit-logs")
    assert cleanup.cleanup_audit_logs({"dryRun": True}, ctx, now=NOW)["deletedCount"] == 2
    assert remaining(settings, audit_logs) == 5
    result = cleanup.cleanup_audit_logs({}, ctx, now=NOW)
    assert result == {"deletedCount": 2, "before": "2023-03-02T02:00:00+00:00"}
    assert remaining(settings, audit_logs) == 3
    assert cleanup.cleanup_audit_logs({"retentionDays": 2}, ctx, now=NOW)["deletedCount"] == 2


def test_notifications_are_deleted_in_batches(settings: Settings, make_ctx: Ctx) -> None:
    ages(settings, notifications, [91.0 + i / 1000 for i in range(2500)] + [89, 10])
    ctx = make_ctx(settings, "cleanup-notifications")
    dry = cleanup.cleanup_notifications({"dryRun": True}, ctx, now=NOW)
    assert dry["deletedCount"] == 2500 and dry["dryRun"] is True
    engine = ctx.services.engine
    before = cleanup.cutoff(NOW, 90)
    assert cleanup.delete_older(engine, notifications, before, batch=1000) == 2500
    assert remaining(settings, notifications) == 2
    assert cleanup.cleanup_notifications({}, ctx, now=NOW) == {
        "deletedCount": 0, "before": before.isoformat()}


def aged(path: Path, days: float, content: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    stamp = (NOW - timedelta(days=days)).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def test_temp_files_older_than_a_day_go_and_links_are_never_followed(
    tmp_path: Path, make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    settings = make_settings()
    tmp = settings.data_dir / "tmp"
    aged(tmp / "old.bin", 2)
    aged(tmp / "new.bin", 0.5)
    aged(tmp / "image-abc" / "original", 3)
    aged(tmp / "image-new" / "original", 0.1)
    outside = aged(tmp_path / "outside" / "precious.txt", 30)
    os.symlink(outside, tmp / "file-link")
    os.symlink(outside.parent, tmp / "dir-link")
    for link in ("file-link", "dir-link"):
        stamp = (NOW - timedelta(days=5)).timestamp()
        os.utime(tmp / link, (stamp, stamp), follow_symlinks=False)
    for d in ("image-abc", "image-new"):
        os.utime(tmp / d, ((NOW - timedelta(days=3)).timestamp(),) * 2)
    ctx = make_ctx(settings, "cleanup-temp-files")
    assert cleanup.cleanup_temp_files({"dryRun": True}, ctx, now=NOW)["deletedCount"] == 4
    assert len(list(tmp.iterdir())) == 6
    assert cleanup.cleanup_temp_files({}, ctx, now=NOW)["deletedCount"] == 4
    assert sorted(p.name for p in tmp.iterdir()) == ["image-new", "new.bin"]
    assert outside.read_text() == "x"


def test_temp_dir_missing_or_a_symlink(tmp_path: Path, make_settings: Callable[..., Settings],
                                       make_ctx: Ctx) -> None:
    settings = make_settings()
    ctx = make_ctx(settings, "cleanup-temp-files")
    assert cleanup.cleanup_temp_files({}, ctx, now=NOW)["deletedCount"] == 0
    aged(tmp_path / "elsewhere" / "f", 10)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.symlink(tmp_path / "elsewhere", settings.data_dir / "tmp")
    with pytest.raises(PermanentFailure, match="symbolic link"):
        cleanup.cleanup_temp_files({}, ctx, now=NOW)
    assert (tmp_path / "elsewhere" / "f").exists()


def test_invalid_payload_is_permanent(make_settings: Callable[..., Settings], make_ctx: Ctx) -> None:
    with pytest.raises(PermanentFailure, match="retentionDays"):
        cleanup.cleanup_audit_logs({"retentionDays": 0}, make_ctx(make_settings(), "cleanup-audit-logs"))
