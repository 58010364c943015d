"""Capture of permanent failures into the dead-letter store, and reconciliation from Redis.

`DeadLetterHook` records each dead-lettered job as the worker applies it (`capture`). A recorded
job is marked in Redis (`jc_dlq` = entry id, failed-registry score lowered to its short expiry), so
a reconciliation pass only reads what is not recorded yet; the Redis copy then expires after
`REDIS_KEEP_S`. When the database is down nothing is lost: a job hash stays in RQ's failed registry,
unmarked, and a failure without one (a refused key) waits in `keys.unrecorded()`, until `reconcile`
(the pool every 60 s, or `jobctl dlq sync`) records both. Error text is scrubbed of configured
secrets (`jobctl.redact`) before it is stored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import redis

from jobctl import keys, redact
from jobctl.db import utcnow
from jobctl.deadletter import BATCH, MAX_ID, DeadLetterStore, Entry, Failure, Filter, Ref, store_for
from jobctl.errors import ServiceUnavailable
from jobctl.hooks import JobEvent
from jobctl.jobs import FAILURE_TTL_S, RQ_TIME, decode_data, exc_text
from jobctl.progress import Tick
from jobctl.runtime import Runtime

log = logging.getLogger("jobctl.deadletter")
REDIS_KEEP_S = 7 * 86400  # how long a recorded failure stays in Redis (for `jobs show`)
RETRY_STORE_S = 5.0  # during an outage, how often the dead-letter hook tries the database again
assert FAILURE_TTL_S > REDIS_KEEP_S + 30 * 86400  # unrecorded registry scores sort above recorded ones


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v or "")


def failure_from_hash(rt: Runtime, job_id: str, level: str, h: dict[Any, Any],
                      traceback: str | None = None) -> Failure:
    """A Failure read from a failed job's hash (RQ's `data` plus jobctl's `jc_*` fields)."""
    try:
        name, payload = decode_data(h[b"data"])
    except (KeyError, ValueError, TypeError):
        name, payload = "?", {}
    queue = _text(h.get(b"jc_queue")) or rt.settings.queues.level_owner(level)[0].name
    try:
        failed_at = datetime.strptime(_text(h.get(b"ended_at")), RQ_TIME).replace(tzinfo=UTC)
    except ValueError:
        failed_at = utcnow()
    error = _text(h.get(b"jc_error")) or exc_text(h.get(b"exc_info"))
    traceback = traceback or _text(h.get(b"jc_traceback")) or None
    return Failure(queue, _text(h.get(b"jc_job")) or name, job_id, payload, error, traceback,
                   int(_text(h.get(b"jc_attempt")) or 0), failed_at)


def _mark(rt: Runtime, level: str, job_id: str, entry_id: int) -> None:
    """Note in Redis that a failure is recorded, and let its copy there expire."""
    now_s = rt.redis.time()[0]
    with rt.redis.pipeline() as pipe:
        pipe.hset(keys.job(job_id), "jc_dlq", entry_id)
        pipe.expire(keys.job(job_id), REDIS_KEEP_S)
        pipe.zadd(keys.failed(level), {job_id: now_s + REDIS_KEEP_S}, xx=True)
        pipe.execute()


def scrubbed(rt: Runtime, f: Failure) -> Failure:
    """The failure with every configured secret masked in its error and traceback (`jobctl.redact`)."""
    r = redact.for_settings(rt.settings)
    return replace(f, error=r(f.error), traceback=r.scrub(f.traceback))


def _failure_of(rt: Runtime, event: JobEvent) -> tuple[str, Failure, bool]:
    """(level, scrubbed failure, whether a job hash holds it) of a dead-lettered job."""
    try:
        h = rt.redis.hgetall(keys.job(event.job_id))
    except redis.ResponseError:  # the key is not a hash (refused as such): the event says all there is
        h = {}
    if h:
        level = _text(h.get(b"origin")) or event.queue
        f = failure_from_hash(rt, event.job_id, level, h, event.traceback)
    else:
        level, f = event.queue, Failure(event.queue, event.job, event.job_id, event.payload, event.error or "",
                                        event.traceback, event.attempt, utcnow())
    return level, scrubbed(rt, f), bool(h)


