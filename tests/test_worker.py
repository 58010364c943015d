"""The runner in-process against a real Redis: order, retries, signals, timeouts, pause, cancel."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer

from jobctl import config, control, keys
from jobctl.context import JobContext
from jobctl.delayed import promote
from jobctl.errors import NotFound, OperationFailed, PermanentFailure, RetryLater, UsageError
from jobctl.hooks import Hooks, JobEvent
from jobctl.producer import When, enqueue, enqueue_many
from jobctl.runtime import Runtime
from jobctl.worker import Runner
from tests.support.keytable import undocumented_keys

PUSH = {"userId": "u1", "title": "T", "message": "M"}
HOOK = {"eventId": "e", "eventType": "t", "eventData": {}, "attemptNumber": 0}


def push(n: int | str) -> dict[str, Any]:
    return PUSH | {"data": {"n": n}}


class Recorder:
    """Hook that records every event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, JobEvent]] = []

    def __getattr__(self, name: str) -> Any:
        if name in ("started", "succeeded", "retrying", "dead_lettered"):
            return lambda e: self.events.append((name, e))
        raise AttributeError(name)


def runner(rt: Runtime, queues: list[str], fn: Any, hooks: Hooks | None = None) -> Runner:
    names = {n: fn for q in queues for n in rt.settings.queues.get(q).jobs}
    return Runner(rt, queues, processors=names, services=object(), hooks=hooks, total_slots=1)


def unlimited(rt: Runtime, tmp_path: Path, toml: str = "") -> Runtime:
    """A runtime whose push queue has no rate limit (`toml` lines starting with `push.` go to that table)."""
    push_lines = [ln.removeprefix("push.") for ln in toml.splitlines() if ln.startswith("push.")]
    other = [ln for ln in toml.splitlines() if not ln.startswith("push.")]
    body = "\n".join(['[queues.push]', 'rate_limit = "none"', *push_lines, *other]) + "\n"
    (tmp_path / "jobctl.toml").write_text(body)
    settings = config.load(env={"JOBCTL_REDIS_URL": rt.settings.redis_url, "HOME": str(tmp_path)}, cwd=tmp_path)
    return Runtime(settings)


def test_priority_order_then_fifo(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path)
    order: list[Any] = []
    for n, prio in [("a", 5), ("b", 2), ("c", 9), ("d", 2), ("e", None), ("f", 1)]:
        enqueue(rt, "push", "send-push", push(n), priority=prio)
    runner(rt, ["push"], lambda p, c: order.append(p["data"]["n"])).work(burst=True)
    assert order == ["f", "b", "d", "e", "a", "c"]  # push's own priority is 2: "e" joins b and d's level


def test_all_queues_take_highest_priority_first(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path)
    order: list[str] = []
    enqueue(rt, "webhook-retry", "retry-webhook", HOOK)  # priority 3
    enqueue(rt, "push", "send-push", push(1))  # priority 2
    enqueue(rt, "webhook-retry", "retry-webhook", HOOK, priority=1)
    runner(rt, ["push", "webhook-retry"], lambda p, c: order.append(c.queue + str(c.attempt))).work(burst=True)
    assert order == ["webhook-retry1", "push1", "webhook-retry1"]


def test_success_is_recorded_the_rq_way(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path)
    e = enqueue(rt, "push", "send-push", push(1))
    runner(rt, ["push"], lambda p, c: {"sent": p["data"]["n"]}).work(burst=True)
    job = Job.fetch(e.id, connection=rt.redis, serializer=JSONSerializer)
    assert job.get_status().value == "finished" and job.func_name == "send-push"
    assert job.args == [push(1)]
    assert rt.redis.zscore(keys.finished("push"), e.id) is not None
    assert 3500 < rt.redis.ttl(keys.job(e.id)) <= 3600
    view = control.show_job(rt, e.id)
    assert (view.status, view.attempts, view.result) == ("finished", 1, {"sent": 1})
    raw = rt.redis.hget(keys.job(e.id), "data")
    assert json.loads(raw) == ["send-push", None, [push(1)], {}]  # JSON, never pickle


def test_rq_queue_reads_the_waiting_jobs(rt: Runtime) -> None:
    enqueue_many(rt, "push", "send-push", [push(i) for i in range(3)])
    q = Queue("push", connection=rt.redis, serializer=JSONSerializer)
    assert q.count == 3 and [j.args[0]["data"]["n"] for j in q.jobs] == [0, 1, 2]


