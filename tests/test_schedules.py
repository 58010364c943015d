"""Recurring schedules: due-time arithmetic (pure), install/remove, and once-only firing on a real Redis."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from jobctl import keys, schedules
from jobctl.config import Settings
from jobctl.context import JobContext
from jobctl.errors import UsageError
from jobctl.runtime import Runtime
from jobctl.schedules import Schedule
from jobctl.worker import Runner


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


DAILY = Schedule("daily", cron="0 2 * * *", queue="data-cleanup", job="cleanup-temp-files")
FIVE = Schedule("five", every_s=300, command="health")
CRON5 = Schedule("cron5", cron="*/5 * * * *", command="health")
MONDAY = Schedule("monday", cron="30 6 * * 1", command="health")


@pytest.mark.parametrize(("s", "now", "last", "nxt"), [
    (DAILY, "2026-11-28T01:59:59", "2026-11-27T02:00:00", "2026-11-28T02:00:00"),
    (DAILY, "2026-11-28T02:00:00", "2026-11-28T02:00:00", "2026-11-29T02:00:00"),
    (DAILY, "2026-11-28T02:00:00.000001", "2026-11-28T02:00:00", "2026-11-29T02:00:00"),
    (DAILY, "2026-12-31T23:59:59", "2026-12-31T02:00:00", "2027-01-01T02:00:00"),
    (DAILY, "2028-02-28T03:00:00", "2028-02-28T02:00:00", "2028-02-29T02:00:00"),
    (FIVE, "2026-11-28T10:00:00", "2026-11-28T10:00:00", "2026-11-28T10:05:00"),
    (FIVE, "2026-11-28T10:04:59.999", "2026-11-28T10:00:00", "2026-11-28T10:05:00"),
    (FIVE, "2026-11-28T23:57:00", "2026-11-28T23:55:00", "2026-11-29T00:00:00"),
    (CRON5, "2026-11-28T10:07:30", "2026-11-28T10:05:00", "2026-11-28T10:10:00"),
    (MONDAY, "2026-11-28T12:00:00", "2026-11-23T06:30:00", "2026-11-30T06:30:00"),
])
def test_due_times(s: Schedule, now: str, last: str, nxt: str) -> None:
    assert schedules.last_due(s, t(now)) == t(last)
    assert schedules.next_due(s, t(now)) == t(nxt)


@pytest.mark.parametrize(("s", "due", "ttl"), [
    (DAILY, "2026-11-28T02:00:00", 2 * 86400),
    (FIVE, "2026-11-28T10:00:00", 600),
    (MONDAY, "2026-11-23T06:30:00", 14 * 86400),
    (Schedule("fast", every_s=10, command="health"), "2026-11-28T10:00:00", 60),
])
def test_guard_outlives_two_periods(s: Schedule, due: str, ttl: int) -> None:
    assert schedules.guard_ttl_s(s, t(due)) == ttl


def test_sleep_until_next_due_capped() -> None:
    assert schedules.sleep_s([DAILY, FIVE], t("2026-11-28T10:04:50")) == 10
    assert schedules.sleep_s([DAILY], t("2026-11-28T10:00:00")) == schedules.MAX_SLEEP_S
    assert schedules.sleep_s([FIVE], t("2026-11-28T10:04:59.999")) == 0.2


@pytest.mark.parametrize(("s", "message"), [
    (Schedule("bad name!", every_s=60, command="health"), "invalid schedule name"),
    (Schedule("both", cron="* * * * *", every_s=60, command="health"), "exactly one"),
    (Schedule("neither", command="health"), "exactly one"),
    (Schedule("cron", cron="61 * * * *", command="health"), "invalid cron"),
    (Schedule("zero", every_s=0, command="health"), "interval"),
    (Schedule("cmd", every_s=60, command="rm"), "command must be one of health"),
    (Schedule("nothing", every_s=60), "queue and a job"),
    (Schedule("job", every_s=60, queue="data-cleanup", job="send-email"), "unknown job 'send-email'"),
])
def test_invalid_definitions_are_refused(settings: Settings, s: Schedule, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        schedules.check(s, Runtime(settings))


def test_install_is_idempotent_and_stored_as_json(rt: Runtime) -> None:
    first = schedules.install(rt, schedules.DEFAULTS, t("2026-11-27T12:00:00"))
    stored = rt.redis.hgetall(keys.schedules())
    again = schedules.install(rt, schedules.DEFAULTS, t("2026-11-27T13:00:00"))
    assert [s for _, s in first] == ["installed"] * 4
    assert [s for _, s in again] == ["unchanged"] * 4
    assert rt.redis.hgetall(keys.schedules()) == stored
    docs = {k.decode(): json.loads(v) for k, v in stored.items()}
    assert docs["cleanup-audit-logs"] | {"installed_at": None} == {
        "name": "cleanup-audit-logs", "cron": "0 2 * * *", "every_s": None, "queue": "data-cleanup",
        "job": "cleanup-audit-logs", "payload": {}, "command": None, "job_id": "{name}-{date}",
        "once": "cleanup:audit-logs:{date}", "installed_at": None}
    assert docs["health"]["every_s"] == 300 and docs["health"]["installed_at"] == "2026-11-27T12:00:00Z"
    changed = replace(schedules.DEFAULTS[0], cron="0 3 * * *")
    assert schedules.install(rt, [changed], t("2026-11-27T14:00:00")) == [("cleanup-audit-logs", "updated")]
    assert schedules.load_all(rt)[0].cron == "0 3 * * *"


def test_remove_by_name_or_all(rt: Runtime) -> None:
    schedules.install(rt, schedules.DEFAULTS, t("2026-11-27T12:00:00"))
    with pytest.raises(UsageError, match="unknown schedule 'nope'; known schedules: cleanup-audit-logs"):
        schedules.remove(rt, ["health", "nope"])
    assert len(schedules.load_all(rt)) == 4
    assert schedules.remove(rt, ["health"]) == ["health"]
    assert schedules.remove(rt, [], everything=True) == [
        "cleanup-audit-logs", "cleanup-notifications", "cleanup-temp-files"]
    assert schedules.load_all(rt) == []


def test_runs_due_before_install_do_not_fire(rt: Runtime) -> None:
    schedules.install(rt, [DAILY], t("2026-11-28T10:00:00"))
    assert schedules.tick(rt, t("2026-11-28T10:00:30")) == []
    fired = schedules.tick(rt, t("2026-11-29T02:00:05"))
    assert [(f.name, f.action, f.job_id) for f in fired] == [("daily", "enqueued", "daily-20261129T020000Z")]


def test_two_schedulers_at_once_fire_each_run_once(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setitem(schedules.COMMANDS, "health", lambda rt: ran.append("health") or "OK")
    setup = Runtime(settings)
    schedules.install(setup, [*schedules.DEFAULTS[:3], FIVE], t("2026-11-27T00:00:00"))
    now = t("2026-11-28T02:00:01")
    gate = threading.Barrier(8)
    results: list[list[schedules.Fired]] = []

    def scheduler() -> None:
        rt = Runtime(settings)  # its own connection, as another process would have
        gate.wait()
        results.append(schedules.tick(rt, now))

    threads = [threading.Thread(target=scheduler) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    actions = sorted((f.name, f.action) for fired in results for f in fired)
    assert actions.count(("five", "ran")) == 1 and ran == ["health"]
    for task in schedules.CLEANUP_TASKS:
        assert actions.count((f"cleanup-{task}", "enqueued")) == 1
        assert actions.count((f"cleanup-{task}", "duplicate")) == 7
    assert setup.redis.llen(keys.queue_list("data-cleanup")) == 3


def test_enqueued_run_has_the_jobctl_layout_and_a_worker_runs_it(rt: Runtime) -> None:
    schedules.install(rt, [schedules.cleanup_schedule("temp-files")], t("2026-11-27T00:00:00"))
    schedules.tick(rt, t("2026-11-28T02:00:00"))
    job_id = "cleanup-temp-files-2026-11-28"
    h = {k.decode(): v.decode() for k, v in rt.redis.hgetall(keys.job(job_id)).items()}
    assert json.loads(h["data"]) == ["cleanup-temp-files", None, [{}], {}]
    assert (h["origin"], h["status"], h["jc_queue"], h["jc_job"], h["jc_priority"], h["jc_attempt"], h["jc_max"]) \
        == ("data-cleanup", "queued", "data-cleanup", "cleanup-temp-files", "10", "0", "1")
    assert rt.redis.lrange(keys.queue_list("data-cleanup"), 0, -1) == [job_id.encode()]
    assert rt.redis.zcard(keys.marker("data-cleanup")) == 1
    seen: list[tuple[str, dict[str, Any]]] = []

    def record(payload: dict[str, Any], ctx: JobContext) -> dict[str, int]:
        seen.append((ctx.job_id, payload))
        return {"deletedCount": 0}

    names = {n: record for n in rt.settings.queues.get("data-cleanup").jobs}
    Runner(rt, ["data-cleanup"], processors=names, services=object()).work(burst=True)
    assert seen == [(job_id, {})]


def test_nothing_is_pickled(rt: Runtime) -> None:
    schedules.install(rt, schedules.DEFAULTS, t("2026-11-27T00:00:00"))
    schedules.tick(rt, t("2026-11-28T02:00:00"))
    for key in rt.redis.scan_iter():
        kind = rt.redis.type(key).decode()
        values: list[bytes] = []
        if kind == "hash":
            values = list(rt.redis.hgetall(key).values())
        elif kind == "string":
            values = [rt.redis.get(key) or b""]
        for v in values:
            assert not v.startswith((b"\x80", b"x\x9c")), (key, v)  # pickle protocol 2+ or zlib
    for raw in rt.redis.hvals(keys.schedules()):
        json.loads(raw)


def test_a_run_that_cannot_enqueue_releases_its_guard(rt: Runtime) -> None:
    broken = Schedule("broken", every_s=60, queue="data-cleanup", job="send-email")
    fired = schedules.tick(rt, t("2026-11-28T02:00:00"), [broken])
    assert [(f.action, f.detail) for f in fired] == [
        ("failed", "unknown job 'send-email' for queue 'data-cleanup'; known jobs: "
                   "cleanup-audit-logs, cleanup-notifications, cleanup-temp-files")]
    assert list(rt.redis.scan_iter(keys.once("*"))) == []


def test_cleanup_is_enqueued_once_per_day_across_hosts_and_the_scheduler(settings: Settings) -> None:
    host_a, host_b = Runtime(settings), Runtime(settings)
    day = date(2026, 11, 28)
    first = schedules.enqueue_cleanup(host_a, ["audit-logs", "temp-files"], day)
    second = schedules.enqueue_cleanup(host_b, ["audit-logs", "temp-files"], day)
    assert [(o.action, o.job_id) for o in first] == [
        ("enqueued", "cleanup-audit-logs-2026-11-28"), ("enqueued", "cleanup-temp-files-2026-11-28")]
    assert [o.action for o in second] == ["duplicate", "duplicate"]
    ttl = host_a.redis.ttl(keys.once("cleanup:audit-logs:2026-11-28"))
    assert 2 * 86400 - 5 <= ttl <= 2 * 86400
    schedules.install(host_a, schedules.DEFAULTS[:3], t("2026-11-27T00:00:00"))
    fired = schedules.tick(host_b, t("2026-11-28T02:00:00"))
    assert [(f.name, f.action) for f in fired] == [
        ("cleanup-audit-logs", "duplicate"), ("cleanup-notifications", "enqueued"),
        ("cleanup-temp-files", "duplicate")]
    assert [o.action for o in schedules.enqueue_cleanup(host_a, ["audit-logs"], day + timedelta(days=1))] \
        == ["enqueued"]
    assert host_a.redis.llen(keys.queue_list("data-cleanup")) == 4


def test_check_tasks() -> None:
    assert schedules.check_tasks([]) == ["audit-logs", "notifications", "temp-files"]
    assert schedules.check_tasks(["temp-files", "audit-logs", "temp-files"]) == ["temp-files", "audit-logs"]
    with pytest.raises(UsageError, match="unknown cleanup task 'logs'; known tasks: audit-logs, notifications, "
                                         "temp-files"):
        schedules.check_tasks(["logs"])


def test_run_loop_stops_on_request(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    schedules.install(rt, [DAILY], t("2026-11-27T00:00:00"))
    stop = threading.Event()
    clock = iter([t("2026-11-28T02:00:00"), t("2026-11-28T02:00:00")])

    def now() -> datetime:
        stop.set()  # one pass, then stop
        return next(clock)

    schedules.run(rt, stop, clock=now)
    assert rt.redis.exists(keys.job("daily-20261128T020000Z"))
