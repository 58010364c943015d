"""RQ's own tools beside jobctl on one Redis: the `rq` CLI, RQ's Python API, `rq worker` and rq-dashboard.

Every test drives the real tool against real jobctl pools (subprocesses, `tests.support.pool_harness`
with the production hooks) and then checks four things: nothing is lost and nothing runs twice (the
harness's `test:starts` / `test:done` lists), no pool crashes or refuses to start, the payload survives
(`jobctl.control.show_job(...).data`), and jobctl's figures (`metrics.snapshot`, the dead-letter store)
agree with what RQ shows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from jobctl import health, keys
from jobctl.control import show_job
from jobctl.deadletter import Entry, Filter, reconcile, store_for
from jobctl.metrics import QueueStats, snapshot
from jobctl.producer import enqueue
from jobctl.replay import replay
from jobctl.runtime import Runtime
from jobctl.worker import as_text
from tests.support.rq_tools import JOB, QUEUE, Bench, wait_for

ONE_ATTEMPT = '[queues.webhook-retry]\nattempts = 1\nbackoff = "none"\n'
# a short lease, so a killed pool's job is reclaimed within seconds; attempts left for the re-run
SHORT_LEASE = '[settings]\nheartbeat_ttl_s = 3\n\n[queues.webhook-retry]\nattempts = 3\nbackoff = "none"\n'


def hook(**data: Any) -> dict[str, Any]:
    """A retry-webhook payload; `data` steers the harness's processor (sleep, fail, once)."""
    return {"eventId": "e1", "eventType": "t", "eventData": data, "attemptNumber": 0}


def starts(b: Bench) -> list[str]:
    """Job ids in the order their processor started (one per run)."""
    return [as_text(s).split()[0] for s in b.redis.lrange("test:starts", 0, -1)]


def done(b: Bench) -> list[str]:
    """Job ids whose processor ran to its end."""
    return [as_text(d) for d in b.redis.lrange("test:done", 0, -1)]


def stats(rt: Runtime) -> QueueStats:
    """webhook-retry's row of `jobctl stats`."""
    [row] = snapshot(rt, [QUEUE]).queues
    return row


def rq_failed(b: Bench) -> set[str]:
    """Ids in RQ's failed registries of every webhook-retry level, as RQ's API lists them."""
    levels = [level for _p, level in b.rt.settings.queues.get(QUEUE).levels()]
    return {i for level in levels for i in FailedJobRegistry(level, connection=b.redis).get_job_ids()}


def entries(b: Bench) -> dict[str, Entry]:
    """Dead letters by job id."""
    return {e.job_id: e for e in store_for(b.rt).entries(Filter())}


def rq_check(rt: Runtime) -> health.Check:
    """jobctl health's "rq" check."""
    return next(c for c in health.run(rt).checks if c.name == "rq")


def fetch(b: Bench, job_id: str) -> Job:
    """The job as RQ's Python API reads it."""
    return Job.fetch(job_id, connection=b.redis, serializer=JSONSerializer)


def latest(b: Bench, job_id: str) -> Result:
    """The job's newest record in RQ's result stream (it must have one)."""
    result = fetch(b, job_id).latest_result()
    assert result is not None, f"no result record for {job_id}"
    return result


def runner_pids(pool_pid: int) -> list[int]:
    """The pool supervisor's runner processes."""
    return sorted(int(p) for p in subprocess.check_output(["pgrep", "-P", str(pool_pid)]).split())


def assert_finished(b: Bench, jid: str, payload: dict[str, Any], attempts: int = 1) -> None:
    """Finished, with its payload intact, after `attempts` attempts."""
    view = show_job(b.rt, jid)
    assert (view.status, view.attempts, view.data) == ("finished", attempts, payload)


@pytest.fixture
def bench(redis_url: str, tmp_path: Path) -> Iterator[Bench]:
    b = Bench(redis_url, tmp_path, ONE_ATTEMPT)
    yield b
    b.close()


# -- 1. rq requeue --------------------------------------------------------------------------------