def test_retry_waits_its_backoff_then_dead_letters(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path, '[queues.webhook-retry]\nattempts = 3\nbackoff_delay_s = 0.4\n')
    rec = Recorder()
    starts: list[float] = []

    def flaky(p: dict[str, Any], c: JobContext) -> None:
        starts.append(time.time())
        raise ConnectionError("endpoint down")

    e = enqueue(rt, "webhook-retry", "retry-webhook", HOOK)
    r = runner(rt, ["webhook-retry"], flaky, Hooks([rec]))
    deadline = time.time() + 10
    while len(starts) < 3 and time.time() < deadline:
        r.work(burst=True)
        promote(rt, ["webhook-retry"])
        time.sleep(0.02)
    assert len(starts) == 3
    assert starts[1] - starts[0] >= 0.4 and starts[2] - starts[1] >= 0.8  # never early
    names = [n for n, _ in rec.events]
    assert names == ["started", "retrying", "started", "retrying", "started", "dead_lettered"]
    dead = rec.events[-1][1]
    assert dead.attempt == 3 and "ConnectionError: endpoint down (attempt 3 of 3)" in (dead.error or "")
    assert "Traceback" in (dead.traceback or "")
    view = control.show_job(rt, e.id)
    assert (view.status, view.attempts) == ("failed", 3)
    assert rt.redis.zscore(keys.failed("webhook-retry"), e.id) is not None
    assert rt.redis.ttl(keys.job(e.id)) == -1  # kept until the dead-letter store takes it


def test_permanent_failure_dead_letters_at_once(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path)
    rec = Recorder()

    def reject(p: dict[str, Any], c: JobContext) -> None:
        raise PermanentFailure("HTTP 400 invalid player id")

    e = enqueue(rt, "push", "send-push", push(1))
    runner(rt, ["push"], reject, Hooks([rec])).work(burst=True)
    assert [n for n, _ in rec.events] == ["started", "dead_lettered"]
    assert control.show_job(rt, e.id).error == "permanent failure: HTTP 400 invalid player id"


def test_retry_later_replaces_backoff_and_consumes_one_attempt(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path, "push.attempts = 2")
    calls: list[int] = []

    def limited(p: dict[str, Any], c: JobContext) -> str:
        calls.append(c.attempt)
        if len(calls) < 4:
            raise RetryLater(0.05, "HTTP 429")
        return "ok"

    e = enqueue(rt, "push", "send-push", push(1))
    r = runner(rt, ["push"], limited)
    for _ in range(100):
        r.work(burst=True)
        if control.show_job(rt, e.id).status == "finished":
            break
        time.sleep(0.05)
    assert calls == [1, 2, 2, 2]  # three 429s in a row cost one attempt, the job still succeeds
    assert control.show_job(rt, e.id).status == "finished"


def _busy(seconds: float) -> None:
    """Python-level work: a slot's JobTimeout lands at its next instruction."""
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(0.01)


def test_soft_timeout_fails_the_attempt(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path, "push.timeout_s = 1\npush.attempts = 1")
    rec = Recorder()
    e = enqueue(rt, "push", "send-push", push(1))
    t0 = time.time()
    runner(rt, ["push"], lambda p, c: _busy(5), Hooks([rec])).work(burst=True)
    assert time.time() - t0 < 3
    assert rec.events[-1][0] == "dead_lettered"
    assert "JobTimeout" in (control.show_job(rt, e.id).error or "")


def test_unregistered_or_invalid_job_never_runs(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path)
    ran: list[str] = []
    e = enqueue(rt, "push", "send-push", push(1))
    rt.redis.hset(keys.job(e.id), "data", json.dumps(["os.system", None, ["rm -rf /"], {}]))
    bad = enqueue(rt, "push", "send-push", push(2))
    rt.redis.hset(keys.job(bad.id), "data", json.dumps(["send-push", None, [{"userId": 5}], {}]))
    runner(rt, ["push"], lambda p, c: ran.append("x")).work(burst=True)
    assert ran == []
    assert "not registered" in (control.show_job(rt, e.id).error or "")
    assert "invalid payload for send-push: userId" in (control.show_job(rt, bad.id).error or "")


def test_delayed_job_waits(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path)
    ran: list[float] = []
    e = enqueue(rt, "push", "send-push", push(1), when=When(delay_s=0.5))
    assert e.status == "scheduled"
    t0 = time.time()
    r = runner(rt, ["push"], lambda p, c: ran.append(time.time()))
    while not ran and time.time() - t0 < 5:
        r.work(burst=True)
        time.sleep(0.05)
    assert ran and ran[0] - t0 >= 0.5


def test_duplicate_job_id_changes_nothing(rt: Runtime) -> None:
    first = enqueue(rt, "push", "send-push", push(1), job_id="order-42")
    again = enqueue(rt, "push", "send-push", push(2), job_id="order-42")
    assert (first.status, again.status) == ("queued", "duplicate")
    assert rt.redis.llen(keys.queue_list("push")) == 1
    assert control.show_job(rt, "order-42").data == push(1)


def test_pause_holds_one_queue_while_another_flows(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path)
    ran: list[str] = []
    enqueue(rt, "push", "send-push", push(1))
    enqueue(rt, "webhook-retry", "retry-webhook", HOOK)
    control.set_paused(rt, ["push"], True)
    runner(rt, ["push", "webhook-retry"], lambda p, c: ran.append(c.queue)).work(burst=True)
    assert ran == ["webhook-retry"] and rt.redis.llen(keys.queue_list("push")) == 1
    control.set_paused(rt, ["push"], False)
    runner(rt, ["push", "webhook-retry"], lambda p, c: ran.append(c.queue)).work(burst=True)
    assert ran == ["webhook-retry", "push"]


