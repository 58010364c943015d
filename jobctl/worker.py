"""The runner: one process's dispatcher and its slots.

The dispatcher (the thread that calls `work`) owns every Redis step: one `step.lua` call finishes the
jobs its slots completed since the last call and takes up to as many jobs as slots are free, per
queue and in priority order, so a backlog costs a fraction of a round trip per job. Slots (threads,
`jobctl.slots`) run the processors; a failure is applied by the slot itself (`fail.lua`), because its
hooks may write to the database. Each step carries a token: a step retried after a lost reply
returns what it already did and never takes a second batch.

Concurrency is counted in slots: `slots[queue]` caps how many of the queue's jobs this process runs
at once, `total_slots` caps all of them, and a queue's `global_concurrency` caps its running jobs on
every host (checked inside the take against the started registries).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import queue
import socket
import threading
import time
import traceback
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from jobctl import jobdata, keys, ratelimit, redact
from jobctl.context import JobContext, no_gate
from jobctl.errors import JobTimeout, PermanentFailure, RetryLater, UsageError, printable
from jobctl.hooks import Hooks, JobEvent
from jobctl.jobs import FAILURE_TTL_S
from jobctl.processors import Processor
from jobctl.queues import Registry
from jobctl.retry import Decision, decide
from jobctl.runtime import Runtime
from jobctl.scripts import Fail, Step
from jobctl.slots import KILL_GRACE_S, Slot, Slots

log = logging.getLogger("jobctl.worker")
METRICS_TTL_S = 3 * 3600
IDLE_BLOCK_S = 1.0
EXCERPT_CHARS = 1000  # of a refusing endpoint's answer, kept with a dead letter's traceback
RQ_MARGIN_S = 300  # RQ's registry cleanup sees a lease only this long after jobctl would reclaim it
BROKEN_MARKER_RECHECK_S = 30.0  # how often the waker looks again at a marker of the wrong type
FORGET_BROKEN_S = 600  # a wrong-type key not met again for this long is logged again when next met


class Quarantine:
    """Keys of the wrong type met in Redis (a queue list that is a string, ...): each is logged once, by
    `report`, and then only again after it went unseen for `FORGET_BROKEN_S`. Scripts skip such a key's
    level and report it; nothing here probes Redis."""

    def __init__(self, report: Callable[[str, str], None] | None = None) -> None:
        self.report = report or log_broken
        self.seen: dict[str, float] = {}  # key -> when last met

    def met(self, key: str, kind: str) -> None:
        """A script met `key` holding a `kind` (Redis TYPE) where it expected another type."""
        now = time.monotonic()
        last = self.seen.get(key)
        self.seen[key] = now
        if last is None or now - last > FORGET_BROKEN_S:
            self.report(key, kind)


def log_broken(key: str, kind: str) -> None:
    """The one line a key of the wrong type gets: what it holds, what belongs there, what is skipped."""
    expected, effect = "another type", "it is skipped"
    for prefix, what in _KEY_ROLES:
        if key.startswith(prefix):
            expected, effect = what
            break
    log.error("Redis key %s holds a %s where jobctl and RQ keep a %s: %s, every other queue and level is "
              "served (delete or rename the key to fix it)", printable(key), printable(kind), expected, effect)


_KEY_ROLES = [  # prefix -> (the type that belongs there, what a key of another type costs)
    (keys.queue_list(""), ("list", "its jobs are not taken")),
    (keys.wip(""), ("sorted set", "its level takes no jobs")),
    (keys.finished(""), ("sorted set", "its jobs finish but are not listed or trimmed as finished")),
    (keys.scheduled(""), ("sorted set", "its delayed jobs and retries are not moved")),
    (keys.failed(""), ("sorted set", "its failed jobs are not listed in RQ's failed registry")),
    (keys.marker(""), ("sorted set", "its runners poll the queue every second instead of waking")),
]


def level_order(registry: Registry, queues: list[str]) -> list[tuple[str, str]]:
    """(queue, level) pairs to take from, best first: priority number, then queue priority."""
    policies = [registry.get(q) for q in queues]
    pairs = [(p, policy.priority, policy.name, level) for policy in policies for p, level in policy.levels()]
    return [(name, level) for _p, _qp, name, level in sorted(pairs, key=lambda t: (t[0], t[1]))]


@dataclass
class Taken:
    """A job this runner holds (it is in RQ's started registry while held)."""

    id: str
    level: str
    queue: str
    name: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    retry_later_streak: bool
    timeout_s: int
    execution: str = ""
    refusal: str = ""  # why this job cannot run: it is dead-lettered instead

    @property
    def member(self) -> str:
        """Its started-registry member (RQ 3: `job_id:execution_id`)."""
        return f"{self.id}:{self.execution}" if self.execution else self.id


@dataclass
class Done:
    """A succeeded job whose finish rides on the next step."""

    job: Taken
    result: str
    duration_ms: float
    return_value: str = ""  # base64 of `result`, as RQ's result stream stores it


@dataclass
class Outcome:
    """What a slot reports back: the job, and its Done when it succeeded."""

    job: Taken
    done: Done | None = None


@dataclass
class StepResult:
    """What one step did."""

    taken: list[Taken] = field(default_factory=list)
    refused: list[tuple[str, str, str, str]] = field(default_factory=list)  # id, level, queue, reason
    skipped: list[str] = field(default_factory=list)  # finishes not recorded (cancelled, deleted, retaken)
    wait_s: float = 0.0
    suspended: bool = False


class Stuck(Exception):
    """A job ignored its timeout past the grace: the process must restart."""


def as_text(v: bytes | str) -> str:
    """Redis reply as str."""
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _exc_string(text: str, tb: str | None) -> str:
    """An error as RQ's result stream stores it: base64 of zlib-compressed text."""
    return base64.b64encode(zlib.compress((f"{tb}\n{text}" if tb else text).encode(errors="replace"))).decode()


def last_trace(error: BaseException, tb: str | None) -> str:
    """The traceback a dead letter keeps: the one raised (the exception line alone when the failure
    was not raised, e.g. a refused job), then the HTTP status and a bounded excerpt of the answer
    when a remote endpoint refused the request (`http_status`/`http_excerpt` on the error)."""
    text = (tb or "".join(traceback.format_exception_only(error))).rstrip()
    status = getattr(error, "http_status", None)
    if status is not None:
        excerpt = str(getattr(error, "http_excerpt", ""))[:EXCERPT_CHARS]
        text += f"\n\nHTTP status {status}; answer (first {EXCERPT_CHARS} characters):\n{excerpt}"
    return text


def _int(v: Any, default: int) -> int:
    try:
        return int(as_text(v)) if v not in (None, b"", "") else default
    except ValueError:
        return default


class Runner:
    """Runs jobs of some queues in this process, many at once (one slot thread each)."""

    def __init__(self, rt: Runtime, queues: list[str], name: str | None = None,
                 processors: Mapping[str, Processor] | None = None, hooks: Hooks | None = None,
                 services: Any = None, wait_out_outages: bool = True,
                 slots: Mapping[str, int] | None = None, total_slots: int | None = None,
                 rq_worker_key: str = "", quarantine: Quarantine | None = None) -> None:
        self.rt = rt
        self.quarantine = quarantine or Quarantine()
        self.rq_worker_key = rq_worker_key  # the pool's entry in RQ's worker registry, whose counts we keep
        self.settings = rt.settings
        self.queues = queues
        self.order = level_order(rt.settings.queues, queues)
        policies = {q: rt.settings.queues.get(q) for q in queues}
        self.slots = dict(slots) if slots is not None else {q: p.concurrency for q, p in policies.items()}
        self.total_slots = min(total_slots or sum(self.slots.values()), sum(self.slots.values()))
        self._take_spec = {q: self._queue_spec(q) for q in queues}
        self.name = name or f"{socket.gethostname()}.{uuid.uuid4().hex[:8]}"
        self.hooks = hooks or Hooks()
        self._processors = processors
        self._services = services
        self.stopping = False
        self.exhausted = False
        self.processed = 0  # jobs taken (each is run, or handed back)
        self.wait_out_outages = wait_out_outages  # a supervisor must not block: it retries on its next tick
        self._boot = uuid.uuid4().hex[:6]
        self._seq = 0
        self._gates: dict[tuple[str, str], Callable[[], None]] = {}
        self.inbox: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        self.running: dict[str, Taken] = {}
        self.in_use: dict[str, int] = dict.fromkeys(queues, 0)
        self.wip_ok: dict[str, set[str]] = {q: set() for q in queues}  # levels whose started registry took one

    def _queue_spec(self, name: str) -> list[Any]:
        p = self.settings.queues.get(name)
        rate = p.rate_limit
        window_us = int((rate.per_s if rate else 1) * 1e6) + ratelimit.GUARD_US
        return [0, p.global_concurrency or 0, rate.limit if rate else 0, window_us,
                rate.scope if rate else "queue", [level for _p, level in p.levels()]]

    @property
    def processors(self) -> Mapping[str, Processor]:
        """Name -> processor (the registered ones unless a test passed its own)."""
        if self._processors is None:
            self._processors = self.settings.queues.processors(self.queues)
        return self._processors

    @property
    def services(self) -> Any:
        """Service clients built lazily from Settings."""
        if self._services is None:
            from jobctl.services import Services

            self._services = Services(self.settings)
        return self._services

    # -- Redis steps -------------------------------------------------------------------------
    def step(self, done: list[Done], take: int) -> StepResult:
        """Finish `done` and take up to `take` jobs (within free slots), in one idempotent call."""
        self._seq += 1
        finishes = [[d.job.id, d.job.execution, d.job.level, d.job.queue, d.result, d.duration_ms,
                     *self._keep(d.job.queue), d.return_value, d.job.name] for d in done]
        spec = ""
        if take > 0:
            per_queue = {}
            for q, s in self._take_spec.items():
                free = self.slots.get(q, 0) - self.in_use.get(q, 0)
                if free > 0:
                    per_queue[q] = [free, *s[1:], sorted(self.wip_ok[q])]
            if per_queue:
                spec = Step.takes_json(take, per_queue, [lv for lv in self.order if lv[0] in per_queue])
        call = Step(active_key=keys.active(self.name), step_key=keys.step(self.name), worker=self.name,
                    token=f"{self._boot}-{self._seq}", lease_s=self.settings.heartbeat_ttl_s,
                    rq_margin_s=RQ_MARGIN_S, metrics_ttl_s=METRICS_TTL_S, finishes=Step.finishes_json(finishes),
                    takes=spec, failure_ttl_s=FAILURE_TTL_S, rq_worker_key=self.rq_worker_key)
        skipped, wait_us, flags, taken, refused, *rest = self._retrying(lambda: self.rt.scripts.run(call))
        broken = [(as_text(key), as_text(kind)) for key, kind in (rest[0] if rest else None) or []]
        for key, kind in broken:  # a replayed step reports none
            self.quarantine.met(key, kind)
        res = StepResult(skipped=[as_text(s) for s in skipped or []], wait_s=float(wait_us) / 1e6,
                         suspended=as_text(flags) == "suspended")
        res.taken = [self._taken(t) for t in taken or []]
        res.refused = [tuple(as_text(x) for x in r) for r in refused or []]  # type: ignore[misc]
        for job in res.taken:  # its started registry took a member: no longer tried before a pop
            self.wip_ok[job.queue].add(job.level)
        bad = {key for key, _kind in broken}
        for levels in self.wip_ok.values():  # ... unless it turned out to be of the wrong type
            levels.difference_update([lv for lv in levels if keys.wip(lv) in bad])
        return res

    def _keep(self, queue_name: str) -> tuple[int, int]:
        p = self.settings.queues.get(queue_name)
        return p.keep_completed_s, p.keep_completed_count

    def _taken(self, t: list[Any]) -> Taken:
        jid, execution, level, queue_name = (as_text(x) for x in t[:4])
        data, max_a, rl, timeout, bad = t[5], t[6], t[7], t[8], as_text(t[9])
        policy = self.settings.queues.get(queue_name)
        decoded = jobdata.decode(data)
        foreign = max_a in (None, b"", "")  # written by another producer (plain RQ): the policy decides
        name, payload, refusal = "?", {}, bad
        if isinstance(decoded, jobdata.Decoded):
            name, payload = decoded.name, decoded.payload
        elif not decoded.name:
            refusal = refusal or decoded.reason
        if not refusal and (decoded.name not in policy.jobs or decoded.name not in self.processors):
            refusal = f"job {decoded.name[:80]!r} is not registered for queue {queue_name!r}"
        elif not refusal and isinstance(decoded, jobdata.Refused):
            refusal = decoded.reason
        return Taken(jid, level, queue_name, name, payload, _int(t[4], 1),
                     policy.attempts if foreign else _int(max_a, 1), as_text(rl) == "1",
                     policy.timeout_s if foreign else max(1, _int(timeout, policy.timeout_s)), execution, refusal)

    def fail(self, job: Taken, error: BaseException, tb: str | None, owner: str | None = None,
             expired_only: bool = False, requeue: bool = False) -> Decision | None:
        """Apply retry-or-dead-letter for a failed attempt; guarded so only the owner (or, with
        `expired_only`, anyone once the lease expired) can apply it, and only once."""
        policy = self.settings.queues.get(job.queue)
        if requeue:
            decision = Decision("retry", 0.0, consumes_attempt=False, reason="put back on stop")
        else:
            decision = decide(error, job.attempt, job.max_attempts, policy.backoff, job.retry_later_streak)
        action = "requeue" if requeue else ("retry" if decision.action == "retry" else "dead")
        redactor = redact.for_settings(self.settings)  # error text is stored and logged: no secret in it
        text = redactor(decision.reason if action == "dead" else f"{type(error).__name__}: {error}")
        tb = redactor.scrub(last_trace(error, tb) if action == "dead" else tb)
        owner = owner or self.name
        ok = self._retrying(lambda: self.rt.scripts.run(Fail(
            active_key=keys.active(owner), job_id=job.id, member=job.member, level=job.level, queue=job.queue,
            action=action, delay_s=repr(decision.delay_s), consumes_attempt="1" if decision.consumes_attempt else "0",
            error=text[:4000], traceback=(tb or "")[-8000:], owner="" if expired_only else owner,
            rq_margin_s=RQ_MARGIN_S, failure_ttl_s=FAILURE_TTL_S, metrics_ttl_s=METRICS_TTL_S,
            retry_later_streak="1" if isinstance(error, RetryLater) else "0", rq_worker_key=self.rq_worker_key,
            exc_string=_exc_string(text, tb) if action == "dead" else "")))
        if not int(ok):
            return None
        if int(ok) == 2:  # its queue list or scheduled registry holds another type: it failed instead
            text = as_text(self._retrying(lambda: self.rt.redis.hget(keys.job(job.id), "jc_error")) or text)
            log.warning("job %s on %s could not be queued again and failed: %s", printable(job.id),
                        printable(job.queue), printable(text))
            action, requeue = "dead", False
            decision = Decision("dead-letter", 0.0, decision.consumes_attempt, reason=text)
        if isinstance(error, RetryLater) and error.throttle_queue:
            ratelimit.throttle(self.rt.redis, job.queue, error.delay_s)
        if not requeue:
            event = JobEvent(job.id, job.queue, job.name, job.payload, job.attempt, job.max_attempts,
                             error=text, traceback=tb, delay_s=decision.delay_s)
            self.hooks.emit("retrying" if action == "retry" else "dead_lettered", event)
        return decision

    def load(self, job_id: str, level: str, execution: str = "") -> tuple[Taken, str] | None:
        """A started job read back from its hash (for recovery), with its owner's name; never raises
        on what the hash holds (a job that cannot run is still handed back or dead-lettered)."""
        try:
            f = self.rt.redis.hmget(keys.job(job_id), ["data", "jc_attempt", "jc_max", "jc_rl", "jc_queue",
                                                      "timeout", "worker_name", "jc_exec"])
        except redis.ResponseError:  # not a hash
            return None
        if all(v is None for v in f):
            return None
        policy = self.settings.queues.level_owner(level)[0]
        queue_name = as_text(f[4]) if f[4] and as_text(f[4]) in self.settings.queues.names() else policy.name
        decoded = jobdata.decode(f[0])
        name, payload = (decoded.name, decoded.payload) if isinstance(decoded, jobdata.Decoded) else ("?", {})
        taken = Taken(job_id, level, queue_name, name, payload, _int(f[1], 1), _int(f[2], policy.attempts),
                      f[3] == b"1", _int(f[5], policy.timeout_s), execution or as_text(f[7] or b""))
        return taken, as_text(f[6] or b"")

    def _retrying(self, call: Callable[[], Any]) -> Any:
        """Run a Redis call, waiting out an outage (workers reconnect when Redis returns); the steps
        are idempotent, so a call whose reply was lost is simply made again."""
        if not self.wait_out_outages:
            return call()
        pause = 0.5
        while True:
            try:
                return call()
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError,  # outage, failover
                    redis.OutOfMemoryError) as exc:  # noeviction refuses the whole script: nothing was written
                if self.stopping and pause > 4:
                    raise
                what = "out of memory" if isinstance(exc, redis.OutOfMemoryError) else "unavailable"
                log.warning("Redis %s (%s); retrying in %.1fs", what, type(exc).__name__, pause)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def set_progress(self, job_id: str, pct: int) -> None:
        """Store a job's progress (0-100) where `jobs show` reads it."""
        try:
            self.rt.redis.hset(keys.job(job_id), "jc_progress", max(0, min(100, int(pct))))
        except (redis.ConnectionError, redis.TimeoutError):
            log.warning("progress of job %s not stored: Redis unavailable", printable(job_id))

    # -- running (in slot threads) ----------------------------------------------------------
    def run_in_slot(self, slot: Slot, job: Taken) -> None:
        """Run one taken job in `slot`; report the outcome to the dispatcher."""
        outcome = Outcome(job)
        try:
            slot.begin(job, job.timeout_s)
            outcome.done = self.execute(job)
        except JobTimeout as exc:  # arrived outside the processor, but for this job
            self._apply_failure(job, exc, None)
        finally:
            slot.end()
            self.inbox.put(outcome)

    def execute(self, job: Taken) -> Done | None:
        """Run one taken job; a success returns Done (finished on the next step), a failure is applied."""
        if job.refusal:
            self._apply_failure(job, PermanentFailure(job.refusal), None)
            return None
        self.hooks.emit("started", JobEvent(job.id, job.queue, job.name, job.payload, job.attempt,
                                            job.max_attempts))
        start = time.perf_counter()
        try:
            result = self._call(job)
            text = json.dumps(result, default=str)
        except BaseException as exc:  # noqa: BLE001 - every failure is recorded, signals included
            if not isinstance(exc, Exception | JobTimeout):
                self.fail(job, RuntimeError("worker interrupted"), None, requeue=True)
                raise
            self._apply_failure(job, exc, None if isinstance(exc, RetryLater) else traceback.format_exc(limit=20))
            return None
        return Done(job, text, round((time.perf_counter() - start) * 1000, 3),
                    base64.b64encode(text.encode()).decode())

    def _apply_failure(self, job: Taken, exc: BaseException, tb: str | None) -> None:
        try:
            self.fail(job, exc, tb)
        except redis.RedisError as err:  # the lease expires and another pool reclaims the job
            log.warning("failure of job %s not recorded (%s); its lease will expire", printable(job.id),
                        type(err).__name__)

    def _call(self, job: Taken) -> Any:
        fn = self.processors[job.name]
        try:
            payload = self.settings.queues.validate(job.name, job.payload)
        except UsageError as exc:
            raise PermanentFailure(str(exc)) from None
        ctx = JobContext(job.id, job.name, job.queue, self.settings, self.services, job.attempt,
                         job.max_attempts, lambda pct: self.set_progress(job.id, pct), self._gate(job))
        return fn(payload, ctx)

    def _gate(self, job: Taken) -> Callable[[], None]:
        rate = self.settings.queues.get(job.queue).rate_limit
        if rate is None:
            return no_gate
        key = (job.queue, job.name)
        if key not in self._gates:
            self._gates[key] = ratelimit.gate(self.rt.redis, job.queue, rate, job.name, time.sleep)
        return self._gates[key]

    # -- the dispatcher ----------------------------------------------------------------------
    def work(self, burst: bool = False, max_jobs: int | None = None,
             claim: Callable[[int], int] | None = None, unclaim: Callable[[int], None] | None = None) -> int:
        """Take, run, finish until stopped (or, with `burst`, until nothing is left); returns jobs taken."""
        self.services, self.processors  # noqa: B018 - built before the first take: a job starts at once
        slots = Slots(self.total_slots, self.run_in_slot, name=self.name)
        waker = (_Waker(self.rt.redis, [keys.marker(q) for q in self.queues], self.inbox, self.quarantine)
                 if not burst else None)
        done: list[Done] = []
        try:
            while True:
                done += self._collect()
                want = self._wanted(max_jobs, claim)
                if done or want:
                    res = self.step(done, want)
                    done = []
                    self._after_step(res, slots, want, unclaim)
                    if res.taken:
                        continue
                    idle_wait = res.wait_s or (IDLE_BLOCK_S if res.suspended else 0.0)
                else:
                    idle_wait = 0.0
                self._check_timeouts(slots)
                if not self.running and (self.stopping or self.exhausted
                                         or (max_jobs is not None and self.processed >= max_jobs)):
                    return self.processed
                if not self.running and burst and not idle_wait and not self._promote_due():
                    return self.processed
                self._wait(idle_wait, burst, waker, bool(want))
        finally:
            slots.close()
            if waker:
                waker.stop()

    def _wanted(self, max_jobs: int | None, claim: Callable[[int], int] | None) -> int:
        if self.stopping:
            return 0
        free = self.total_slots - len(self.running)
        if max_jobs is not None:
            free = min(free, max_jobs - self.processed)
        if free > 0 and claim is not None:
            granted = claim(free)
            self.exhausted = granted == 0  # the pool's --max-jobs is used up
            free = granted
        return max(0, free)

    def _after_step(self, res: StepResult, slots: Slots, want: int, unclaim: Callable[[int], None] | None) -> None:
        if unclaim is not None and want > len(res.taken):
            unclaim(want - len(res.taken))
        for job in res.taken:
            self.running[job.member] = job
            self.in_use[job.queue] = self.in_use.get(job.queue, 0) + 1
            self.processed += 1
            slots.submit(job)
        for jid, level, queue_name, reason in res.refused:
            log.warning("job %s on %s refused: %s", printable(jid), printable(level), printable(reason))
            self.hooks.emit("dead_lettered", JobEvent(jid, queue_name, "?", {}, 0, 0, error=reason))

    def _collect(self) -> list[Done]:
        """Outcomes the slots reported since the last look."""
        done: list[Done] = []
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return done
            if item is None:
                continue
            self._release(item.job)
            if item.done:
                done.append(item.done)
                if self.hooks.hooks:
                    self._emit_done(item.done)

    def _release(self, job: Taken) -> None:
        if self.running.pop(job.member, None) is not None:
            self.in_use[job.queue] -= 1

    def _wait(self, idle_wait: float, burst: bool, waker: _Waker | None, can_take: bool) -> None:
        timeout = min(idle_wait, IDLE_BLOCK_S) if idle_wait else (0.05 if burst else IDLE_BLOCK_S)
        if self.running:
            timeout = min(timeout, 0.5)  # timeouts are checked at least twice a second
        if waker is not None:
            waker.arm(can_take and not idle_wait)
        try:
            item = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        self.inbox.put(item)  # the next `_collect` handles it in order

    def _check_timeouts(self, slots: Slots) -> None:
        for slot, job in slots.overdue():
            if slot.interrupt(job):
                log.warning("job %s ran past its %ds timeout; interrupting it", printable(job.id), job.timeout_s)
        stuck = slots.overdue(KILL_GRACE_S)
        if stuck:
            self._abandon([job for _s, job in stuck])
            raise Stuck(f"job {stuck[0][1].id} ignored its timeout; restarting the process")

    def _abandon(self, stuck: list[Taken]) -> None:
        """Fail the stuck jobs with a timeout and put every other running job back, attempt not charged."""
        ids = {j.member for j in stuck}
        for job in list(self.running.values()):
            if job.member in ids:
                self._apply_failure(job, JobTimeout(f"job exceeded its {job.timeout_s}s timeout (process "
                                                     "restarted)"), None)
            else:
                self.fail(job, RuntimeError("process restarted"), None, requeue=True)
            self._release(job)

    def _emit_done(self, done: Done) -> None:
        j = done.job
        self.hooks.emit("succeeded", JobEvent(j.id, j.queue, j.name, j.payload, j.attempt, j.max_attempts,
                                              duration_ms=done.duration_ms, result=json.loads(done.result)))

    def _promote_due(self) -> int:
        from jobctl.delayed import promote

        return int(self._retrying(lambda: promote(self.rt, self.queues, self.hooks, self.quarantine.met)[0]))


