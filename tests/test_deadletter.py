"""jobctl.deadletter on real Redis and SQLite/PostgreSQL: capture, reconciliation, replay, purge."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobctl import capture as cp
from jobctl import config, control, keys
from jobctl import deadletter as dl
from jobctl import replay as rp
from jobctl.config import Settings
from jobctl.errors import NotFound, PermanentFailure
from jobctl.hooks import Hooks, JobEvent
from jobctl.producer import enqueue
from jobctl.runtime import Runtime
from jobctl.worker import Runner

QUEUE, JOB = "image-processing", "process-image"
PAYLOAD = {"userId": "u1", "originalPath": "in/a.jpg", "targetPath": "out/a.jpg", "maxWidth": 100,
           "maxHeight": 100, "quality": 80}
DOWN_URL = "postgresql://jobctl:s3cret@127.0.0.1:1/nothing"


@pytest.fixture
def settings(redis_url: str, tmp_path: Path, database_url: str) -> Settings:
    """Test settings: image-processing retries at once (no back-off), 2 attempts."""
    (tmp_path / "jobctl.toml").write_text('[queues.image-processing]\nbackoff = "none"\nattempts = 2\n')
    env = {"JOBCTL_REDIS_URL": redis_url, "JOBCTL_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path),
           "JOBCTL_DATABASE_URL": database_url}
    return config.load(env=env, cwd=tmp_path)


def boom(_payload: dict[str, Any], _ctx: Any) -> None:
    """Always fails (retryable)."""
    raise RuntimeError("boom")


def ok(_payload: dict[str, Any], _ctx: Any) -> dict[str, bool]:
    """Always succeeds."""
    return {"ok": True}


def run(rt: Runtime, fn: Any, max_jobs: int | None = None) -> int:
    """Run the image-processing queue in this process until it is empty (or max_jobs)."""
    runner = Runner(rt, [QUEUE], processors={JOB: fn}, services=object(), hooks=Hooks([cp.DeadLetterHook(rt)]))
    return runner.work(burst=True, max_jobs=max_jobs)


def entries(rt: Runtime, **kw: Any) -> list[dl.Entry]:
    """Entries matching a filter."""
    return dl.store_for(rt).entries(dl.Filter(**kw))


def failed_entry(rt: Runtime) -> dl.Entry:
    """Enqueue a job that always fails, run it to the end; its one dead letter."""
    enqueue(rt, QUEUE, JOB, PAYLOAD)
    run(rt, boom)
    (entry,) = entries(rt)
    return entry


def test_failure_becomes_one_open_entry_only_after_its_last_attempt(rt: Runtime) -> None:
    job = enqueue(rt, QUEUE, JOB, PAYLOAD)
    assert run(rt, boom, max_jobs=1) == 1
    assert entries(rt) == []
    assert run(rt, boom) == 1
    (e,) = entries(rt)
    assert (e.queue, e.job, e.job_id, e.data, e.attempts, e.status) == (QUEUE, JOB, job.id, PAYLOAD, 2, "open")
    assert "boom" in e.error and e.traceback and "RuntimeError: boom" in e.traceback
    assert e.replayed_at is None and e.replay_job_id is None
    assert abs((datetime.now(UTC) - e.failed_at).total_seconds()) < 30
    assert rt.redis.hget(keys.job(job.id), "jc_dlq") == str(e.id).encode()
    assert 0 < rt.redis.ttl(keys.job(job.id)) <= cp.REDIS_KEEP_S
    assert cp.reconcile(rt) == 0
    assert len(entries(rt)) == 1


def test_permanent_failure_is_dead_lettered_at_once(rt: Runtime) -> None:
    def invalid(_p: dict[str, Any], _c: Any) -> None:
        raise PermanentFailure("HTTP 404 from origin")

    enqueue(rt, QUEUE, JOB, PAYLOAD)
    run(rt, invalid, max_jobs=1)
    (e,) = entries(rt)
    assert (e.attempts, e.status) == (1, "open") and "HTTP 404" in e.error


def test_capture_is_idempotent_per_failure(rt: Runtime) -> None:
    e = failed_entry(rt)
    event = JobEvent(e.job_id, QUEUE, JOB, PAYLOAD, 2, 2, error="boom")
    assert cp.capture(rt, event) == e.id
    assert len(entries(rt)) == 1


def test_replay_reenqueues_with_fresh_attempts_and_marks_replayed(rt: Runtime) -> None:
    e = failed_entry(rt)
    (out,) = rp.replay(rt, dl.Filter(ids=(e.id,)))
    assert (out.action, out.replay_job_id) == ("replayed", f"dlq-{e.id}")
    assert rt.redis.hget(keys.job(f"dlq-{e.id}"), "jc_attempt") == b"0"
    assert run(rt, ok) == 1
    assert rt.redis.hget(keys.job(f"dlq-{e.id}"), "status") == b"finished"
    (after,) = entries(rt)
    assert (after.status, after.replay_job_id) == ("replayed", f"dlq-{e.id}") and after.replayed_at
    (again,) = rp.replay(rt, dl.Filter(ids=(e.id,)))
    assert (again.action, again.reason) == ("skipped", "already replayed")
    assert rt.redis.llen(keys.queue_list(QUEUE)) == 0
    (audit,) = dl.store_for(rt).audit_log()
    assert (audit["action"], audit["entry_ids"]) == ("replay", [e.id]) and "@" in audit["actor"]


def test_a_replay_that_fails_again_is_a_new_entry(rt: Runtime) -> None:
    e = failed_entry(rt)
    rp.replay(rt, dl.Filter(ids=(e.id,)))
    run(rt, boom)
    newest, first = entries(rt)
    assert (newest.job_id, newest.status, first.status) == (f"dlq-{e.id}", "open", "replayed")


def test_concurrent_replays_enqueue_exactly_once(rt: Runtime, settings: Settings) -> None:
    e = failed_entry(rt)
    barrier = threading.Barrier(6)
    results: list[dl.Outcome] = []

    def replay_one() -> None:
        own = Runtime(settings)
        barrier.wait()
        results.extend(rp.replay(own, dl.Filter(ids=(e.id,))))

    threads = [threading.Thread(target=replay_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.action for o in results) == ["replayed"] + ["skipped"] * 5
    assert rt.redis.llen(keys.queue_list(QUEUE)) == 1
    assert len(dl.store_for(rt).audit_log()) == 1


def record(rt: Runtime, queue: str, job: str, age: timedelta, payload: dict[str, Any] | None = None) -> int:
    """Record a failure directly, `age` ago."""
    f = dl.Failure(queue, job, str(uuid.uuid4()), payload if payload is not None else PAYLOAD, "err", None, 1,
                   datetime.now(UTC) - age)
    return dl.store_for(rt).record(f)[0]


def test_enqueue_failure_puts_the_entry_back_to_open(rt: Runtime) -> None:
    bad = record(rt, QUEUE, JOB, timedelta(0), payload={"userId": "u1"})
    good = record(rt, QUEUE, JOB, timedelta(0))
    out = {o.id: o for o in rp.replay(rt, dl.Filter(queue=QUEUE))}
    assert out[bad].action == "failed" and "originalPath" in (out[bad].reason or "")
    assert out[good].action == "replayed"
    (e,) = entries(rt, ids=(bad,))
    assert (e.status, e.replay_job_id, e.replayed_at) == ("open", None, None)


def test_filters_order_and_dry_run(rt: Runtime) -> None:
    old = record(rt, QUEUE, JOB, timedelta(days=3))
    mid = record(rt, "email", "send-email", timedelta(hours=2), payload={"to": "a@example.com"})
    new = record(rt, QUEUE, JOB, timedelta(minutes=5))
    assert [e.id for e in entries(rt)] == [new, mid, old]
    assert [e.id for e in entries(rt, queue=QUEUE)] == [new, old]
    assert [e.id for e in entries(rt, job="send-email")] == [mid]
    assert [e.id for e in entries(rt, since_s=3 * 3600)] == [new, mid]
    assert [e.id for e in entries(rt, limit=1)] == [new]
    dry = rp.replay(rt, dl.Filter(queue=QUEUE), dry_run=True)
    assert [(o.id, o.action, o.replay_job_id) for o in dry] == [(old, "would replay", f"dlq-{old}"),
                                                                (new, "would replay", f"dlq-{new}")]
    assert {e.status for e in entries(rt)} == {"open"} and rt.redis.dbsize() == 0
    assert [o.id for o in rp.replay(rt, dl.Filter(queue=QUEUE, limit=1))] == [old]  # oldest first
    assert [e.id for e in entries(rt, status="open")] == [new, mid]


def test_purge_marks_open_entries_and_is_audited(rt: Runtime) -> None:
    old = record(rt, QUEUE, JOB, timedelta(days=10))
    new = record(rt, QUEUE, JOB, timedelta(minutes=1))
    todo, _ = rp.select_open(rt, dl.Filter(older_than_s=7 * 86400))
    assert rp.purge(rt, todo) == [old]
    assert {e.id: e.status for e in entries(rt)} == {old: "purged", new: "open"}
    (out,) = rp.replay(rt, dl.Filter(ids=(old,)))
    assert (out.action, out.reason) == ("skipped", "already purged")
    assert dl.store_for(rt).audit_log()[0]["action"] == "purge"


def test_unknown_ids_are_not_found(rt: Runtime) -> None:
    known = record(rt, QUEUE, JOB, timedelta(0))
    with pytest.raises(NotFound, match="no dead letter with id 9999"):
        dl.store_for(rt).get([known, 9999])


def test_reconcile_recovers_failures_captured_while_the_database_was_down(rt: Runtime, settings: Settings) -> None:
    down = Runtime(dataclasses.replace(settings, database_url=DOWN_URL))
    job = enqueue(down, QUEUE, JOB, PAYLOAD)
    run(down, boom)  # the hook fails (logged), the job stays in RQ's failed registry
    assert entries(rt) == []
    assert cp.reconcile(rt) == 1
    (e,) = entries(rt)
    assert (e.job_id, e.attempts, e.status, e.data) == (job.id, 2, "open", PAYLOAD) and "boom" in e.error
    assert cp.reconcile(rt) == 0
    assert rt.redis.hget(keys.job(job.id), "jc_dlq") == str(e.id).encode()


def test_reconcile_drops_registry_ids_whose_job_hash_is_gone(rt: Runtime) -> None:
    rt.redis.zadd(keys.failed(QUEUE), {"ghost": rt.redis.time()[0] + 10 * 365 * 86400})
    assert cp.reconcile(rt) == 0
    assert rt.redis.zcard(keys.failed(QUEUE)) == 0


def test_jobctl_work_hooks_include_the_dead_letter_store(rt: Runtime) -> None:
    from jobctl.plugins import default_hooks

    assert any(isinstance(h, cp.DeadLetterHook) for h in default_hooks(rt).hooks)


def test_reads_do_not_create_tables(rt: Runtime) -> None:
    store = dl.store_for(rt)
    if store.exists():
        pytest.skip("tables already exist on this database")
    assert store.entries(dl.Filter()) == [] and store.audit_log() == []
    assert not store.exists()


def test_a_replay_interrupted_before_marking_is_finished_by_the_next(rt: Runtime) -> None:
    e = failed_entry(rt)
    enqueue(rt, QUEUE, JOB, e.data, job_id=rp.replay_id(e.id))  # the first replay died right after this
    assert entries(rt, status="open")[0].id == e.id
    out = rp.replay(rt, dl.Filter(ids=(e.id,)))
    assert [(o.action, o.reason) for o in out] == [("replayed", "job id already existed")]
    assert rt.redis.llen(keys.queue_list(QUEUE)) == 1


def test_an_entry_purged_during_a_replay_gets_no_job(rt: Runtime) -> None:
    e = failed_entry(rt)
    store = dl.store_for(rt)
    real_claim = store.claim

    def purged_first(entry_id: int, job_id: str) -> bool:
        store.purge([entry_id])
        return real_claim(entry_id, job_id)

    store.claim = purged_first  # type: ignore[method-assign, assignment]
    try:
        out = rp._replay_one(rt, store, e)
    finally:
        store.claim = real_claim  # type: ignore[method-assign]
    assert (out.action, out.reason) == ("skipped", "purged meanwhile")
    assert control.show_job(rt, rp.replay_id(e.id)).status == "canceled"