def capture(rt: Runtime, event: JobEvent) -> int:
    """Record one dead-lettered job (from the worker hook); returns the entry id.

    ServiceUnavailable when the database is down; the failure is not lost (see `defer`)."""
    level, f, hashed = _failure_of(rt, event)
    try:
        entry_id, _new = store_for(rt).record(f)
    except ServiceUnavailable:
        _keep(rt, f, hashed)
        raise
    if hashed:  # never touch a key that is not a job hash (or no longer exists)
        _mark(rt, level, event.job_id, entry_id)
    return entry_id


def defer(rt: Runtime, event: JobEvent) -> None:
    """Leave a dead-lettered job for `reconcile` without trying the database: a job hash stays in
    RQ's failed registry, unmarked; a failure with no hash (a refused key) goes to `keys.unrecorded()`."""
    _level, f, hashed = _failure_of(rt, event)
    _keep(rt, f, hashed)


def _keep(rt: Runtime, f: Failure, hashed: bool) -> None:
    if not hashed:
        rt.redis.rpush(keys.unrecorded(), _to_json(f))


def _to_json(f: Failure) -> str:
    return json.dumps(asdict(f) | {"failed_at": f.failed_at.isoformat()})


def _from_json(text: Any) -> Failure | None:
    try:
        doc = json.loads(_text(text))
        return Failure(**doc | {"failed_at": datetime.fromisoformat(doc["failed_at"])})
    except (ValueError, TypeError, KeyError):
        return None