class _Waker:
    """Blocks on the queues' wake-up markers while the dispatcher is idle with free slots, and wakes it."""

    def __init__(self, client: redis.Redis, markers: list[str], inbox: queue.SimpleQueue[Outcome | None],
                 quarantine: Quarantine | None = None) -> None:
        self.client, self.markers, self.inbox = client, markers, inbox
        self.quarantine = quarantine or Quarantine()
        self.broken: dict[str, float] = {}  # marker -> when to look at it again
        self.armed = threading.Event()
        self.stopped = False
        threading.Thread(target=self._main, name="waker", daemon=True).start()

    def arm(self, on: bool) -> None:
        """Watch the markers (on) or not."""
        if on:
            self.armed.set()
        else:
            self.armed.clear()

    def stop(self) -> None:
        """End the thread after its current wait."""
        self.stopped = True
        self.armed.set()

    def _main(self) -> None:
        while not self.stopped:
            self.armed.wait()
            if self.stopped:
                return
            watched = [m for m in self.markers if m not in self.broken]
            try:
                if not watched:
                    time.sleep(IDLE_BLOCK_S)  # the dispatcher still steps every IDLE_BLOCK_S
                elif self.client.bzpopmin(watched, timeout=IDLE_BLOCK_S):
                    self.armed.clear()
                    self.inbox.put(None)
                self._recheck()
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(IDLE_BLOCK_S)  # Redis is down: the dispatcher's next step waits it out
            except redis.ResponseError:  # a marker of the wrong type: watch the others without it
                self._sort_out(watched)

    def _sort_out(self, markers: list[str]) -> None:
        """After a failed wait: set aside (and report) every marker that is not a sorted set."""
        with contextlib.suppress(redis.RedisError):
            for m in markers:
                kind = as_text(self.client.type(m))
                if kind not in ("zset", "none"):
                    self.broken[m] = time.monotonic() + BROKEN_MARKER_RECHECK_S
                    self.quarantine.met(m, kind)
        time.sleep(0.05)

    def _recheck(self) -> None:
        """Watch a set-aside marker again once it became a sorted set (or went)."""
        now = time.monotonic()
        for m, when in list(self.broken.items()):
            if now >= when:
                if as_text(self.client.type(m)) in ("zset", "none"):
                    del self.broken[m]
                else:
                    self.broken[m] = now + BROKEN_MARKER_RECHECK_S