def test_rq_requeue_reruns_dead_letters_with_fresh_attempts(bench: Bench) -> None:
    """`rq requeue --all` and `FailedJobRegistry.requeue`: the jobs run again, once, with a fresh attempt."""
    rt, r = bench.rt, bench.redis
    p1 = rt.settings.queues.get(QUEUE).level(1)
    jobs = {enqueue(rt, QUEUE, JOB, p).id: p for p in (hook(fail=True, once=True, i=i) for i in range(3))}
    urgent = hook(fail=True, once=True, i=9)
    jobs[uid := enqueue(rt, QUEUE, JOB, urgent, priority=1).id] = urgent
    bench.burst()
    assert rq_failed(bench) == set(jobs)
    assert (stats(rt).failed_1h, stats(rt).dead_letters) == (4, 4)

    out = bench.rq("requeue", "--all", "--queue", QUEUE)
    assert "Requeueing 3 jobs" in out.stdout
    FailedJobRegistry(p1, connection=r, serializer=JSONSerializer).requeue(uid)
    for jid, payload in jobs.items():
        raw = r.hget(keys.job(jid), "data")
        assert isinstance(raw, bytes) and raw[:2] == b"\x78\x9c"  # RQ rewrote `data` zlib-compressed
        view = show_job(rt, jid)
        assert (view.status, view.attempts, view.data) == ("queued", 1, payload)

    bench.burst()
    assert Counter(starts(bench)) == dict.fromkeys(jobs, 2)
    assert Counter(done(bench)) == dict.fromkeys(jobs, 1)
    for jid, payload in jobs.items():
        assert_finished(bench, jid, payload)  # a fresh set of attempts, not attempt 2 of 1
        assert latest(bench, jid).type == Result.Type.SUCCESSFUL
    assert rq_failed(bench) == set()
    row = stats(rt)
    assert (row.completed_1h, row.failed_1h, row.waiting, row.active) == (4, 4, 0, 0)


def test_rq_requeue_settles_the_dead_letter(bench: Bench) -> None:
    """After `rq requeue` re-ran a dead letter, the store never offers it for another run: `dlq replay`
    settles it first, and so does the pools' reconcile task."""
    payload = hook(fail=True, once=True)
    jid = enqueue(bench.rt, QUEUE, JOB, payload).id
    bench.burst()
    bench.rq("requeue", "--all", "--queue", QUEUE)
    bench.burst()
    assert_finished(bench, jid, payload)
    assert [o.id for o in replay(bench.rt, Filter(queue=QUEUE)) if o.action == "replayed"] == []
    assert stats(bench.rt).dead_letters == len(rq_failed(bench)) == 0  # nothing is dead any more
    entry = entries(bench)[jid]
    assert (entry.status, entry.replay_job_id) == ("replayed", jid)


# -- 2. a plain RQ producer -----------------------------------------------------------------------


class _Touch:
    """Pickles to a call of os.system: unpickling it anywhere leaves the file behind."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.path}",)


def test_plain_rq_producer_runs_and_foreign_jobs_are_refused(bench: Bench, tmp_path: Path) -> None:
    """RQ's JSON enqueue (Python API and `rq enqueue`) of a registered job runs; a job naming os.system and a
    pickled job are dead-lettered, never executed."""
    r = bench.redis
    payload, cli_payload = hook(src="rq"), hook(src="rq enqueue")
    rq_json = Queue(QUEUE, connection=r, serializer=JSONSerializer)
    good = rq_json.enqueue(JOB, payload)
    out = bench.rq("enqueue", "-q", QUEUE, "-S", "rq.serializers.JSONSerializer", JOB, ":" + json.dumps(cli_payload))
    cli = re.search(r"job-id '([^']+)'", out.stdout)
    assert cli, out.stdout
    shell = rq_json.enqueue("os.system", f"touch {tmp_path / 'shell-ran'}")
    pickled = Queue(QUEUE, connection=r).enqueue(JOB, _Touch(tmp_path / "pickle-ran"))
    pool = bench.pool()
    wait_for(lambda: len(entries(bench)) == 2 and {show_job(bench.rt, j).status for j in (good.id, cli[1])}
             == {"finished"}, 15, "the good jobs to finish and two dead letters", lambda: pool.stderr()[-2000:])

    assert_finished(bench, good.id, payload)
    assert_finished(bench, cli[1], cli_payload)
    assert Counter(starts(bench)) == Counter(done(bench)) == {good.id: 1, cli[1]: 1}
    good.refresh()  # RQ's producer reads the outcome with its own API
    assert (good.get_status(), good.return_value()) == (JobStatus.FINISHED, {"ok": True})
    assert not (tmp_path / "shell-ran").exists() and not (tmp_path / "pickle-ran").exists()
    dead = entries(bench)
    assert "not registered" in dead[shell.id].error
    assert "pickled data refused" in dead[pickled.id].error
    assert rq_failed(bench) == {shell.id, pickled.id}
    row = stats(bench.rt)
    assert (row.completed_1h, row.failed_1h, row.dead_letters) == (2, 2, 2)
    assert pool.alive() and "Traceback" not in pool.stderr()
    bench.burst()  # and a fresh pool starts beside it


# -- 3. rq info after a crash ---------------------------------------------------------------------


def test_rq_info_leaves_a_killed_pools_job_to_jobctl(bench: Bench) -> None:
    """`rq info` runs RQ's registry cleanup; the lease margin keeps it off a job jobctl will reclaim."""
    bench.configure(SHORT_LEASE)
    payload = hook(sleep=30, once=True)
    jid = enqueue(bench.rt, QUEUE, JOB, payload).id
    first = bench.pool()
    wait_for(lambda: starts(bench) == [jid], 10, "the job to start", first.stderr)
    first.signal(signal.SIGKILL, group=True)
    first.wait(5)

    bench.rq("info")
    assert show_job(bench.rt, jid).status == "started"
    assert StartedJobRegistry(QUEUE, connection=bench.redis).get_job_ids() == [jid]
    assert rq_failed(bench) == set()

    bench.burst()  # reclaims once the 3 s lease is gone, re-runs, exits
    assert starts(bench) == [jid, jid] and done(bench) == [jid]
    assert_finished(bench, jid, payload, attempts=2)
    assert bench.redis.zcard(keys.wip(QUEUE)) == 0


