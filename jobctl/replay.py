"""Replay and purge of dead letters (the functions `jobctl dlq` and the dashboard call).

Order of a replay, per open entry (oldest first):

1. `check`: the queue and job name are still configured and the payload still validates, the same
   checks `enqueue` makes. A dry run stops here, so it reports exactly what the real run would do.
2. Pace: with a `rate`, entry n is not enqueued before `start + n / rate` (the clock and sleep are
   arguments, so tests and the dashboard can pass their own).
3. Enqueue under the entry's deterministic job id `dlq-<id>` (so enqueueing is idempotent), then
   claim the entry in the database (`open` -> `replayed`). A replay interrupted between the two
   leaves the entry open with its job queued; the next replay finds the job a duplicate and claims.
   Two replays running at once share one job, and only one claims.
4. Audit every replayed entry in one record.

Before step 1 a real run (not a dry run) settles entries RQ's tools requeued meanwhile, and pings
Redis once so an outage fails the command before anything changes. An entry whose job RQ's tools
requeued (`rq requeue`, rq-dashboard) and that is queued, running or finished again under its own id
is never replayed (that would run the job twice): it is skipped with the job's status as the reason,
and a real run marks it `replayed` by that job (audited), as `jobctl dlq sync` does. If that job fails
permanently again, its failure supersedes the entry while it is open, or opens a new one. If an entry
was purged between its enqueue and its claim, the job this call queued is cancelled again.
`progress(done, total)` follows the entries.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence

import redis

from jobctl.capture import rerun, settle, settle_requeued
from jobctl.control import cancel_job
from jobctl.deadletter import DeadLetterStore, Entry, Filter, Outcome, store_for
from jobctl.errors import JobctlError
from jobctl.producer import enqueue
from jobctl.progress import Tick
from jobctl.queues import RateLimit
from jobctl.runtime import Runtime


def select_open(rt: Runtime, flt: Filter) -> tuple[list[Entry], list[Outcome]]:
    """Entries a replay or purge would act on (open ones, oldest first), and skipped outcomes for
    named entries that are not open."""
    store = store_for(rt)
    if flt.ids:
        chosen = store.get(flt.ids)
    else:
        chosen = store.entries(Filter(queue=flt.queue, job=flt.job, since_s=flt.since_s,
                                      older_than_s=flt.older_than_s, status="open", limit=flt.limit,
                                      error=flt.error), newest_first=False)
    skipped = [Outcome(e.id, e.queue, e.job, "skipped", e.replay_job_id, f"already {e.status}")
               for e in chosen if e.status != "open"]
    return [e for e in chosen if e.status == "open"], skipped


def replay_id(entry_id: int) -> str:
    """The job id of an entry's replay (deterministic, so a replay is enqueued at most once)."""
    return f"dlq-{entry_id}"


def check(rt: Runtime, e: Entry) -> str | None:
    """Why this entry cannot be replayed now (the checks `enqueue` makes), or None."""
    try:
        rt.settings.queues.check_job(e.queue, e.job)
        rt.settings.queues.validate(e.job, e.data)
    except JobctlError as exc:
        return str(exc)
    return None


class Pacer:
    """Spaces calls `1 / rate` apart on the clock given (no rate: never waits)."""

    def __init__(self, rate: RateLimit | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval_s = rate.per_s / rate.limit if rate else 0.0
        self.clock, self.sleep = clock, sleep
        self.start: float | None = None
        self.count = 0

    def wait(self) -> None:
        """Return when the next call is due."""
        if not self.interval_s:
            return
        now = self.clock()
        if self.start is None:
            self.start = now
        due = self.start + self.count * self.interval_s
        if due > now:
            self.sleep(due - now)
        self.count += 1


def replay(rt: Runtime, flt: Filter, dry_run: bool = False, *, rate: RateLimit | None = None,
           progress: Tick | None = None, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> list[Outcome]:
    """Re-enqueue open entries' payloads on their queues with fresh attempts, then mark them.

    `flt` selects entries (ids, queue, job, age, `error` substring, limit). With `dry_run` nothing
    changes: each entry is checked as the real run checks it, giving "would replay" or "failed".
    `rate` (e.g. `RateLimit(50)` = 50/s) paces the enqueues by `clock`/`sleep`. Returns one Outcome
    per entry (replayed, would replay, skipped, failed), sorted by id; see the module docstring."""
    if not dry_run:
        settle_requeued(rt, store_for(rt))
    todo, out = select_open(rt, flt)
    store, pacer = store_for(rt), Pacer(rate, clock, sleep)
    if todo:  # also pings Redis: an unreachable one fails the command before anything changes
        again = rerun(rt, todo)
        settled = set() if dry_run else set(settle(rt, store, todo, dict(again)))
        for e in (e for e in todo if e.id in again):
            what = f"requeued with RQ's tools: job {e.job_id} is {again[e.id]} again"
            out.append(Outcome(e.id, e.queue, e.job, "skipped", e.job_id,
                               f"{what}; marked replayed" if e.id in settled
                               else f"{what}; a replay marks it replayed" if dry_run
                               else f"{what}; its entry changed meanwhile"))
        todo = [e for e in todo if e.id not in again]
    if progress:
        progress(0, len(todo))
    for n, e in enumerate(todo, 1):
        reason = check(rt, e)
        if reason is not None:
            out.append(Outcome(e.id, e.queue, e.job, "failed", None, reason))
        elif dry_run:
            out.append(Outcome(e.id, e.queue, e.job, "would replay", replay_id(e.id)))
        else:
            pacer.wait()
            out.append(_replay_one(rt, store, e))
        if progress:
            progress(n, len(todo))
    done = {o.id: o.replay_job_id for o in out if o.action == "replayed"}
    if done:
        store.audit("replay", list(done), json.dumps(done))
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


def purge(rt: Runtime, entries: Sequence[Entry], progress: Tick | None = None) -> list[int]:
    """Mark these entries purged (open ones only) and audit it; returns the ids purged.
    `progress(done, total)` follows the batches written."""
    store = store_for(rt)
    done = store.purge([e.id for e in entries], progress)
    if done:
        store.audit("purge", done)
    return done
