"""`jobctl cleanup`, `jobctl schedule …` and `jobctl scheduler` as subprocesses: exit codes and output."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from jobctl import keys, schedules
from jobctl.runtime import Runtime
from jobctl.schedules import Schedule
from tests.support.cli import JOBCTL, jobctl

KNOWN = "known tasks: audit-logs, notifications, temp-files"


def rows(table: str) -> list[list[str]]:
    """The body cells of a Rich table printed without colour."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines() if line.startswith("│")]


def test_cleanup_enqueues_each_task_once_per_day(env: dict[str, str], rt: Runtime) -> None:
    day = datetime.now(UTC).date().isoformat()
    first = jobctl(env, "cleanup", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"tasks": [
        {"task": t, "action": "enqueued", "job_id": f"cleanup-{t}-{day}", "deletedCount": None}
        for t in ("audit-logs", "notifications", "temp-files")]}
    second = jobctl(env, "cleanup", "temp-files", "--json")  # cron firing on a second host
    assert second.returncode == 0
    assert json.loads(second.stdout)["tasks"] == [
        {"task": "temp-files", "action": "duplicate", "job_id": f"cleanup-temp-files-{day}", "deletedCount": None}]
    assert rt.redis.llen(keys.queue_list("data-cleanup")) == 3
    human = jobctl(env, "cleanup", "audit-logs")
    assert human.returncode == 0
    assert rows(human.stdout) == [["audit-logs", "duplicate", f"cleanup-audit-logs-{day}", ""]]


@pytest.mark.parametrize("args", [("cleanup", "logs"), ("cleanup", "audit-logs", "logs", "--now")])
def test_unknown_task_is_a_usage_error(env: dict[str, str], rt: Runtime, args: tuple[str, ...]) -> None:
    out = jobctl(env, *args)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.strip() == f"error: unknown cleanup task 'logs'; {KNOWN}"
    assert rt.redis.dbsize() == 0


def test_cleanup_without_redis_exits_4(env: dict[str, str]) -> None:
    out = jobctl(env | {"JOBCTL_REDIS_URL": "redis://:secret@127.0.0.1:1/0"}, "cleanup")
    assert out.returncode == 4
    assert "Redis at redis://:****@127.0.0.1:1/0 is unreachable" in out.stderr
    assert "secret" not in out.stderr and "Traceback" not in out.stderr


def seed_old_rows(rt: Runtime) -> None:
    """Two old and one recent row in each of audit_logs and notifications."""
    from jobctl import db

    now = datetime.now(UTC)
    engine = db.engine_for(rt.settings.database_url)
    db.init_db(engine)
    with engine.begin() as conn:
        conn.execute(db.audit_logs.insert(), [{"created_at": now - timedelta(days=d)} for d in (400, 366, 10)])
        conn.execute(db.notifications.insert(),
                     [{"user_id": "u1", "created_at": now - timedelta(days=d)} for d in (120, 91, 1)])


def count(rt: Runtime, table: str) -> int:
    from sqlalchemy import func, select

    from jobctl import db

    with db.engine_for(rt.settings.database_url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(db.metadata.tables[table])).scalar_one())


def test_dry_run_counts_and_now_deletes(env: dict[str, str], rt: Runtime) -> None:
    pytest.importorskip("jobctl.processors.cleanup", reason="cleanup processors not committed yet")
    seed_old_rows(rt)
    dry = jobctl(env, "cleanup", "audit-logs", "notifications", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {"tasks": [
        {"task": "audit-logs", "action": "ran", "job_id": None, "deletedCount": 2},
        {"task": "notifications", "action": "ran", "job_id": None, "deletedCount": 2}]}
    assert (count(rt, "audit_logs"), count(rt, "notifications")) == (3, 3)
    now = jobctl(env, "cleanup", "audit-logs", "notifications", "--now")
    assert now.returncode == 0, now.stderr
    assert rows(now.stdout) == [["audit-logs", "ran", "", "2"], ["notifications", "ran", "", "2"]]
    assert (count(rt, "audit_logs"), count(rt, "notifications")) == (1, 1)
    assert rt.redis.dbsize() == 0  # ran here: nothing enqueued, no daily guard taken


def test_schedule_install_list_remove(env: dict[str, str], rt: Runtime) -> None:
    out = jobctl(env, "schedule", "install")
    assert (out.returncode, out.stdout) == (0, "cleanup-audit-logs: installed\ncleanup-notifications: installed\n"
                                               "cleanup-temp-files: installed\nhealth: installed\n")
    again = jobctl(env, "schedule", "install", "--json")
    assert json.loads(again.stdout) == [{"name": n, "status": "unchanged"} for n in (
        "cleanup-audit-logs", "cleanup-notifications", "cleanup-temp-files", "health")]
    listed = jobctl(env, "schedule", "list", "--json")
    assert listed.returncode == 0
    docs = json.loads(listed.stdout)
    assert [(r["name"], r["cron"], r["every_s"]) for r in docs] == [
        ("cleanup-audit-logs", "0 2 * * *", None), ("cleanup-notifications", "0 2 * * *", None),
        ("cleanup-temp-files", "0 2 * * *", None), ("health", None, 300)]
    assert docs[0]["next_run"].endswith("T02:00:00Z") and docs[3]["next_run"][14:19] in {
        f"{m:02d}:00" for m in range(0, 60, 5)}
    human = rows(jobctl(env, "schedule", "list").stdout)
    assert human[2] == ["cleanup-temp-files", "cron 0 2 * * *", "cleanup-temp-files on data-cleanup",
                        docs[2]["next_run"]]
    assert human[3][:3] == ["health", "every 300s", "health"]
    bad = jobctl(env, "schedule", "remove", "nope")
    assert bad.returncode == 2 and "unknown schedule 'nope'; known schedules: cleanup-audit-logs" in bad.stderr
    assert jobctl(env, "schedule", "remove").returncode == 2
    assert jobctl(env, "schedule", "remove", "health").stdout == "removed 1 schedule(s): health\n"
    assert jobctl(env, "schedule", "remove", "--all").stdout.startswith("removed 3 schedule(s): cleanup-audit-logs")
    assert json.loads(jobctl(env, "schedule", "list", "--json").stdout) == []


def test_two_scheduler_processes_fire_each_run_once(env: dict[str, str], rt: Runtime) -> None:
    schedules.install(rt, [Schedule("tick", every_s=1, queue="data-cleanup", job="cleanup-temp-files")],
                      datetime.now(UTC))
    procs = [subprocess.Popen([JOBCTL, "scheduler"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(4)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=10) for p in procs]
    assert codes == [0, 0], [p.stderr.read() if p.stderr else "" for p in procs]
    ids = [i.decode() for i in rt.redis.lrange(keys.queue_list("data-cleanup"), 0, -1)]
    assert len(ids) >= 3 and len(ids) == len(set(ids))
    assert all(i.startswith("tick-") and i.endswith("Z") for i in ids)
