"""A dead letter whose job RQ's own tools requeued: one open entry per job, never replayed twice.

Every test drives the real `jobctl` CLI, a real pool (`jobctl work push --burst`, a subprocess) and RQ's
own `rq requeue` (from the virtualenv), on SQLite and on PostgreSQL. A `send-push` for an unknown user is
a permanent failure; with `attempts = 1` (jobctl.toml) it also spends the job's attempts, the case where
the pool's step script lists the requeued entry in `keys.requeued()`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from jobctl import config, db, keys
from jobctl import deadletter as dl
from jobctl.runtime import Runtime

RQ = str(Path(sys.executable).parent / "rq")
JOBCTL = str(Path(sys.executable).parent / "jobctl")
PUSH = {"userId": "ghost", "title": "t", "message": "m"}


@pytest.fixture
def env(cli_env: dict[str, str], database_url: str, tmp_path: Path) -> dict[str, str]:
    """CLI environment on the test Redis and on SQLite or PostgreSQL."""
    return cli_env | {"JOBCTL_DATABASE_URL": database_url}


def run(env: dict[str, str], *args: str, cwd: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([JOBCTL, *args], env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, cwd=cwd)
    if ok:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def rq_requeue(env: dict[str, str]) -> None:
    r = subprocess.run([RQ, "requeue", "--all", "--queue", "push", "-u", env["JOBCTL_REDIS_URL"]], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Requeueing 1 jobs" in r.stdout, (r.stdout, r.stderr)


def entries(env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = json.loads(run(env, "dlq", "list", "--json", cwd=cwd).stdout)
    return docs


def r_of(env: dict[str, str]) -> redis.Redis:
    return redis.Redis.from_url(env["JOBCTL_REDIS_URL"])


def dead_lettered(env: dict[str, str], cwd: Path) -> str:
    """Enqueue a send-push for an unknown user, run a pool until it is dead-lettered; its job id."""
    jid = run(env, "enqueue", "push", "send-push", "-d", json.dumps(PUSH), cwd=cwd).stdout.strip()
    run(env, "work", "push", "--burst", cwd=cwd)
    [e] = entries(env, cwd)
    assert (e["job_id"], e["status"], e["attempts"]) == (jid, "open", 1)
    return jid


# The whole flow (two pools, RQ's requeue, replays) on SQLite with attempts left and spent, and on
# PostgreSQL once: the store's upsert and settling are the same SQL whatever the attempts (each flow takes
# ~15 s; the concurrency and migration tests below run on both databases).
FLOWS = pytest.mark.parametrize(("database_url", "spent"), [("sqlite", False), ("sqlite", True),
                                                            ("postgresql", False)],
                                indirect=["database_url"], ids=["sqlite-attempts-left", "sqlite-attempts-spent",
                                                                "postgresql-attempts-left"])


@FLOWS
def test_a_requeued_job_failing_again_updates_its_one_open_entry(env: dict[str, str], tmp_path: Path,
                                                                 spent: bool) -> None:
    """QA's case: fail, `rq requeue --all`, fail again. One open entry (the latest reason, traceback and
    time, the attempts of both runs, the first failure kept); sync leaves it open (it failed again); a
    replay enqueues one job for it, never one per failure."""
    if spent:
        (tmp_path / "jobctl.toml").write_text("[queues.push]\nattempts = 1\n")
    jid = dead_lettered(env, tmp_path)
    [first] = entries(env, tmp_path)
    rq_requeue(env)
    run(env, "work", "push", "--burst", cwd=tmp_path)
    [e] = entries(env, tmp_path)
    assert (e["id"], e["job_id"], e["status"], e["attempts"]) == (first["id"], jid, "open", 2)
    assert e["failed_at"] > first["failed_at"] and "does not exist" in e["error"]
    shown = json.loads(run(env, "dlq", "show", str(e["id"]), "--json", cwd=tmp_path).stdout)
    assert shown["first_failed_at"] == first["failed_at"] and "PermanentFailure" in shown["traceback"]
    sync = json.loads(run(env, "dlq", "sync", "--json", cwd=tmp_path).stdout)
    assert sync == {"recorded": 0, "settled": 0}
    assert [x["status"] for x in entries(env, tmp_path)] == ["open"]
    out = json.loads(run(env, "dlq", "replay", "--queue", "push", "--json", cwd=tmp_path).stdout)
    assert (out["replayed"], [o["replay_job_id"] for o in out["entries"]]) == (1, [f"dlq-{e['id']}"])
    assert not r_of(env).exists(keys.job(f"dlq-{e['id'] + 1}"))


@FLOWS
def test_a_requeued_job_queued_or_finished_again_is_never_replayed(env: dict[str, str], tmp_path: Path,
                                                                   spent: bool) -> None:
    """Requeued and queued: the dry run skips it with the reason, `dlq sync` marks it replayed by the job
    itself. Requeued and finished (the user exists now): a real replay marks it replayed, enqueues nothing."""
    if spent:
        (tmp_path / "jobctl.toml").write_text("[queues.push]\nattempts = 1\n")
    jid = dead_lettered(env, tmp_path)
    rq_requeue(env)
    dry = json.loads(run(env, "dlq", "replay", "--all", "--dry-run", "--json", cwd=tmp_path).stdout)
    [o] = dry["entries"]
    assert (dry["skipped"], o["action"], o["replay_job_id"]) == (1, "skipped", jid)
    assert o["reason"] == f"requeued with RQ's tools: job {jid} is queued again; a replay marks it replayed"
    assert [e["status"] for e in entries(env, tmp_path)] == ["open"]  # a dry run changes nothing

    engine = db.engine_for(env["JOBCTL_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(insert(db.users).values(id="ghost", email="g@example.com", push_enabled=False))
    run(env, "work", "push", "--burst", cwd=tmp_path)
    assert r_of(env).hget(keys.job(jid), "status") == b"finished"
    out = json.loads(run(env, "dlq", "replay", "--all", "--json", cwd=tmp_path).stdout)
    if spent and not out["entries"]:  # the step script listed it as it took the job: the pool settled it
        assert out["replayed"] == 0
    else:
        [o] = out["entries"]
        assert (out["replayed"], out["skipped"], o["replay_job_id"]) == (0, 1, jid)
        assert o["reason"] == f"requeued with RQ's tools: job {jid} is finished again; marked replayed"
    [e] = entries(env, tmp_path)
    assert (e["status"], e["replay_job_id"]) == ("replayed", jid)
    assert not [k for k in r_of(env).keys("rq:job:dlq-*")]
    audit = json.loads(run(env, "dlq", "audit", "--json", cwd=tmp_path).stdout)
    assert audit[0]["action"] == "replay" and audit[0]["entry_ids"] == [e["id"]] and jid in audit[0]["detail"]


def test_sync_settles_an_entry_whose_job_rq_requeued(env: dict[str, str], tmp_path: Path) -> None:
    """`dlq sync` marks replayed an open entry whose job RQ requeued (queued again), so `dlq list` no
    longer shows it open and no replay offers it."""
    jid = dead_lettered(env, tmp_path)
    rq_requeue(env)
    r = run(env, "dlq", "sync", cwd=tmp_path)
    assert r.stdout == ("recorded 0 new dead letter(s)\n"
                        "marked 1 dead letter(s) replayed: RQ's tools requeued their jobs\n")
    [e] = entries(env, tmp_path)
    assert (e["status"], e["replay_job_id"]) == ("replayed", jid)
    assert run(env, "dlq", "replay", "--all", cwd=tmp_path).stdout == "nothing to replay\n"


def _failure(job_id: str, n: int, at: datetime) -> dl.Failure:
    return dl.Failure("push", "send-push", job_id, PUSH, f"boom {n}", f"Traceback {n}", 1, at)


def test_runners_dead_lettering_one_job_at_once_leave_one_open_entry(database_url: str) -> None:
    """Eight threads (each its own connection) record failures of the same jobs at the same moment: one
    open entry per job, holding the latest failure; recording a failure again changes nothing."""
    store = dl.DeadLetterStore(db.engine_for(database_url))
    store.ready()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    jobs = [f"job-{j}" for j in range(6)]
    for job_id in jobs:
        barrier = threading.Barrier(8)
        results: list[tuple[int, bool]] = []
        errors: list[BaseException] = []

        def one(n: int, job_id: str = job_id, barrier: threading.Barrier = barrier,
                results: list[tuple[int, bool]] = results, errors: list[BaseException] = errors) -> None:
            barrier.wait()
            try:
                results.append(store.record(_failure(job_id, n, base + timedelta(seconds=n))))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors and len(results) == 8
        assert len({i for i, _new in results}) == 1
    rows = store.entries(dl.Filter())
    assert sorted(e.job_id for e in rows) == jobs and {e.status for e in rows} == {"open"}
    assert {(e.error, e.failed_at) for e in rows} == {("boom 7", base + timedelta(seconds=7))}
    assert store.record(_failure("job-0", 7, base + timedelta(seconds=7)))[1] is False
    assert store.record(_failure("job-0", 3, base + timedelta(seconds=3)))[1] is False  # older: superseded
    assert len(store.entries(dl.Filter())) == len(jobs)


def test_db_init_migrates_a_store_with_duplicate_open_entries(cli_env: dict[str, str], database_url: str,
                                                              tmp_path: Path) -> None:
    """A store made before the one-open-entry index: `jobctl db init` keeps each job's newest open entry
    (with the first failure's time), marks the older ones replayed by the job (audited), adds the index."""
    engine = db.engine_for(database_url)
    db.init_db(engine)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX IF EXISTS uq_dead_letters_open_job"))
        conn.execute(text("DROP INDEX IF EXISTS ix_dead_letters_failed_id"))  # the paging index came later too
        for n, job_id in enumerate(["a", "b", "a", "a"]):
            conn.execute(insert(db.dead_letters).values(queue="push", job="send-push", job_id=job_id, data="{}",
                                                        attempts=1, failed_at=base + timedelta(minutes=n)))
    env = cli_env | {"JOBCTL_DATABASE_URL": database_url}
    run(env, "db", "init")
    assert {"uq_dead_letters_open_job", "ix_dead_letters_failed_id"} <= {
        i["name"] for i in inspect(engine).get_indexes("dead_letters")}
    t = db.dead_letters.c
    with engine.connect() as conn:
        rows = conn.execute(select(db.dead_letters).order_by(t.id)).all()
        audits = conn.execute(select(func.count()).select_from(dl.dead_letter_audit)).scalar()
    assert [(r.job_id, r.status, r.replay_job_id) for r in rows] == [
        ("a", "replayed", "a"), ("b", "open", None), ("a", "replayed", "a"), ("a", "open", None)]
    assert rows[3].first_failed_at == base and audits == 2
    run(env, "db", "init")  # idempotent
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(db.dead_letters).values(queue="push", job="send-push", job_id="b", data="{}",
                                                    failed_at=base + timedelta(hours=1)))


