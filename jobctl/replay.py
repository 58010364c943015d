"""Replay and purge of dead letters: claimed atomically in the database first, so an entry is never
enqueued twice even when two replays run at once; every action is audited."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence

import redis

from jobctl.control import cancel_job
from jobctl.deadletter import DeadLetterStore, Entry, Filter, Outcome, settle_requeued, store_for
from jobctl.errors import JobctlError
from jobctl.producer import enqueue
from jobctl.runtime import Runtime


def select_open(rt: Runtime, flt: Filter) -> tuple[list[Entry], list[Outcome]]:
    """Entries a replay or purge would act on (open ones), and skipped outcomes for named others."""
    store = store_for(rt)
    if flt.ids:
        chosen = store.get(flt.ids)
    else:
        chosen = store.entries(Filter(queue=flt.queue, job=flt.job, since_s=flt.since_s,
                                      older_than_s=flt.older_than_s, status="open", limit=flt.limit),
                               newest_first=False)
    skipped = [Outcome(e.id, e.queue, e.job, "skipped", e.replay_job_id, f"already {e.status}")
               for e in chosen if e.status != "open"]
    return [e for e in chosen if e.status == "open"], skipped


def replay_id(entry_id: int) -> str:
    """The job id of an entry's replay (deterministic, so a replay is enqueued at most once)."""
    return f"dlq-{entry_id}"


def replay(rt: Runtime, flt: Filter, dry_run: bool = False) -> list[Outcome]:
    """Re-enqueue open entries' payloads on their queues with fresh attempts, then mark them.

    The replay job id is derived from the entry, so enqueueing first is idempotent: two replays
    running at once share one job, and a replay interrupted between the enqueue and the mark
    leaves the entry open with its job already queued (the next replay finds it a duplicate)
    instead of marked `replayed` with no job. Entries RQ's tools requeued meanwhile are settled first."""
    if not dry_run:
        settle_requeued(rt, store_for(rt))
    todo, out = select_open(rt, flt)
    if dry_run:
        return [Outcome(e.id, e.queue, e.job, "would replay", replay_id(e.id)) for e in todo] + out
    if todo:
        rt.redis.ping()  # an unreachable Redis fails the command before anything changes
    store = store_for(rt)
    for e in todo:
        out.append(_replay_one(rt, store, e))
    done = [o.id for o in out if o.action == "replayed"]
    if done:
        store.audit("replay", done, json.dumps({o.id: o.replay_job_id for o in out if o.action == "replayed"}))
    return sorted(out, key=lambda o: o.id)


def _replay_one(rt: Runtime, store: DeadLetterStore, e: Entry) -> Outcome:
    jid = replay_id(e.id)
    try:
        res = enqueue(rt, e.queue, e.job, e.data, job_id=jid)
    except (JobctlError, redis.RedisError) as exc:
        return Outcome(e.id, e.queue, e.job, "failed", None, str(exc))
    if store.claim(e.id, jid):
        return Outcome(e.id, e.queue, e.job, "replayed", jid,
                       "job id already existed" if res.status == "duplicate" else None)
    now = store.get([e.id])
    if now and now[0].status == "replayed" and now[0].replay_job_id == jid:
        return Outcome(e.id, e.queue, e.job, "skipped", None, "replayed concurrently")
    if res.status == "queued":  # purged meanwhile: take back the job this call queued
        with contextlib.suppress(JobctlError, redis.RedisError):
            cancel_job(rt, jid)
    return Outcome(e.id, e.queue, e.job, "skipped", None, f"{now[0].status if now else 'gone'} meanwhile")


def purge(rt: Runtime, entries: Sequence[Entry]) -> list[int]:
    """Mark these entries purged (open ones only) and audit it; returns the ids purged."""
    store = store_for(rt)
    done = store.purge([e.id for e in entries])
    if done:
        store.audit("purge", done)
    return done
