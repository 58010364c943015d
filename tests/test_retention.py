"""Completed-job retention: newest N per level, expired ones gone, hashes deleted with their entries."""

from __future__ import annotations

import dataclasses

from jobctl import keys
from jobctl.producer import enqueue_many
from jobctl.queues import Registry
from jobctl.retention import trim_finished
from jobctl.runtime import Runtime
from jobctl.worker import Runner

HOOK = {"eventId": "e", "eventType": "t", "eventData": {}, "attemptNumber": 0}


def with_policy(rt: Runtime, **fields: int) -> Runtime:
    queues = Registry(dataclasses.replace(p, **fields) if p.name == "webhook-retry" else p
                      for p in rt.settings.queues.policies)
    return Runtime(dataclasses.replace(rt.settings, queues=queues))


def test_trim_applies_a_lowered_count(rt: Runtime) -> None:
    keep_all = with_policy(rt, keep_completed_count=10_000)
    ids = [e.id for e in enqueue_many(keep_all, "webhook-retry", "retry-webhook", [HOOK] * 2500)]
    Runner(keep_all, ["webhook-retry"], processors={"retry-webhook": lambda p, c: None},
           services=object()).work(burst=True)
    assert rt.redis.zcard(keys.finished("webhook-retry")) == 2500
    assert trim_finished(with_policy(rt, keep_completed_count=1000)) == 1500
    kept = {m.decode() for m in rt.redis.zrange(keys.finished("webhook-retry"), 0, -1)}
    assert kept == set(ids[-1000:])
    assert sum(rt.redis.exists(keys.job(i)) for i in ids[:1500]) == 0
    assert trim_finished(with_policy(rt, keep_completed_count=1000)) == 0


def test_trim_drops_entries_past_their_age(rt: Runtime) -> None:
    e = enqueue_many(rt, "webhook-retry", "retry-webhook", [HOOK])[0]
    Runner(rt, ["webhook-retry"], processors={"retry-webhook": lambda p, c: None}, services=object()).work(burst=True)
    rt.redis.zadd(keys.finished("webhook-retry"), {e.id: 1.0})  # as if its hour had passed
    assert trim_finished(rt) == 1
    assert rt.redis.zcard(keys.finished("webhook-retry")) == 0 and not rt.redis.exists(keys.job(e.id))


def test_trim_never_deletes_a_new_job_that_reuses_an_old_id(rt: Runtime) -> None:
    from jobctl.producer import enqueue

    e = enqueue(rt, "webhook-retry", "retry-webhook", HOOK, job_id="evt-42")
    Runner(rt, ["webhook-retry"], processors={"retry-webhook": lambda p, c: None}, services=object()).work(burst=True)
    rt.redis.delete(keys.job(e.id))  # its hour passed: the hash expired, the registry entry lingers
    rt.redis.zadd(keys.finished("webhook-retry"), {e.id: 1.0})
    again = enqueue(rt, "webhook-retry", "retry-webhook", HOOK, job_id="evt-42")
    assert again.status == "queued"
    trim_finished(rt)
    assert rt.redis.hget(keys.job("evt-42"), "status") == b"queued"