def test_cancelled_job_never_runs(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path)
    ran: list[int] = []
    a = enqueue(rt, "push", "send-push", push(1))
    b = enqueue(rt, "push", "send-push", push(2), when=When(delay_s=0.1))
    enqueue(rt, "push", "send-push", push(3))
    assert control.cancel_job(rt, a.id) == "queued"
    assert control.cancel_job(rt, b.id) == "scheduled"
    time.sleep(0.15)
    runner(rt, ["push"], lambda p, c: ran.append(p["data"]["n"])).work(burst=True)
    assert ran == [3]
    with pytest.raises(OperationFailed):
        control.cancel_job(rt, a.id)
    with pytest.raises(NotFound):
        control.cancel_job(rt, "nope")


def test_completed_jobs_trimmed_to_newest_count(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path, "push.keep_completed_count = 5")
    ids = [e.id for e in enqueue_many(rt, "push", "send-push", [push(i) for i in range(12)])]
    runner(rt, ["push"], lambda p, c: None).work(burst=True)
    kept = {m.decode() for m in rt.redis.zrange(keys.finished("push"), 0, -1)}
    assert kept == set(ids[-5:])
    assert sum(rt.redis.exists(keys.job(i)) for i in ids) == 5


def test_bulk_is_all_or_nothing(rt: Runtime) -> None:
    with pytest.raises(UsageError, match=r"2 invalid line\(s\), nothing enqueued: line 2: userId.*line 4"):
        enqueue_many(rt, "push", "send-push", [push(1), {"userId": ""}, push(3), {}])
    assert rt.redis.dbsize() == 0


def test_every_key_is_in_the_table(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path)
    enqueue_many(rt, "push", "send-push", [push(i) for i in range(3)])
    enqueue(rt, "push", "send-push", push(9), when=When(delay_s=60), priority=7)
    enqueue(rt, "email", "send-email", {"to": "a@example.com", "subject": "s", "template": "welcome"})
    runner(rt, ["push", "email"], lambda p, c: None).work(burst=True)
    control.set_paused(rt, ["email"], True)
    assert undocumented_keys(rt.redis) == []


def test_settings_are_frozen(rt: Runtime) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        rt.settings.redis_url = "x"  # type: ignore[misc]


def test_upstream_429_throttles_the_whole_queue(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path)
    starts: list[tuple[int, float]] = []

    def onesignal(p: dict[str, Any], c: JobContext) -> None:
        starts.append((p["data"]["n"], time.time()))
        if len(starts) == 1:
            raise RetryLater(0.6, "HTTP 429", throttle_queue=True)

    enqueue(rt, "push", "send-push", push(1))
    enqueue(rt, "push", "send-push", push(2))
    r = runner(rt, ["push"], onesignal)
    t0 = time.time()
    while len(starts) < 3 and time.time() - t0 < 5:
        r.work(burst=True)
        promote(rt, ["push"])
    assert [n for n, _ in starts] == [1, 2, 1]
    assert starts[1][1] - starts[0][1] >= 0.55  # job 2 waited out the queue-wide Retry-After


def test_traceback_is_kept_on_the_job_for_the_dead_letter_store(rt: Runtime, tmp_path: Path) -> None:
    rt = unlimited(rt, tmp_path, "push.attempts = 1")

    def broken(p: dict[str, Any], c: JobContext) -> None:
        raise KeyError("missing")

    e = enqueue(rt, "push", "send-push", push(1))
    runner(rt, ["push"], broken).work(burst=True)
    h = rt.redis.hgetall(keys.job(e.id))
    assert b"Traceback" in h[b"jc_traceback"] and b"KeyError" in h[b"jc_traceback"]
    assert h[b"jc_first_failed"] == h[b"ended_at"]


def test_a_reclaimed_job_cannot_be_finished_by_its_old_runner(rt: Runtime, tmp_path: Path) -> None:
    from jobctl.worker import Done

    rt = unlimited(rt, tmp_path)
    e = enqueue(rt, "push", "send-push", push(1))
    old = runner(rt, ["push"], lambda p, c: None)
    [taken] = old.step([], 1).taken
    assert taken.id == e.id
    rt.redis.hset(keys.job(e.id), "worker_name", "another-runner")  # reclaimed and taken again elsewhere
    assert old.step([Done(taken, "null", 1.0)], 0).skipped == [e.id]
    assert rt.redis.hgetall(keys.active(old.name)) == {}  # the old runner's own bookkeeping is gone
    assert control.show_job(rt, e.id).status == "started"


def test_cancelled_jobs_expire(rt: Runtime) -> None:
    e = enqueue(rt, "push", "send-push", push(1))
    control.cancel_job(rt, e.id)
    assert 86000 < rt.redis.ttl(keys.job(e.id)) <= 86400
