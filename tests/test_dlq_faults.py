"""Dead letters when things go wrong (issues 12 and 13), on real Redis and SQLite/PostgreSQL:
a read-only store (one line, exit 4, nothing lost), the hook during an outage, dry runs that check
what the real replay checks, the `--error` filter, paced replays, and dead-letter counts in stats
and health."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, make_url

from jobctl import capture as cp
from jobctl import config, db, keys
from jobctl import deadletter as dl
from jobctl import replay as rp
from jobctl.config import Settings
from jobctl.errors import PermanentFailure, ServiceUnavailable
from jobctl.hooks import Hooks
from jobctl.producer import enqueue
from jobctl.queues import RateLimit
from jobctl.runtime import Runtime
from jobctl.worker import Runner
from tests.support.cli import jobctl

QUEUE, JOB = "image-processing", "process-image"
PAYLOAD = {"userId": "u1", "originalPath": "in/a.jpg", "targetPath": "out/a.jpg", "maxWidth": 100,
           "maxHeight": 100, "quality": 80}
PG_PASSWORD = "pg-s3cret-Zq7"


@pytest.fixture
def database_url(database_url: str) -> str:
    """The shared fixture's URL, with a password on PostgreSQL (trust auth ignores it) to check masking."""
    return database_url.replace("postgres@", f"postgres:{PG_PASSWORD}@", 1)


@pytest.fixture
def settings(redis_url: str, tmp_path: Path, database_url: str) -> Settings:
    """Settings on the test Redis and database."""
    env = {"JOBCTL_REDIS_URL": redis_url, "JOBCTL_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path),
           "JOBCTL_DATABASE_URL": database_url}
    return config.load(env=env, cwd=tmp_path)


@contextmanager
def read_only(url: str) -> Iterator[str]:
    """The same store, made read-only: SQLite's files immutable (chattr +i, as a read-only remount
    leaves them); PostgreSQL sessions in read-only transactions. Yields the URL to use meanwhile."""
    if not url.startswith("sqlite"):
        yield url.replace("options=", "options=-cdefault_transaction_read_only%3Don%20", 1)
        return
    path = str(make_url(url).database)
    db.dispose_engines()  # close pooled connections first: a fresh one opens the file read-only
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", path], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here (needs root on ext4/xfs)")
    try:
        yield url
    finally:
        db.dispose_engines()
        subprocess.run(["chattr", "-i", path], check=True)


def permanent(_payload: dict[str, Any], _ctx: Any) -> None:
    """Fails at once."""
    raise PermanentFailure("origin answered 404")


def run(rt: Runtime, hooks: list[object], slots: int | None = None) -> None:
    """Run image-processing in this process until empty (in `slots` slots; default: the queue's)."""
    Runner(rt, [QUEUE], processors={JOB: permanent}, services=object(), hooks=Hooks(hooks),
           slots={QUEUE: slots} if slots else None).work(burst=True)


def record(rt: Runtime, error: str = "err", payload: dict[str, Any] | None = None, job: str = JOB,
           age: timedelta = timedelta(0), tb: str | None = None) -> int:
    """One recorded failure."""
    f = dl.Failure(QUEUE, job, str(uuid.uuid4()), PAYLOAD if payload is None else payload, error, tb, 1,
                   datetime.now(UTC) - age)
    return dl.store_for(rt).record(f)[0]


# -- database faults ------------------------------------------------------------------------------


def test_sync_on_a_read_only_store_is_one_line_exit_4_and_records_later(
        rt: Runtime, cli_env: dict[str, str], database_url: str) -> None:
    dl.store_for(rt).ready()
    job = enqueue(rt, QUEUE, JOB, PAYLOAD)
    run(rt, [])  # no hook: the failure is only in RQ's failed registry, as after an outage
    env = cli_env | {"JOBCTL_DATABASE_URL": database_url}
    with read_only(database_url) as ro:
        r = jobctl(env | {"JOBCTL_DATABASE_URL": ro}, "dlq", "sync")
    assert (r.returncode, r.stdout) == (4, "")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr and PG_PASSWORD not in r.stderr
    assert r.stderr.startswith(f"error: database failed at {db.masked(ro)}: ")
    assert "read-only" in r.stderr or "readonly" in r.stderr
    r = jobctl(env, "dlq", "sync")
    assert (r.returncode, r.stdout, r.stderr) == (0, "recorded 1 new dead letter(s)\n", "")
    assert [e.job_id for e in dl.store_for(rt).entries(dl.Filter())] == [job.id]