def test_job_abandoned_past_the_margin_is_failed_by_rq_and_replayed_from_the_store(bench: Bench) -> None:
    """No jobctl pool for > 5 minutes: RQ fails the job; the store records its payload; a replay runs it."""
    bench.configure(SHORT_LEASE)
    payload = hook(sleep=3, n=1)
    jid = enqueue(bench.rt, QUEUE, JOB, payload).id
    first = bench.pool()
    wait_for(lambda: starts(bench) == [jid], 10, "the job to start", first.stderr)
    first.signal(signal.SIGKILL, group=True)
    first.wait(5)
    [member] = [m.decode() for m in cast(list[bytes], bench.redis.zrange(keys.wip(QUEUE), 0, -1))]
    assert member.startswith(f"{jid}:")  # RQ 3's job_id:execution_id
    bench.redis.zadd(keys.wip(QUEUE), {member: time.time() - 10}, xx=True)  # lease + margin long past

    bench.rq("info")
    assert show_job(bench.rt, jid).status == "failed"
    assert rq_failed(bench) == {jid} and bench.redis.zcard(keys.wip(QUEUE)) == 0
    assert latest(bench, jid).type == Result.Type.FAILED

    assert reconcile(bench.rt) == 1
    entry = entries(bench)[jid]
    assert (entry.queue, entry.job, entry.data, entry.status) == (QUEUE, JOB, payload, "open")
    row = stats(bench.rt)
    assert (row.failed_1h, row.dead_letters) == (1, 1)

    res = bench.jobctl("dlq", "replay", str(entry.id))
    assert res.returncode == 0, res.stderr
    bench.burst()
    rid = f"dlq-{entry.id}"
    assert starts(bench) == [jid, rid] and done(bench) == [rid]
    assert_finished(bench, rid, payload)
    assert entries(bench)[jid].status == "replayed"


def test_a_failure_recorded_from_rq_keeps_rqs_reason(bench: Bench) -> None:
    """A dead letter reconciled from RQ's failed registry says why RQ failed it."""
    jid = enqueue(bench.rt, QUEUE, JOB, hook(n=1)).id
    bench.rq("worker", "-b", "-S", "rq.serializers.JSONSerializer", QUEUE, clean=False)
    assert "Invalid attribute name" in (latest(bench, jid).exc_string or "")
    reconcile(bench.rt)
    assert "Invalid attribute name" in entries(bench)[jid].error


# -- 4. RQ's Python API ---------------------------------------------------------------------------


def test_rq_python_api_reads_jobctl_jobs(bench: Bench) -> None:
    """Job.fetch, results and StartedJobRegistry on jobctl's jobs, finished, failed and running."""
    rt = bench.rt
    ok_payload = hook(i=1)
    ok, bad, slow = (enqueue(rt, QUEUE, JOB, p).id for p in (ok_payload, hook(fail=True), hook(sleep=2)))
    pool = bench.pool()
    wait_for(lambda: slow in starts(bench) and {show_job(rt, ok).status, show_job(rt, bad).status} == {"finished",
             "failed"}, 10, "one job finished, one failed, one running", pool.stderr)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        running = StartedJobRegistry(QUEUE, connection=bench.redis).get_job_ids()
        slow_job = fetch(bench, slow)
    assert running == [slow]
    assert [w for w in caught if issubclass(w.category, DeprecationWarning)] == []
    assert slow_job.get_status() == JobStatus.STARTED

    job = fetch(bench, ok)
    assert (job.func_name, job.args, job.kwargs) == (JOB, [ok_payload], {})
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == {"ok": True}
    assert latest(bench, ok).type == Result.Type.SUCCESSFUL
    assert ok in FinishedJobRegistry(QUEUE, connection=bench.redis).get_job_ids()

    failed = fetch(bench, bad)
    assert failed.get_status() == JobStatus.FAILED
    result = latest(bench, bad)
    assert result.type == Result.Type.FAILED and "asked to fail" in (result.exc_string or "")

    wait_for(lambda: show_job(rt, slow).status == "finished", 10, "the slow job")
    assert pool.alive() and "Traceback" not in pool.stderr()