HUGE = "99999999999999999999"


@pytest.mark.parametrize("args", [
    ("show", HUGE), ("replay", HUGE), ("purge", HUGE, "--yes"), ("list", "--limit", HUGE),
    ("replay", "--all", "--limit", HUGE, "--dry-run"), ("audit", "--limit", HUGE),
    ("list", "--since", "99999999d"), ("purge", "--older-than", "99999999d", "--all", "--yes"),
    ("replay", "--since", "99999999d", "--all"), ("export", "--since", "36501d"),
], ids=lambda a: " ".join(a))
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # refused before any query: one database
def test_huge_ids_limits_and_durations_are_one_line_exit_2(env: dict[str, str], tmp_path: Path,
                                                           args: tuple[str, ...]) -> None:
    rt = Runtime(config.load(env=env, cwd=tmp_path))
    dl.store_for(rt).record(_failure("j1", 1, datetime(2026, 1, 1, tzinfo=UTC)))
    r = run(env, "dlq", *args, ok=False)
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "2147483647" in r.stderr or "36500d" in r.stderr, r.stderr


def test_the_largest_accepted_values_work(env: dict[str, str], tmp_path: Path) -> None:
    """The bounds are the largest id a PostgreSQL integer holds and 36500 days; one more is refused."""
    rt = Runtime(config.load(env=env, cwd=tmp_path))
    eid = dl.store_for(rt).record(_failure("j1", 1, datetime(2026, 1, 1, tzinfo=UTC)))[0]
    r = run(env, "dlq", "show", "2147483647", ok=False)
    assert (r.returncode, r.stderr) == (3, "error: no dead letter with id 2147483647\n")
    docs = json.loads(run(env, "dlq", "list", "--since", "36500d", "--limit", "2147483647", "--json").stdout)
    assert [d["id"] for d in docs] == [eid]
    r = run(env, "dlq", "purge", "--older-than", "36500d", "--all", "--yes")
    assert r.stdout == "nothing to purge\n"
    r = run(env, "dlq", "list", "--limit", "2147483648", ok=False)
    assert (r.returncode, r.stderr) == (2, "error: Invalid value for '--limit': Input should be less than or equal "
                                           "to 2147483647 (see: jobctl dlq list --help)\n")
