"""jobctl.db on SQLite and PostgreSQL: tables, UTC timestamps, caching, unreachable databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect, select
from sqlalchemy.exc import IntegrityError

from jobctl import db
from jobctl.errors import ServiceUnavailable


def test_init_db_creates_every_table_and_is_idempotent(database_url: str) -> None:
    engine = db.engine_for(database_url)
    db.init_db(engine)
    db.init_db(engine)
    names = set(inspect(engine).get_table_names())
    assert {"users", "audit_logs", "notifications", "email_log", "webhook_events", "dead_letters"} <= names
    columns = {c["name"] for c in inspect(engine).get_columns("dead_letters")}
    assert {
        "id", "queue", "job", "job_id", "data", "error", "traceback", "attempts",
        "first_failed_at", "failed_at", "status", "replayed_at", "replay_job_id",
    } <= columns


def test_engine_is_cached_per_url(database_url: str) -> None:
    assert db.engine_for(database_url) is db.engine_for(database_url)


def test_timestamps_round_trip_as_aware_utc_and_compare_in_order(database_url: str) -> None:
    engine = db.engine_for(database_url)
    db.init_db(engine)
    paris = timezone(timedelta(hours=2))
    local = datetime(2024, 5, 1, 12, 0, tzinfo=paris)
    with engine.begin() as conn:
        conn.execute(insert(db.audit_logs), [{"created_at": local, "action": "a"},
                                             {"created_at": local + timedelta(hours=1), "action": "b"}])
        rows = conn.execute(select(db.audit_logs.c.action, db.audit_logs.c.created_at)
                            .where(db.audit_logs.c.created_at < datetime(2024, 5, 1, 10, 30, tzinfo=UTC))
                            ).all()
    assert [r.action for r in rows] == ["a"]
    assert rows[0].created_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert rows[0].created_at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(database_url: str) -> None:
    engine = db.engine_for(database_url)
    db.init_db(engine)
    with pytest.raises(Exception, match="naive datetime"), engine.begin() as conn:
        conn.execute(insert(db.audit_logs).values(created_at=datetime(2024, 1, 1)))


def test_dead_letters_defaults_and_uniqueness(database_url: str) -> None:
    engine = db.engine_for(database_url)
    db.init_db(engine)
    at = datetime(2024, 1, 1, tzinfo=UTC)
    row = {"queue": "email", "job": "send-email", "job_id": "j1", "data": "{}", "failed_at": at}
    with engine.begin() as conn:
        conn.execute(insert(db.dead_letters).values(**row))
        status = conn.execute(select(db.dead_letters.c.status)).scalar_one()
    assert status == "open"
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(db.dead_letters).values(**row))


def test_sqlite_creates_parent_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "app.db"
    engine = db.engine_for(f"sqlite:///{path}")
    db.init_db(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    assert path.is_file()


def test_unreachable_postgres_is_service_unavailable_with_password_masked() -> None:
    url = "postgresql://app:s3cr3t-pw@127.0.0.1:1/app"
    with pytest.raises(ServiceUnavailable) as info:
        db.init_db(db.engine_for(url))
    message = str(info.value)
    assert info.value.exit_code == 4
    assert "s3cr3t-pw" not in message
    assert "app:****@127.0.0.1:1" in message
    assert info.value.__cause__ is None


def test_unopenable_sqlite_is_service_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ServiceUnavailable, match="database unreachable at sqlite:///"):
        db.init_db(db.engine_for(f"sqlite:///{blocker}/sub/app.db"))