# -- 5. cancel and delete of running jobs ---------------------------------------------------------


def test_rq_cancel_and_delete_of_running_jobs(bench: Bench) -> None:
    """Job.cancel() and Job.delete() mid-run: nothing killed or charged, the bystander finishes normally."""
    rt, r = bench.rt, bench.redis
    payloads = [hook(sleep=2, n=n) for n in range(3)]
    cancelled, deleted, bystander = (enqueue(rt, QUEUE, JOB, p).id for p in payloads)
    pool = bench.pool()
    wait_for(lambda: len(starts(bench)) == 3, 10, "three jobs running", pool.stderr)
    runners = runner_pids(pool.pid)

    fetch(bench, cancelled).cancel()
    fetch(bench, deleted).delete()
    wait_for(lambda: len(done(bench)) == 3 and r.zcard(keys.wip(QUEUE)) == 0, 10, "the three runs to end",
             pool.stderr)
    time.sleep(0.5)  # time for anything wrong to happen: a re-run, a charge, a kill

    assert_finished(bench, bystander, payloads[2])
    assert Counter(starts(bench)) == {cancelled: 1, deleted: 1, bystander: 1}
    view = show_job(rt, cancelled)
    assert (view.status, view.attempts, view.data) == ("canceled", 1, payloads[0])
    assert cancelled in CanceledJobRegistry(QUEUE, connection=r).get_job_ids()
    assert cancelled not in FinishedJobRegistry(QUEUE, connection=r).get_job_ids()
    assert fetch(bench, cancelled).latest_result() is None
    assert r.exists(keys.job(deleted), keys.rq_results(deleted)) == 0
    row = stats(rt)
    assert (row.completed_1h, row.failed_1h, row.active) == (1, 0, 0)
    assert runner_pids(pool.pid) == runners  # no runner was killed or restarted
    assert pool.alive() and "Traceback" not in pool.stderr()


# -- 6. rq suspend / resume -----------------------------------------------------------------------


def test_rq_suspend_pauses_jobctl_pools_until_resume(bench: Bench) -> None:
    """`rq suspend` stops takes (stats and health say so); `rq resume` lets the job run."""
    pool = bench.pool()
    wait_for(lambda: bench.redis.scard(keys.rq_workers()) == 1, 10, "the pool to register", pool.stderr)
    bench.rq("suspend")
    payload = hook(i=1)
    jid = enqueue(bench.rt, QUEUE, JOB, payload).id
    time.sleep(2)
    assert starts(bench) == [] and show_job(bench.rt, jid).status == "queued"
    assert snapshot(bench.rt).rq_suspended
    check = rq_check(bench.rt)
    assert check.status == "WARNING" and "rq resume" in check.message

    bench.rq("resume")
    wait_for(lambda: show_job(bench.rt, jid).status == "finished", 5, "the job after rq resume", pool.stderr)
    assert starts(bench) == done(bench) == [jid]
    assert_finished(bench, jid, payload)
    assert rq_check(bench.rt).status == "OK" and not snapshot(bench.rt).rq_suspended
    assert pool.alive()


# -- 7. a plain `rq worker` on jobctl's queue -----------------------------------------------------