class DeadLetterHook:
    """Worker hook: every dead-lettered job becomes one open dead-letter entry.

    While the database is down it logs one line per job, and once each that the outage started and
    (at the first entry recorded again) ended; what it could not write stays in Redis for `reconcile`
    (see `defer`). During an outage it tries the database at most every `RETRY_STORE_S`, so a
    database that hangs does not hold every slot for its connect timeout."""

    def __init__(self, rt: Runtime, clock: Callable[[], float] = time.monotonic) -> None:
        self.rt = rt
        self.clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._tried_at = 0.0
        self._missed = 0

    def dead_lettered(self, event: JobEvent) -> None:
        """Record the failure; during a database outage, say so in one line."""
        if self._waiting():
            defer(self.rt, event)
            self._outage(event, "")
            return
        try:
            capture(self.rt, event)
        except ServiceUnavailable as exc:
            self._outage(event, str(exc))
            return
        self._recovered()

    def _waiting(self) -> bool:
        """Whether the store is down and was tried less than RETRY_STORE_S ago (else: try it now)."""
        with self._lock:
            now = self.clock()
            if self._down_since is None or now - self._tried_at >= RETRY_STORE_S:
                self._tried_at = now
                return False
            return True

    def _outage(self, event: JobEvent, reason: str) -> None:
        with self._lock:
            started = self._down_since is None
            if started:
                self._down_since, self._missed = self.clock(), 0
            self._missed += 1
        if started:
            log.error("dead-letter store unavailable (%s); failed jobs stay in Redis until it is back, then "
                      "reconciliation (the pool, or `jobctl dlq sync`) records them", reason)
        log.warning("dead letter of job %s (%s) not recorded yet: the dead-letter store is unavailable",
                    event.job_id, event.job)

    def _recovered(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            down_s, missed = self.clock() - self._down_since, self._missed
            self._down_since = None
        log.warning("dead-letter store available again after %.0fs; %d dead letter(s) missed meanwhile "
                    "are recorded by reconciliation", down_s, missed)


def reconcile(rt: Runtime, limit: int | None = None, progress: Tick | None = None) -> int:
    """Record failed jobs in RQ's failed registries not yet in the store, and the failures the hook
    kept in `keys.unrecorded()` (at most about `limit` per call, so a worker's supervisor never
    stalls on a backlog); returns how many. First it settles the open entries whose job RQ's tools
    requeued (`settle_requeued`, `settle_rerun`). `progress(done, total)` follows the failures read."""
    store = store_for(rt)
    settle_requeued(rt, store)
    settle_rerun(rt, store)
    levels = [level for policy in rt.settings.queues.policies for _p, level in policy.levels()]
    seen = [0]
    total = _unrecorded_count(rt, levels) if progress else 0

    def tick(n: int) -> None:
        seen[0] += n
        if progress:
            progress(seen[0], max(total, seen[0]))

    recorded = _record_kept(rt, store, tick)
    for level in levels:
        if limit is not None and recorded >= limit:
            return recorded
        recorded += _reconcile_level(rt, store, level, None if limit is None else limit - recorded, tick)
    return recorded


def _unrecorded_count(rt: Runtime, levels: Sequence[str]) -> int:
    """How many failures a full reconciliation reads (for a progress bar)."""
    floor = f"({rt.redis.time()[0] + REDIS_KEEP_S + 86400}"
    with rt.redis.pipeline(transaction=False) as pipe:
        pipe.llen(keys.unrecorded())
        for level in levels:
            pipe.zcount(keys.failed(level), floor, "+inf")
        return sum(int(n) for n in pipe.execute())


def _record_kept(rt: Runtime, store: DeadLetterStore, tick: Callable[[int], None]) -> int:
    """Record the failures the hook kept in Redis while the database was down (each removed once
    recorded, so a crash in between only records it again, which is a no-op)."""
    recorded = 0
    while items := rt.redis.lrange(keys.unrecorded(), 0, BATCH - 1):
        for item in items:
            f = _from_json(item)
            if f is not None:
                recorded += store.record(scrubbed(rt, f))[1]
            rt.redis.lrem(keys.unrecorded(), 1, item)  # type: ignore[arg-type]  # bytes as read
        tick(len(items))
    return recorded


RERUN = ("queued", "started", "deferred", "scheduled", "finished")  # a dead-lettered job running (or run) again


def job_statuses(rt: Runtime, entries: Sequence[Entry | Ref]) -> dict[int, str | None]:
    """Entry id -> the status of its job's hash in Redis now (None: no hash, or not a hash)."""
    answers: list[Any] = []
    for start in range(0, len(entries), BATCH):
        with rt.redis.pipeline(transaction=False) as pipe:
            for e in entries[start:start + BATCH]:
                pipe.hget(keys.job(e.job_id), "status")
            answers += pipe.execute(raise_on_error=False)
    return {e.id: None if isinstance(a, Exception) or a is None else _text(a)
            for e, a in zip(entries, answers, strict=True)}


def rerun(rt: Runtime, entries: Sequence[Entry | Ref]) -> dict[int, str]:
    """The open entries whose job RQ's tools (`rq requeue`, rq-dashboard) put back: entry id -> the job's
    status now (queued, started, deferred, scheduled, finished). Replaying one would run it twice."""
    return {i: st for i, st in job_statuses(rt, [e for e in entries if e.status == "open"]).items()
            if st in RERUN}


def settle(rt: Runtime, store: DeadLetterStore, entries: Sequence[Entry | Ref], statuses: dict[int, str | None],
           how: str = "requeued with RQ's tools") -> list[int]:
    """Mark replayed (by their own job, audited) those of `entries` read before `statuses`; an entry a
    later failure of its job superseded meanwhile stays open. Returns the ids settled."""
    done = [e.id for e in entries if e.id in statuses and store.claim(e.id, e.job_id, e.failed_at)]
    if done:
        by_id = {e.id: e for e in entries}
        store.audit("replay", done, "; ".join(f"{i}: {how}, job {by_id[i].job_id} is {statuses[i] or 'gone'}"
                                              for i in done)[:2000])
    return done


def settle_requeued(rt: Runtime, store: DeadLetterStore) -> None:
    """Mark replayed the dead letters that RQ's tools put back on their queue after their attempts were
    spent (the step script lists them in `keys.requeued()` as it takes the job), so `dlq replay` cannot run
    them a second time; one whose job failed again meanwhile holds that failure and stays open."""
    while items := rt.redis.lpop(keys.requeued(), BATCH):
        ids = {int(e) for e, _, _j in (_text(i).partition("|") for i in items) if e.isdigit() and int(e) <= MAX_ID}
        entries = store.entries(Filter(ids=tuple(ids), status="open"))  # read before the job's status
        statuses = {i: st for i, st in job_statuses(rt, entries).items() if st != "failed"}
        settle(rt, store, entries, statuses)


def settle_rerun(rt: Runtime, store: DeadLetterStore) -> int:
    """Mark replayed every open entry whose job RQ's tools requeued and which is queued, running or
    finished again (`dlq sync`; `dlq replay` does it for the entries it selects); returns how many."""
    settled, after = 0, 0
    while store.exists() and (entries := store.open_after(after, BATCH)):
        after = entries[-1].id
        settled += len(settle(rt, store, entries, dict(rerun(rt, entries))))
    return settled


def _with_rq_reason(rt: Runtime, f: Failure, has_time: bool) -> Failure:
    """A failure RQ made (`rq worker`, its registry cleanup): its reason and time from RQ's latest result."""
    import base64
    import dataclasses
    import zlib

    error, failed_at = f.error, f.failed_at
    try:
        latest: list[Any] = rt.redis.xrevrange(keys.rq_results(f.job_id), count=1) or []
    except redis.ResponseError:
        latest = []
    if latest:
        stream_id, fields = _text(latest[0][0]), latest[0][1] or {}
        with contextlib.suppress(ValueError, zlib.error):
            raw = base64.b64decode(fields.get(b"exc_string", b""), validate=True)
            error = error or zlib.decompressobj().decompress(raw, 8000).decode(errors="replace").strip()
        if not has_time:
            failed_at = datetime.fromtimestamp(int(stream_id.split("-")[0]) / 1000, UTC)
    return dataclasses.replace(f, error=error or "failed outside jobctl (RQ recorded no reason)",
                               traceback=f.traceback or (error if "Traceback" in error else None),
                               failed_at=failed_at)


def _count_failed(rt: Runtime, queue: str, now_s: int) -> None:
    from jobctl.worker import METRICS_TTL_S

    key = keys.metrics(queue, now_s // 60)
    with rt.redis.pipeline() as pipe:
        pipe.hincrby(key, "failed", 1)
        pipe.expire(key, METRICS_TTL_S)
        pipe.execute()


def _reconcile_level(rt: Runtime, store: DeadLetterStore, level: str, budget: int | None = None,
                     tick: Callable[[int], None] = lambda _n: None) -> int:
    fk = keys.failed(level)
    now_s = rt.redis.time()[0]
    rt.redis.zremrangebyscore(fk, "-inf", now_s)  # recorded copies past their expiry
    recorded, seen = 0, set[str]()
    while True:  # unrecorded failures score far above recorded ones, and drop out once marked
        ids = [_text(i) for i in rt.redis.zrangebyscore(fk, f"({now_s + REDIS_KEEP_S + 86400}", "+inf",
                                                        start=0, num=BATCH)]
        ids = [i for i in ids if i not in seen]
        if not ids or (budget is not None and len(seen) >= budget):
            return recorded
        seen.update(ids)
        with rt.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(keys.job(job_id))
            hashes = pipe.execute()
        for job_id, h in zip(ids, hashes, strict=True):
            if not h:
                rt.redis.zrem(fk, job_id)
                continue
            failure = failure_from_hash(rt, job_id, level, h)
            if not h.get(b"jc_error"):  # failed outside jobctl: RQ keeps its reason in the result stream
                failure = _with_rq_reason(rt, failure, has_time=bool(h.get(b"ended_at")))
            entry_id, new = store.record(scrubbed(rt, failure))
            _mark(rt, level, job_id, entry_id)
            if new and not h.get(b"jc_error"):  # failed by a foreign worker (plain `rq worker`): count it too
                _count_failed(rt, failure.queue, now_s)
            recorded += new
        tick(len(ids))
