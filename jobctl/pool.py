"""The worker pool: a supervisor process and N forked runner processes.

The supervisor enforces hard timeouts (a runner past its job's timeout is killed), recovers the
jobs of runners that died, extends heartbeats, reclaims jobs whose heartbeat expired (another
host's pool was killed), moves due delayed jobs, and handles graceful and immediate stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType

import redis
from sqlalchemy.exc import SQLAlchemyError

from jobctl import keys
from jobctl.config import Settings
from jobctl.control import register_queues
from jobctl.errors import JobctlError, JobTimeout, ServiceUnavailable
from jobctl.hooks import Hooks
from jobctl.processors import Processor
from jobctl.retention import trim_finished
from jobctl.runtime import Runtime
from jobctl.scheduler import promote
from jobctl.worker import Runner, as_text

log = logging.getLogger("jobctl.pool")
TICK_S = 0.2
KILL_GRACE_S = 5.0
RECONCILE_S = 60.0
RECONCILE_BATCH = 500  # per pass: the supervisor must keep heart-beating (a backlog takes a few passes)
PR_SET_PDEATHSIG = 1


class WorkerDied(Exception):
    """The runner process running a job exited without finishing it."""


@dataclass
class Child:
    """One runner process."""

    index: int
    name: str
    pid: int = 0
    kill_reason: BaseException | None = None
    running: dict[str, tuple[str, float, int]] = field(default_factory=dict)  # id -> (level, started, timeout)
    needs_recovery: bool = False  # died holding jobs not yet handed back (Redis was down)
    spawned_at: float = 0.0
    respawn_at: float = 0.0
    backoff_s: float = 0.0


class Pool:
    """Runs `concurrency` runner processes for `queues` until stopped."""

    def __init__(self, settings: Settings, queues: list[str], concurrency: int, burst: bool = False,
                 max_jobs: int | None = None, hooks: Callable[[Runtime], Hooks] | None = None,
                 processors: Mapping[str, Processor] | None = None) -> None:
        self.settings = settings
        self.queues = queues
        self.burst = burst
        self.max_jobs = max_jobs
        self.make_hooks = hooks or (lambda _rt: Hooks())
        self.processors = processors
        # unique even for two containers that are both "pid 1" on one host name
        self.name = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.children = [Child(i, f"{self.name}.{i}") for i in range(concurrency)]
        self.rt = Runtime(settings)
        self.recovery = Runner(self.rt, queues, name=self.name, hooks=self.make_hooks(self.rt),
                               wait_out_outages=False)
        self.levels = [level for q in queues for _p, level in settings.queues.get(q).levels()]
        self.rq_levels = [settings.queues.get(q).level() for q in queues]  # what RQ's tools display
        self.stopping = 0.0  # time the first stop signal arrived
        self.cold = False
        self.claimed = multiprocessing.Value("i", 0)
        self.max_timeout_s = max(settings.queues.get(q).timeout_s for q in queues)

    # -- lifecycle ---------------------------------------------------------------------------
    def run(self) -> int:
        """Supervise until stopped or (with burst / max-jobs) done; returns the exit code."""
        self.rt.redis.ping()
        self._warm_up()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self._reap_expired()
        register_queues(self.rt, self.queues)
        for child in self.children:
            self._spawn(child)
        log.info("pool %s serving %s with %d runners", self.name, ",".join(self.queues), len(self.children))
        last = {"hb": 0.0, "promote": 0.0, "reconcile": time.time()}
        try:
            while not self._finished():
                self._reap_children()
                if self.cold:
                    self._stop_cold()
                    break
                with contextlib.suppress(redis.RedisError):
                    self._service_children()
                    self._tick(last)
                time.sleep(TICK_S)
        finally:
            with contextlib.suppress(redis.RedisError):
                self._deregister()
        log.info("pool %s stopped", self.name)
        return 0

    def _finished(self) -> bool:
        """No runner alive and none to bring back (stopping, or --max-jobs reached)."""
        if any(c.pid or c.needs_recovery for c in self.children):
            return False
        return bool(self.stopping) or self._max_reached()

    def _max_reached(self) -> bool:
        return self.max_jobs is not None and self.claimed.value >= self.max_jobs

    def _warm_up(self) -> None:
        """Import every processor and service module before forking: runners then start their first
        job at once (no second of imports between taking a job and starting it, which would skew the
        rate limit) and share those pages copy-on-write."""
        if self.processors is None:
            from jobctl.processors import registry

            registry()
        import jobctl.services  # noqa: F401

    def _tick(self, last: dict[str, float]) -> None:
        now = time.time()
        self._read_running()
        self._enforce_timeouts()
        if not self.stopping and now - last["promote"] >= 1.0:
            promote(self.rt, self.queues)
            last["promote"] = now
        if now - last["hb"] >= min(5.0, self.settings.heartbeat_ttl_s / 3):
            self._heartbeat(now)
            self._reap_expired()
            last["hb"] = now
        if now - last["reconcile"] >= RECONCILE_S:
            self._reconcile()
            trim_finished(self.rt)
            last["reconcile"] = now
        if self.burst and not self.stopping and self._drained():
            self._begin_stop()
        if self.stopping and now - self.stopping > self.max_timeout_s + KILL_GRACE_S:
            self.cold = True

    def _reconcile(self) -> None:
        """Record failures the dead-letter hook could not (the database was down then)."""
        from jobctl.deadletter import reconcile

        try:
            if n := reconcile(self.rt, limit=RECONCILE_BATCH):
                log.info("recorded %d dead letter(s) missed earlier", n)
        except (JobctlError, SQLAlchemyError) as exc:
            log.warning("dead-letter reconciliation skipped: %s", str(exc).splitlines()[0][:200])

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            log.warning("second signal: stopping now, putting running jobs back")
            self.cold = True
        else:
            log.info("signal %d: finishing running jobs, taking no more", signum)
            self._begin_stop()

    def _begin_stop(self) -> None:
        self.stopping = time.time()
        for child in self.children:
            if child.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    def _stop_cold(self) -> None:
        for child in self.children:
            if child.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
        for child in self.children:
            if child.pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(child.pid, 0)
                child.pid = 0
            self._recover(child, requeue=True)

    # -- children ----------------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        pid = os.fork()
        if pid:
            child.pid, child.kill_reason, child.spawned_at = pid, None, time.time()
            return
        code = 1
        try:
            code = self._child_main(child)
        except BaseException:  # noqa: BLE001 - report, then leave: the supervisor recovers the jobs
            log.exception("runner %s crashed", child.name)
        finally:
            os._exit(code)

    def _child_main(self, child: Child) -> int:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        from jobctl.db import forget_engines_after_fork

        forget_engines_after_fork()
        rt = Runtime(self.settings)
        runner = Runner(rt, self.queues, name=child.name, hooks=self.make_hooks(rt), processors=self.processors)

        def stop(_s: int, _f: FrameType | None) -> None:
            runner.stopping = True

        signal.signal(signal.SIGTERM, stop)
        while not (self.stopping or runner.stopping):
            try:
                runner.work(claim=self._claim, unclaim=self._unclaim)
                return 0
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, ServiceUnavailable) as exc:
                # a job finished during the outage stays in the started registry until its
                # heartbeat expires, then it is run again (at least once, never lost)
                log.warning("runner %s: Redis unavailable (%s); waiting", child.name, type(exc).__name__)
                time.sleep(1.0)
        return 0

    def _claim(self) -> bool:
        if self.max_jobs is None:
            return True
        with self.claimed.get_lock():
            if self.claimed.value >= self.max_jobs:
                return False
            self.claimed.value += 1
            return True

    def _unclaim(self) -> None:
        if self.max_jobs is not None:
            with self.claimed.get_lock():
                self.claimed.value -= 1

    def _reap_children(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = next((c for c in self.children if c.pid == pid), None)
            if child is None:
                continue
            child.pid, child.needs_recovery = 0, True
            code = os.waitstatus_to_exitcode(status)
            quick = time.time() - child.spawned_at < 2.0
            child.backoff_s = min(max(1.0, child.backoff_s * 2), 30.0) if code != 0 and quick else 0.0
            child.respawn_at = time.time() + child.backoff_s
            if code != 0 and not self.stopping:
                log.warning("runner %s exited (%s); restarting in %.0fs", child.name, code, child.backoff_s)

    def _service_children(self) -> None:
        """Hand back the jobs of dead runners, then restart them (not before: a restarted runner
        reuses its name, and must not inherit a dead one's entries)."""
        for child in self.children:
            if child.needs_recovery and self._recover(child):
                child.needs_recovery = False
            wanted = not (self.stopping or self.cold or self._max_reached())
            if wanted and not child.pid and not child.needs_recovery and time.time() >= child.respawn_at:
                self._spawn(child)

    def _recover(self, child: Child, requeue: bool = False) -> bool:
        """Apply the failure (or put back) every job a dead runner still held; False if Redis is down."""
        try:
            held = self.rt.redis.hgetall(keys.active(child.name))
            for raw_id, raw in held.items():
                job_id, level = as_text(raw_id), as_text(raw).split("|")[0]
                loaded = self.recovery.load(job_id, level)
                if loaded is None:
                    self.rt.redis.hdel(keys.active(child.name), job_id)
                    continue
                taken, _owner = loaded
                error = child.kill_reason or WorkerDied("the runner process died while running the job")
                decision = self.recovery.fail(taken, error, None, owner=child.name, requeue=requeue)
                log.warning("job %s of %s: %s -> %s", job_id, taken.queue, error,
                            "put back" if requeue else (decision.action if decision else "already handled"))
        except redis.RedisError as exc:
            log.warning("runner %s: jobs not handed back yet (%s); retrying", child.name, type(exc).__name__)
            return False
        return True

    def _read_running(self) -> None:
        with self.rt.redis.pipeline(transaction=False) as pipe:
            for child in self.children:
                pipe.hgetall(keys.active(child.name))
            results = pipe.execute()
        for child, held in zip(self.children, results, strict=True):
            child.running = {}
            for raw_id, raw in held.items():
                level, started, timeout = ([*as_text(raw).split("|"), "", ""])[:3]
                timeout_s = int(timeout) if timeout.isdigit() else self.settings.queues.level_owner(level)[0].timeout_s
                child.running[as_text(raw_id)] = (level, float(started or 0), timeout_s)

    def _enforce_timeouts(self) -> None:
        """Kill a runner whose job overran its timeout (times are Redis server time, as the take's)."""
        secs, micros = self.rt.redis.time()
        now = secs + micros / 1e6
        for child in self.children:
            for job_id, (_level, started, timeout_s) in child.running.items():
                if child.pid and started and now - started > timeout_s + KILL_GRACE_S:
                    log.warning("job %s ran past its %ds timeout; killing runner %s", job_id, timeout_s,
                                child.name)
                    child.kill_reason = JobTimeout(f"job exceeded its {timeout_s}s timeout (runner killed)")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signal.SIGKILL)

    def _heartbeat(self, now: float) -> None:
        pairs = [x for c in self.children for jid, (level, _s, _t) in c.running.items() for x in (level, jid)]
        if pairs:
            self.rt.scripts.heartbeat(keys=[], args=[keys.wip(""), self.settings.heartbeat_ttl_s, *pairs])
        state = "stopping" if self.stopping else ("busy" if pairs else "idle")
        with self.rt.redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.worker(self.name), mapping={
                "host": socket.gethostname(), "pid": os.getpid(), "queues": ",".join(self.queues),
                "concurrency": len(self.children), "state": state, "heartbeat": now,
                "runners": ",".join(c.name for c in self.children)})
            pipe.expire(keys.worker(self.name), self.settings.heartbeat_ttl_s * 2)
            self._register_with_rq(pipe, state, now)
            pipe.zadd(keys.workers(), {self.name: now})
            # pools killed with SIGKILL never deregister: forget them once long silent
            pipe.zremrangebyscore(keys.workers(), "-inf", now - 3600)
            pipe.execute()

    def _register_with_rq(self, pipe: redis.client.Pipeline, state: str, now: float) -> None:
        """Show this pool to RQ's own tools (`rq info`, rq-dashboard) as one worker."""
        from datetime import UTC, datetime

        from jobctl.jobs import rq_time

        key = keys.rq_worker(self.name)
        stamp = rq_time(datetime.fromtimestamp(now, UTC))
        pipe.hset(key, mapping={"hostname": socket.gethostname(), "pid": os.getpid(), "state": state,
                                "queues": ",".join(self.rq_levels), "last_heartbeat": stamp,
                                "version": "jobctl"})
        pipe.hsetnx(key, "birth", stamp)
        pipe.expire(key, self.settings.heartbeat_ttl_s * 2)
        pipe.sadd(keys.rq_workers(), key)
        for level in self.rq_levels:
            pipe.sadd(keys.rq_workers_of(level), key)

    def _deregister(self) -> None:
        key = keys.rq_worker(self.name)
        with self.rt.redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.worker(self.name), key)
            pipe.zrem(keys.workers(), self.name)
            pipe.srem(keys.rq_workers(), key)
            for level in self.rq_levels:
                pipe.srem(keys.rq_workers_of(level), key)
            pipe.execute()

    def _reap_expired(self) -> None:
        """Reclaim jobs whose runner stopped heart-beating (its whole pool was killed)."""
        res = self.rt.scripts.expired(keys=[], args=[keys.wip(""), *self.levels])
        for i in range(0, len(res), 2):
            level, job_id = res[i].decode(), res[i + 1].decode()
            loaded = self.recovery.load(job_id, level)
            if loaded is None:
                self.rt.redis.zrem(keys.wip(level), job_id)
                continue
            taken, owner = loaded
            lost = WorkerDied(f"worker {owner or '?'} stopped heart-beating while running the job")
            decision = self.recovery.fail(taken, lost, None, owner=owner or self.name, expired_only=True)
            if decision:
                log.warning("job %s of %s reclaimed from %s -> %s", job_id, taken.queue, owner,
                            decision.action)

    def _drained(self) -> bool:
        if any(c.running for c in self.children):
            return False
        with self.rt.redis.pipeline(transaction=True) as pipe:  # one consistent reading of all levels
            for level in self.levels:
                pipe.llen(keys.queue_list(level))
                pipe.zcard(keys.wip(level))
            if any(pipe.execute()):
                return False
        return promote(self.rt, self.queues)[0] == 0