def test_plain_rq_worker_fails_jobctl_jobs_and_the_store_records_them(bench: Bench) -> None:
    """`rq worker` cannot import 'retry-webhook' and fails the jobs; reconcile, stats and health catch up."""
    rt = bench.rt
    jobs = {enqueue(rt, QUEUE, JOB, p).id: p for p in (hook(i=i) for i in range(2))}
    bench.rq("worker", "-b", "-S", "rq.serializers.JSONSerializer", QUEUE, clean=False)
    assert rq_failed(bench) == set(jobs) and starts(bench) == []
    assert {show_job(rt, j).status for j in jobs} == {"failed"}

    assert reconcile(rt) == 2
    dead = entries(bench)
    assert {j: (dead[j].queue, dead[j].job, dead[j].data) for j in jobs} == {j: (QUEUE, JOB, p)
                                                                            for j, p in jobs.items()}
    row = stats(rt)
    assert (row.failed_1h, row.dead_letters) == (2, len(rq_failed(bench)))

    worker = bench.rq_worker("--name", "plain-rq")
    wait_for(lambda: snapshot(rt).foreign_workers == {"plain-rq": [QUEUE]}, 10, "the RQ worker to register",
             worker.stderr)
    check = rq_check(rt)
    assert check.status == "WARNING" and "plain-rq" in check.message
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert rq_check(rt).status == "OK"
    bench.burst()  # a jobctl pool afterwards: starts, finds nothing to run, exits 0
    assert starts(bench) == []


# -- 8. rq-dashboard's actions (JSON serializer mode) ---------------------------------------------


@pytest.fixture
def dashboard(bench: Bench) -> Any:
    """POST to one of rq-dashboard's action routes; returns its JSON reply."""
    base = bench.dashboard()

    def post(path: str) -> dict[str, Any]:
        resp = requests.post(base + path, timeout=10)
        assert resp.status_code == 200, resp.text[:500]
        reply: dict[str, Any] = resp.json()
        assert reply["status"] == "OK", reply
        return reply

    return post


def _dead_lettered(bench: Bench, n: int) -> dict[str, dict[str, Any]]:
    jobs = {enqueue(bench.rt, QUEUE, JOB, p).id: p for p in (hook(fail=True, once=True, i=i) for i in range(n))}
    bench.burst()
    assert rq_failed(bench) == set(jobs)
    return jobs


def _queued(bench: Bench, n: int) -> dict[str, dict[str, Any]]:
    return {enqueue(bench.rt, QUEUE, JOB, p).id: p for p in (hook(i=i) for i in range(n))}


def test_dashboard_requeue_one(bench: Bench, dashboard: Any) -> None:
    jobs = _dead_lettered(bench, 2)
    again, left = list(jobs)
    dashboard(f"/job/{again}/requeue")
    bench.burst()
    assert Counter(starts(bench)) == {again: 2, left: 1} and done(bench) == [again]
    assert_finished(bench, again, jobs[again])
    assert rq_failed(bench) == {left}


def test_dashboard_requeue_all(bench: Bench, dashboard: Any) -> None:
    jobs = _dead_lettered(bench, 2)
    assert dashboard(f"/requeue/{QUEUE}")["count"] == 2
    bench.burst()
    assert Counter(starts(bench)) == dict.fromkeys(jobs, 2) and Counter(done(bench)) == dict.fromkeys(jobs, 1)
    for jid, payload in jobs.items():
        assert_finished(bench, jid, payload)
    assert rq_failed(bench) == set() and stats(bench.rt).completed_1h == 2


def test_dashboard_delete_a_queued_job(bench: Bench, dashboard: Any) -> None:
    jobs = _queued(bench, 3)
    first, gone, last = list(jobs)
    dashboard(f"/job/{gone}/delete")
    bench.burst()
    assert Counter(done(bench)) == {first: 1, last: 1} and gone not in starts(bench)
    for jid in (first, last):
        assert_finished(bench, jid, jobs[jid])
    assert bench.redis.exists(keys.job(gone)) == 0 and rq_failed(bench) == set()


def test_dashboard_empty_the_queue(bench: Bench, dashboard: Any) -> None:
    jobs = _queued(bench, 3)
    dashboard(f"/queue/{QUEUE}/queued/empty")
    bench.burst()
    assert starts(bench) == [] and bench.redis.llen(keys.queue_list(QUEUE)) == 0
    assert bench.redis.exists(*(keys.job(j) for j in jobs)) == 0
    assert rq_failed(bench) == set() and stats(bench.rt).waiting == 0


def test_dashboard_compact_the_queue(bench: Bench, dashboard: Any) -> None:
    jobs = _queued(bench, 3)
    first, gone, last = list(jobs)
    bench.redis.delete(keys.job(gone))  # its hash expired or was deleted behind the queue's back
    dashboard(f"/queue/{QUEUE}/compact")
    assert bench.redis.lrange(keys.queue_list(QUEUE), 0, -1) == [first.encode(), last.encode()]
    bench.burst()
    assert Counter(done(bench)) == {first: 1, last: 1}
    for jid in (first, last):
        assert_finished(bench, jid, jobs[jid])
    assert rq_failed(bench) == set()  # no "job hash missing" record for the id compact dropped