@contextmanager
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs mounted under tmp_path (root only), unmounted afterwards."""
    where = tmp_path / "tiny"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        db.dispose_engines()
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_sync_on_a_full_disk_is_one_line_exit_4(rt: Runtime, cli_env: dict[str, str], tmp_path: Path) -> None:
    if not rt.settings.database_url.startswith("sqlite"):
        pytest.skip("a full disk is tested on a SQLite file (the Redis side does not depend on the database)")
    with tiny_disk(tmp_path) as disk:
        url = f"sqlite:///{disk / 'app.db'}"
        full = Runtime(dataclasses.replace(rt.settings, database_url=url))
        dl.store_for(full).ready()
        db.dispose_engines()
        with contextlib.suppress(OSError), (disk / "filler").open("wb") as fh:  # take every free block
            while True:
                fh.write(b"x" * 4096)
                fh.flush()
        for _ in range(3):
            enqueue(rt, QUEUE, JOB, PAYLOAD)
        run(rt, [])
        r = jobctl(cli_env | {"JOBCTL_DATABASE_URL": url}, "dlq", "sync")
    assert (r.returncode, r.stdout) == (4, ""), r.stderr
    assert r.stderr.startswith(f"error: database failed at {url}: ") and r.stderr.count("\n") == 1
    assert "full" in r.stderr and "Traceback" not in r.stderr


def test_store_errors_are_service_unavailable_naming_the_masked_database(rt: Runtime, database_url: str) -> None:
    dl.store_for(rt).ready()
    with read_only(database_url) as ro:
        store = dl.DeadLetterStore(db.engine_for(ro))
        with pytest.raises(ServiceUnavailable) as info:
            store.record(dl.Failure(QUEUE, JOB, "j1", PAYLOAD, "e", None, 1, datetime.now(UTC)))
    assert str(info.value).startswith(f"database failed at {db.masked(ro)}: ")
    assert PG_PASSWORD not in str(info.value) and "[SQL:" not in str(info.value)  # no statement, no parameters


def test_the_hook_during_an_outage_logs_one_line_per_job_and_loses_nothing(
        rt: Runtime, settings: Settings, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    dl.store_for(rt).ready()
    jobs = [enqueue(rt, QUEUE, JOB, PAYLOAD).id for _ in range(3)]
    rt.redis.set(keys.job("garbage-1"), "not a hash")  # refused at take: no job hash keeps its failure
    rt.redis.rpush(keys.queue_list(QUEUE), "garbage-1")
    caplog.set_level(logging.INFO)
    now = [0.0]
    inserts: list[str] = []
    with read_only(database_url) as ro:
        hook = cp.DeadLetterHook(Runtime(dataclasses.replace(settings, database_url=ro)), clock=lambda: now[0])
        event.listen(db.engine_for(ro), "before_cursor_execute",
                     lambda *a: inserts.append(a[2]) if a[2].startswith("INSERT INTO dead_letters") else None)
        run(rt, [hook], slots=1)  # one after another (failures in flight at once all try the store)
    assert len(inserts) == 1  # tried once: the later failures within RETRY_STORE_S wait in Redis
    during = [r for r in caplog.records if r.name.startswith("jobctl")]
    assert not any(r.exc_info for r in during)  # no traceback at all
    started = [r for r in during if "dead-letter store unavailable" in r.getMessage()]
    per_job = [r for r in during if "not recorded yet" in r.getMessage()]
    assert len(started) == 1 and db.masked(ro) in started[0].getMessage()
    assert sorted(str(r.args[0]) for r in per_job) == sorted([*jobs, "garbage-1"])  # type: ignore[index]
    assert all(PG_PASSWORD not in r.getMessage() for r in during)
    assert dl.store_for(rt).entries(dl.Filter()) == [] and rt.redis.llen(keys.unrecorded()) == 1

    caplog.clear()
    hook.rt = rt  # the database is back
    now[0] += cp.RETRY_STORE_S
    late = enqueue(rt, QUEUE, JOB, PAYLOAD).id
    run(rt, [hook])
    ended = [r for r in caplog.records if "available again" in r.getMessage()]
    assert len(ended) == 1 and "4 dead letter(s) missed" in ended[0].getMessage()
    assert cp.reconcile(rt) == 4
    assert sorted(e.job_id for e in dl.store_for(rt).entries(dl.Filter())) == sorted([*jobs, "garbage-1", late])
    assert rt.redis.llen(keys.unrecorded()) == 0 and cp.reconcile(rt) == 0


# -- replay: dry runs check, filters, pacing --------------------------------------------------------


def test_a_dry_run_reports_what_the_real_replay_refuses(rt: Runtime) -> None:
    good = record(rt)
    bad = record(rt, payload={"userId": "u1"})
    gone = record(rt, job="resize-gif")  # no longer a job of any queue
    dry = {o.id: o for o in rp.replay(rt, dl.Filter(queue=QUEUE), dry_run=True)}
    assert dry[good].action == "would replay"
    assert (dry[bad].action, dry[gone].action) == ("failed", "failed")
    assert "originalPath" in (dry[bad].reason or "") and "resize-gif" in (dry[gone].reason or "")
    assert rt.redis.dbsize() == 0 and {e.status for e in dl.store_for(rt).entries(dl.Filter())} == {"open"}
    real = {o.id: o for o in rp.replay(rt, dl.Filter(queue=QUEUE))}
    assert {i: (o.action, o.reason) for i, o in real.items() if i != good} == \
        {i: (o.action, o.reason) for i, o in dry.items() if i != good}
    assert real[good].action == "replayed"


def test_cli_dry_run_fails_like_the_replay_would(rt: Runtime, cli_env: dict[str, str], database_url: str) -> None:
    bad = record(rt, payload={"userId": "u1"})
    r = jobctl(cli_env | {"JOBCTL_DATABASE_URL": database_url}, "dlq", "replay", "--all", "--dry-run", "--json")
    assert r.returncode == 1 and r.stderr.startswith(f"error: 1 of 1 replay(s) would fail: {bad}: invalid payload")
    doc = json.loads(r.stdout)
    assert (doc["dry_run"], doc["failed"], doc["entries"][0]["action"]) == (True, 1, "failed")


def test_error_filter_matches_class_or_message_in_any_case_literally(rt: Runtime) -> None:
    boom = record(rt, "RuntimeError: boom (attempt 2 of 2)")
    http = record(rt, "permanent failure: webhook endpoint answered HTTP 400: 'nope'",
                  tb="Traceback (most recent call last):\n  ...\njobctl.processors._common.HttpRefused: HTTP 400")
    odd = record(rt, "ValueError: 100%_done")
    decoy = record(rt, "ValueError: 100 percent done")

    def ids(text: str) -> set[int]:
        return {e.id for e in dl.store_for(rt).entries(dl.Filter(error=text))}

    assert ids("runtimeerror") == {boom}
    assert ids("HTTP 400") == {http}
    assert ids("100%_") == {odd}  # % and _ are text, not wildcards
    assert ids("ValueError") == {odd, decoy}
    assert ids("httprefused") == {http}  # the class, from the traceback's last line
    out = rp.replay(rt, dl.Filter(error="http 400"))
    assert [(o.id, o.action) for o in out] == [(http, "replayed")]


def test_replay_is_paced_by_the_clock_given(rt: Runtime) -> None:
    ids = [record(rt, age=timedelta(minutes=10 - i)) for i in range(5)]
    now = [1000.0]
    sleeps: list[float] = []
    at: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    out = rp.replay(rt, dl.Filter(queue=QUEUE), rate=RateLimit(2), clock=lambda: now[0], sleep=sleep,
                    progress=lambda done, total: at.append(now[0]) if done else None)
    assert [o.action for o in out] == ["replayed"] * 5 and [o.id for o in out] == ids
    assert at == [1000.0, 1000.5, 1001.0, 1001.5, 1002.0]  # 2 per second, from the first
    assert sum(sleeps) == pytest.approx(2.0)
    assert rt.redis.llen(keys.queue_list(QUEUE)) == 5


def test_pacer_does_not_sleep_when_the_work_itself_is_slower() -> None:
    ticks = iter([0.0, 0.7, 1.4, 1.45])
    sleeps: list[float] = []
    pacer = rp.Pacer(RateLimit(30, 60.0), clock=lambda: next(ticks), sleep=sleeps.append)  # one per 2 s
    for _ in range(4):
        pacer.wait()
    assert sleeps == pytest.approx([1.3, 2.6, 4.55])
    unpaced = rp.Pacer(None, clock=lambda: pytest.fail("no rate: never reads the clock"), sleep=sleeps.append)
    unpaced.wait()


def test_cli_rate_and_error_options(rt: Runtime, cli_env: dict[str, str], database_url: str) -> None:
    env = cli_env | {"JOBCTL_DATABASE_URL": database_url}
    http = record(rt, "permanent failure: webhook endpoint answered HTTP 400")
    record(rt, "RuntimeError: boom")
    r = jobctl(env, "dlq", "replay", "--all", "--rate", "fast")
    assert (r.returncode, r.stdout, r.stderr) == (
        2, "", "error: --rate 'fast' is not N/s, N/m or N/h with N >= 1 (e.g. 50/s)\n")
    r = jobctl(env, "dlq", "replay", "--error", "HTTP 400", "--rate", "100/s", "--json")
    assert r.returncode == 0, r.stderr
    assert [(e["id"], e["action"]) for e in json.loads(r.stdout)["entries"]] == [(http, "replayed")]
    r = jobctl(env, "dlq", "list", "--error", "boom", "--json")
    assert [d["error"] for d in json.loads(r.stdout)] == ["RuntimeError: boom"]


# -- counts in stats and health -------------------------------------------------------------------


def test_stats_count_zero_before_the_tables_exist(cli_env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")  # a database file with no tables yet
    for url in (f"sqlite:///{tmp_path / 'none.db'}", f"sqlite:///{empty}"):
        r = jobctl(cli_env | {"JOBCTL_DATABASE_URL": url}, "stats", "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert {q["dead_letters"] for q in doc["queues"]} == {0} and doc["database_error"] is None
    assert not (tmp_path / "none.db").exists()  # reading stats creates no database


def test_stats_and_health_say_when_the_database_cannot_be_read(cli_env: dict[str, str]) -> None:
    env = cli_env | {"JOBCTL_DATABASE_URL": "postgresql://jobctl:db-s3cret@127.0.0.1:1/app"}
    r = jobctl(env, "stats", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and {q["dead_letters"] for q in doc["queues"]} == {None}
    assert doc["database_error"].startswith("database unreachable at postgresql://jobctl:****@127.0.0.1:1/app")
    r = jobctl(env | {"COLUMNS": "200"}, "stats")  # the table says why its dead-letter column is empty
    assert r.returncode == 0 and "dead letters not counted: database unreachable at postgresql://jobctl:****@" \
        in " ".join(r.stdout.split()) and "db-s3cret" not in r.stdout
    r = jobctl(env, "health", "--json")
    (check,) = [c for c in json.loads(r.stdout)["checks"] if c["name"] == "dead_letters"]
    assert r.returncode == 2 and check["status"] == "CRITICAL" and "db-s3cret" not in r.stdout
    assert check["database_error"] == doc["database_error"]


def test_a_locked_sqlite_store_is_waited_out_not_taken_for_an_outage(redis_url: str, tmp_path: Path) -> None:
    """Another process holding the SQLite file's write lock past the busy timeout (5 s) is contention:
    the hook's capture tries again and records the failure, instead of leaving it for reconciliation."""
    import sqlite3
    import threading
    import time

    from jobctl.capture import capture
    from jobctl.hooks import JobEvent

    path = tmp_path / "dead.db"
    rt = Runtime(config.load(env={"JOBCTL_REDIS_URL": redis_url, "JOBCTL_DATA_DIR": str(tmp_path / "data"),
                                  "HOME": str(tmp_path), "JOBCTL_DATABASE_URL": f"sqlite:///{path}"}, cwd=tmp_path))
    store = dl.store_for(rt)
    store.ready()
    locked = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(6.0)
        other.execute("COMMIT")
        other.close()

    t = threading.Thread(target=hold)
    t.start()
    locked.wait(5)
    started = time.monotonic()
    entry_id = capture(rt, JobEvent("no-hash-1", QUEUE, JOB, PAYLOAD, 2, 2, error="RuntimeError: boom"))
    t.join()
    assert time.monotonic() - started > 5.0  # the first try did meet the lock past the busy timeout
    [entry] = store.entries(dl.Filter())
    assert (entry.id, entry.job_id, entry.error) == (entry_id, "no-hash-1", "RuntimeError: boom")
    assert rt.redis.llen(keys.unrecorded()) == 0  # nothing left for reconciliation
