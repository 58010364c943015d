"""The job runner: takes one job at a time in one atomic step, runs its registered processor under a
timeout, and applies the outcome (finish folded into the next take: one round trip per job)."""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

import redis

from jobctl import keys, payloads, ratelimit
from jobctl.context import JobContext, no_gate
from jobctl.errors import JobSignal, JobTimeout, PermanentFailure, RetryLater, UsageError
from jobctl.hooks import Hooks, JobEvent
from jobctl.jobs import FAILURE_TTL_S, decode_data, rq_time
from jobctl.processors import Processor
from jobctl.queues import Registry
from jobctl.retry import Decision, decide
from jobctl.runtime import Runtime

log = logging.getLogger("jobctl.worker")
METRICS_TTL_S = 3 * 3600
IDLE_BLOCK_S = 1.0


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


@dataclass
class Done:
    """A succeeded job whose finish rides on the next take."""

    job: Taken
    result: str
    duration_ms: float


def as_text(v: bytes | str) -> str:
    """Redis reply as str."""
    return v.decode() if isinstance(v, bytes) else str(v)


def _raise_timeout(_signum: int, _frame: FrameType | None) -> None:
    raise JobTimeout("job exceeded its timeout")


class Runner:
    """Runs jobs of some queues in this process, one at a time."""

    def __init__(self, rt: Runtime, queues: list[str], name: str | None = None,
                 processors: Mapping[str, Processor] | None = None, hooks: Hooks | None = None,
                 services: Any = None, wait_out_outages: bool = True) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.queues = queues
        self.order = level_order(rt.settings.queues, queues)
        self.flat_order: list[str | int] = [keys.rate(""), keys.throttle("")]
        for queue, level in self.order:
            rate = rt.settings.queues.get(queue).rate_limit
            window_us = int((rate.per_s if rate else 1) * 1e6) + ratelimit.GUARD_US
            self.flat_order += [queue, level, rate.limit if rate else 0, window_us, rate.scope if rate else "queue"]
        self.rate_wait_s = 0.0
        self.name = name or f"{socket.gethostname()}.{id(self):x}"
        self.hooks = hooks or Hooks()
        self._processors = processors
        self._services = services
        self.stopping = False
        self.processed = 0
        self.wait_out_outages = wait_out_outages  # a supervisor must not block: it retries on its next tick

    @property
    def processors(self) -> Mapping[str, Processor]:
        """Name -> processor (the registered ones unless a test passed its own)."""
        if self._processors is None:
            from jobctl.processors import registry

            self._processors = registry()
        return self._processors

    @property
    def services(self) -> Any:
        """Service clients built lazily from Settings."""
        if self._services is None:
            from jobctl.services import Services

            self._services = Services(self.settings)
        return self._services

    # -- Redis steps -------------------------------------------------------------------------
    def step(self, done: Done | None, take: bool) -> Taken | None:
        """Finish `done` (if any) and take the next job (if `take`), in one script call."""
        finish: list[Any] = ["0", "", "", "", "", "0", "0", "0"]
        if done:
            policy = self.settings.queues.get(done.job.queue)
            finish = ["1", done.job.id, done.job.level, done.job.queue, done.result,
                      policy.keep_completed_s, policy.keep_completed_count, done.duration_ms]
        args = [keys.job(""), keys.queue_list(""), keys.wip(""), keys.finished(""), keys.active(self.name),
                keys.paused(), keys.METRICS_PREFIX, keys.marker(""), self.name, rq_time(),
                self.settings.heartbeat_ttl_s, METRICS_TTL_S, *finish, "1" if take else "0"]
        if take:
            args += self.flat_order
        res = self._retrying(lambda: self.rt.scripts.step(keys=[], args=args))
        if done and int(res[0]) == 1:
            self._emit_done(done)
        if len(res) <= 2:
            self.rate_wait_s = float(res[1]) if len(res) == 2 else 0.0
            return None
        _, jid, level, queue, attempt, data, max_a, rl, timeout, _enq = (as_text(x) for x in res)
        name, payload = decode_data(data)
        return Taken(jid, level, queue, name, payload, int(attempt), int(max_a or 1), rl == "1",
                     int(timeout or self.settings.queues.get(queue).timeout_s))

    def fail(self, job: Taken, error: BaseException, tb: str | None, owner: str | None = None,
             expired_only: bool = False, requeue: bool = False) -> Decision | None:
        """Apply retry-or-dead-letter for a failed attempt; guarded so only the owner (or, with
        `expired_only`, anyone once the heartbeat expired) can apply it, and only once."""
        policy = self.settings.queues.get(job.queue)
        if requeue:
            decision = Decision("retry", 0.0, consumes_attempt=False, reason="put back on stop")
        else:
            decision = decide(error, job.attempt, job.max_attempts, policy.backoff, job.retry_later_streak)
        action = "requeue" if requeue else ("retry" if decision.action == "retry" else "dead")
        streak = "1" if isinstance(error, RetryLater) else "0"
        text = decision.reason if action == "dead" else f"{type(error).__name__}: {error}"
        owner = owner or self.name
        ok = self._retrying(lambda: self.rt.scripts.fail(keys=[], args=[
            keys.job(""), keys.queue_list(""), keys.wip(""), keys.scheduled(""), keys.failed(""),
            keys.active(owner), keys.METRICS_PREFIX, keys.marker(""), job.id, job.level, job.queue, action,
            repr(decision.delay_s), "1" if decision.consumes_attempt else "0", text[:4000], rq_time(),
            "" if expired_only else owner, FAILURE_TTL_S, METRICS_TTL_S, streak, (tb or "")[-8000:]]))
        if not int(ok):
            return None
        if isinstance(error, RetryLater) and error.throttle_queue:
            ratelimit.throttle(self.rt.redis, job.queue, error.delay_s)
        if not requeue:
            event = JobEvent(job.id, job.queue, job.name, job.payload, job.attempt, job.max_attempts,
                             error=text, traceback=tb, delay_s=decision.delay_s)
            self.hooks.emit("retrying" if action == "retry" else "dead_lettered", event)
        return decision

    def load(self, job_id: str, level: str) -> tuple[Taken, str] | None:
        """A started job read back from its hash (for recovery), with its owner's name."""
        f = self.rt.redis.hmget(keys.job(job_id), ["data", "jc_attempt", "jc_max", "jc_rl", "jc_queue",
                                                  "timeout", "worker_name"])
        if f[0] is None:
            return None
        name, payload = decode_data(as_text(f[0]))
        queue = as_text(f[4]) if f[4] else self.settings.queues.level_owner(level)[0].name
        taken = Taken(job_id, level, queue, name, payload, int(f[1] or 1), int(f[2] or 1), f[3] == b"1",
                      int(f[5] or 0))
        return taken, as_text(f[6] or b"")

    def _retrying(self, call: Callable[[], Any]) -> Any:
        """Run a Redis call, waiting out an outage (workers reconnect when Redis returns)."""
        if not self.wait_out_outages:
            return call()
        pause = 0.5
        while True:
            try:
                return call()
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as exc:  # outage, failover
                if self.stopping and pause > 4:
                    raise
                log.warning("Redis unavailable (%s); retrying in %.1fs", type(exc).__name__, pause)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def set_progress(self, job_id: str, pct: int) -> None:
        """Store a job's progress (0-100) where `jobs show` reads it."""
        try:
            self.rt.redis.hset(keys.job(job_id), "jc_progress", max(0, min(100, int(pct))))
        except (redis.ConnectionError, redis.TimeoutError):
            log.warning("progress of job %s not stored: Redis unavailable", job_id)

    # -- running -----------------------------------------------------------------------------
    def execute(self, job: Taken) -> Done | None:
        """Run one taken job; a success returns Done (finished on the next step), a failure is applied."""
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
            tb = None if isinstance(exc, JobSignal) else traceback.format_exc(limit=20)
            self.fail(job, exc, tb)
            return None
        finally:
            self.processed += 1
        return Done(job, text, round((time.perf_counter() - start) * 1000, 3))

    def _call(self, job: Taken) -> Any:
        fn = self.processors.get(job.name)
        if fn is None or job.name not in self.settings.queues.get(job.queue).jobs:
            raise PermanentFailure(f"job name {job.name!r} is not registered for queue {job.queue!r}")
        try:
            payload = payloads.validate(job.name, job.payload)
        except UsageError as exc:
            raise PermanentFailure(str(exc)) from None
        rate = self.settings.queues.get(job.queue).rate_limit
        ctx = JobContext(job.id, job.name, job.queue, self.settings, self.services, job.attempt,
                         job.max_attempts, lambda pct: self.set_progress(job.id, pct),
                         ratelimit.gate(self.rt.redis, job.queue, rate, job.name, time.sleep) if rate else no_gate)
        use_alarm = threading.current_thread() is threading.main_thread()
        if use_alarm:
            previous = signal.signal(signal.SIGALRM, _raise_timeout)
            signal.setitimer(signal.ITIMER_REAL, job.timeout_s)
        try:
            return fn(payload, ctx)
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)

    def _emit_done(self, done: Done) -> None:
        j = done.job
        self.hooks.emit("succeeded", JobEvent(j.id, j.queue, j.name, j.payload, j.attempt, j.max_attempts,
                                              duration_ms=done.duration_ms, result=json.loads(done.result)))

    def wait_for_work(self, timeout_s: float = IDLE_BLOCK_S) -> None:
        """Block on the queues' wake-up markers (an enqueue or a promotion sets them)."""
        try:
            self.rt.redis.bzpopmin([keys.marker(q) for q in self.queues], timeout=timeout_s)
        except redis.TimeoutError:
            pass
        except redis.ConnectionError:
            time.sleep(timeout_s)  # Redis is down: the next step waits it out and reconnects

    def work(self, burst: bool = False, max_jobs: int | None = None,
             claim: Callable[[], bool] | None = None, unclaim: Callable[[], None] | None = None) -> int:
        """The loop: take, run, repeat; returns the number of jobs run."""
        done: Done | None = None
        while True:
            want = not self.stopping and (max_jobs is None or self.processed < max_jobs)
            if want and claim is not None and not claim():
                want = False
            job = self.step(done, take=want)
            done = None
            if job is None:
                if want and unclaim is not None:
                    unclaim()
                if not want:
                    return self.processed
                if self.rate_wait_s > 0:  # rate-limited or throttled: wait exactly as long as needed
                    time.sleep(min(self.rate_wait_s, IDLE_BLOCK_S))
                    continue
                if burst and not self._promote_due():
                    return self.processed
                self.wait_for_work(0.05 if burst else IDLE_BLOCK_S)
                continue
            done = self.execute(job)

    def _promote_due(self) -> int:
        from jobctl.scheduler import promote

        return promote(self.rt, self.queues)[0]

