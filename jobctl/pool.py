"""The worker pool: a supervisor process and a few forked runner processes, each running many slots.

The supervisor forks, reaps and restarts runners, forwards signals, and enforces a backstop on hard
timeouts (a runner whose job overran its timeout and its own in-process interruption is killed,
on Redis time). Its periodic duties live in `jobctl.maintenance`. Slots are spread over runners by
`jobctl.slotplan`, so a queue's concurrency holds in the pool as a whole.
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

from jobctl import keys, maintenance, slotplan
from jobctl.config import Settings
from jobctl.control import register_queues
from jobctl.errors import JobTimeout, ServiceUnavailable, printable
from jobctl.hooks import Hooks
from jobctl.maintenance import WorkerDied
from jobctl.processors import Processor
from jobctl.runtime import Runtime
from jobctl.slots import KILL_GRACE_S
from jobctl.worker import Quarantine, Runner, Stuck, as_text

log = logging.getLogger("jobctl.pool")
TICK_S = 0.2
BACKSTOP_S = 2 * KILL_GRACE_S + 2  # past a job's timeout: the runner's own interruption has failed
PR_SET_PDEATHSIG = 1
STUCK_EXIT = 3


@dataclass
class Child:
    """One runner process and its share of the slots."""

    index: int
    name: str
    slots: dict[str, int]
    total: int = 0  # most jobs at once, all its queues together
    pid: int = 0
    overdue: set[str] = field(default_factory=set)  # members it was killed for
    running: dict[str, tuple[str, float, int]] = field(default_factory=dict)  # member -> (level, started, timeout)
    needs_recovery: bool = False  # died holding jobs not yet handed back (Redis was down)
    spawned_at: float = 0.0
    respawn_at: float = 0.0
    backoff_s: float = 0.0


class Pool:
    """Runs `processes` runner processes for `queues` until stopped."""

    def __init__(self, settings: Settings, queues: list[str], processes: int | None = None,
                 total_slots: int | None = None, burst: bool = False, max_jobs: int | None = None,
                 hooks: Callable[[Runtime], Hooks] | None = None,
                 processors: Mapping[str, Processor] | None = None) -> None:
        self.settings = settings
        self.queues = queues
        self.burst = burst
        self.max_jobs = max_jobs
        self.make_hooks = hooks or (lambda _rt: Hooks())
        self.processors = processors
        policies = [settings.queues.get(q) for q in queues]
        caps = [(p.name, p.concurrency) for p in policies]
        wanted = min(total_slots or sum(c for _q, c in caps), sum(c for _q, c in caps))
        shares = slotplan.plan(caps, min(processes or slotplan.default_processes(wanted), wanted))
        per_process = slotplan.totals(shares, wanted)
        self.queue_slots = {q: sum(s[q] for s in shares) for q, _c in caps}
        self.total_slots = sum(per_process)
        self.name = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.children = [Child(i, f"{self.name}.r{i}", s, total=n)
                         for i, (s, n) in enumerate(zip(shares, per_process, strict=True)) if n]
        self.rt = Runtime(settings)
        self.quarantine = Quarantine()  # the supervisor logs each key of the wrong type once for the pool
        self.sightings: multiprocessing.SimpleQueue[tuple[str, str]] = multiprocessing.SimpleQueue()
        self.recovery = Runner(self.rt, queues, name=self.name, processors=processors, hooks=self.make_hooks(self.rt),
                               wait_out_outages=False, rq_worker_key=keys.rq_worker(self.name),
                               quarantine=self.quarantine)
        self.levels = [level for p in policies for _p, level in p.levels()]
        self.rq_levels = self.levels  # what RQ's tools display: every level served
        self.all_levels = [level for p in settings.queues.policies for _p, level in p.levels()]
        self.stopping = 0.0  # time the first stop signal arrived
        self.cold = False
        self.claimed = multiprocessing.Value("i", 0)
        self.max_timeout_s = max(p.timeout_s for p in policies)
        self.tasks = maintenance.tasks(self)

    # -- lifecycle ---------------------------------------------------------------------------
    def run(self) -> int:
        """Supervise until stopped or (with burst / max-jobs) done; returns the exit code."""
        self.rt.redis.ping()
        self._warm_up()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        now = self._now()
        maintenance.reclaim(self, now)
        for task in self.tasks:
            if task.name in ("reconcile", "trim"):
                task.last = now
        register_queues(self.rt, self.queues)
        for child in self.children:
            self._spawn(child)
        log.info("pool %s serving %s: %d slots in %d processes", self.name, ",".join(self.queues),
                 self.total_slots, len(self.children))
        try:
            while not self._finished():
                self._reap_children()
                if self.cold:
                    self._stop_cold()
                    break
                with contextlib.suppress(redis.RedisError):
                    self._tick()
                time.sleep(TICK_S)
        finally:
            self._hear_sightings()
            with contextlib.suppress(redis.RedisError):
                maintenance.deregister(self, self.name, self.rq_levels)
        log.info("pool %s stopped", self.name)
        return 0

    def _now(self) -> float:
        secs, micros = self.rt.redis.time()
        return secs + micros / 1e6

    def _finished(self) -> bool:
        """No runner alive and none to bring back (stopping, or --max-jobs reached)."""
        if any(c.pid or c.needs_recovery for c in self.children):
            return False
        return bool(self.stopping) or self._max_reached()

    def _max_reached(self) -> bool:
        return self.max_jobs is not None and self.claimed.value >= self.max_jobs

    def _warm_up(self) -> None:
        """Import every processor, payload model and service module before forking: runners then start
        their first job at once (a lazy import in a slot would delay its start past the rate limiter's
        guard band) and share those pages copy-on-write."""
        reg = self.settings.queues
        if self.processors is None:
            reg.processors(self.queues)  # models and processors; a declaration that cannot be imported: exit 2 now
        else:  # a test's own processors: the models still validate every payload
            for name in self.queues:
                for job in reg.get(name).jobs:
                    reg.model(job)
        import jobctl.services  # noqa: F401

    def _tick(self) -> None:
        self._hear_sightings()
        self._service_children()
        self._read_running()
        now = self._now()
        self._enforce_timeouts(now)
        maintenance.run_due([t for t in self.tasks if not (self.stopping and t.name == "promote")], now)
        if self.burst and not self.stopping and self._drained():
            self._begin_stop()
        if self.stopping and time.time() - self.stopping > self.max_timeout_s + BACKSTOP_S:
            self.cold = True

    def _hear_sightings(self) -> None:
        """Log the keys of the wrong type runners met (each once for the pool)."""
        while not self.sightings.empty():
            self.quarantine.met(*self.sightings.get())

    def promote_due(self) -> int:
        """Move due delayed jobs of the pool's queues; returns how many."""
        from jobctl.delayed import promote

        return promote(self.rt, self.queues, self.recovery.hooks, self.quarantine.met)[0]

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
            child.pid, child.spawned_at = pid, time.time()
            child.overdue = set()
            return
        code = 1
        try:
            code = self._child_main(child)
        except Stuck as exc:
            log.warning("runner %s: %s", child.name, exc)
            code = STUCK_EXIT
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
        runner = Runner(rt, self.queues, name=child.name, hooks=self.make_hooks(rt), processors=self.processors,
                        slots=child.slots, total_slots=child.total, rq_worker_key=keys.rq_worker(self.name),
                        quarantine=Quarantine(lambda key, kind: self.sightings.put((key, kind))))

        def stop(_s: int, _f: FrameType | None) -> None:
            runner.stopping = True

        signal.signal(signal.SIGTERM, stop)
        while not (self.stopping or runner.stopping):
            try:
                runner.work(claim=self._claim, unclaim=self._unclaim)
                return 0
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, ServiceUnavailable) as exc:
                log.warning("runner %s: Redis unavailable (%s); waiting", child.name, type(exc).__name__)
                time.sleep(1.0)
        return 0

    def _claim(self, n: int) -> int:
        if self.max_jobs is None:
            return n
        with self.claimed.get_lock():
            granted = max(0, min(n, self.max_jobs - self.claimed.value))
            self.claimed.value += granted
            return granted

    def _unclaim(self, n: int) -> None:
        if self.max_jobs is not None:
            with self.claimed.get_lock():
                self.claimed.value -= n

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
            failed = code not in (0, STUCK_EXIT)
            child.backoff_s = min(max(1.0, child.backoff_s * 2), 30.0) if failed and quick else 0.0
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
        """Settle every job a dead runner still held: put back (cold stop, or a bystander of a job the
        runner was killed for), a timeout for that job, else a failed attempt. False if Redis is down."""
        try:
            held = self.rt.redis.hgetall(keys.active(child.name))
            for raw_id, raw in held.items():
                job_id, (level, _started, _timeout, execution) = as_text(raw_id), _entry(as_text(raw))
                loaded = self.recovery.load(job_id, level, execution)
                if loaded is None:
                    self.rt.redis.hdel(keys.active(child.name), job_id)
                    continue
                taken, _owner = loaded
                overdue = taken.member in child.overdue
                error: BaseException = (JobTimeout(f"job exceeded its {taken.timeout_s}s timeout (process killed)")
                                        if overdue else WorkerDied("the runner process died while running the job"))
                put_back = requeue or (bool(child.overdue) and not overdue)
                decision = self.recovery.fail(taken, error, None, owner=child.name, requeue=put_back)
                log.warning("job %s of %s: %s -> %s", printable(job_id), taken.queue, error,
                            "put back" if put_back else (decision.action if decision else "already handled"))
            self.rt.redis.delete(keys.step(child.name))
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
                level, started, timeout, execution = _entry(as_text(raw))
                timeout_s = int(timeout) if timeout.isdigit() else self.settings.queues.level_owner(level)[0].timeout_s
                member = f"{as_text(raw_id)}:{execution}" if execution else as_text(raw_id)
                child.running[member] = (level, float(started or 0), timeout_s)

    def _enforce_timeouts(self, now: float) -> None:
        """Kill a runner whose job overran its timeout and the runner's own interruption (Redis time)."""
        for child in self.children:
            for member, (_level, started, timeout_s) in child.running.items():
                if child.pid and started and now - started > timeout_s + BACKSTOP_S and member not in child.overdue:
                    owner = self.rt.redis.hget(keys.job(member.partition(":")[0]), "worker_name")
                    if owner != child.name.encode():
                        continue  # deleted or taken over meanwhile: not a reason to kill anything
                    log.warning("job %s ran past its %ds timeout; killing runner %s", printable(member), timeout_s,
                                child.name)
                    child.overdue.add(member)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signal.SIGKILL)

    def _drained(self) -> bool:
        if any(c.running for c in self.children):
            return False
        with self.rt.redis.pipeline(transaction=True) as pipe:  # one consistent reading of all levels
            for level in self.levels:
                pipe.llen(keys.queue_list(level))
                pipe.zcard(keys.wip(level))
            counts = pipe.execute(raise_on_error=False)
        for level, waiting, running in zip(self.levels, counts[::2], counts[1::2], strict=True):
            self._note_broken(level, waiting, running)  # a key of the wrong type holds nothing to wait for,
            if isinstance(running, Exception):          # and a level without a started registry takes no job
                continue
            if running or (isinstance(waiting, int) and waiting):
                return False
        return self.promote_due() == 0

    def _note_broken(self, level: str, *replies: object) -> None:
        """Report the level's keys whose reading failed on their type."""
        for key, reply in zip((keys.queue_list(level), keys.wip(level)), replies, strict=True):
            if isinstance(reply, redis.ResponseError):
                self.quarantine.met(key, as_text(self.rt.redis.type(key)))


def _entry(raw: str) -> tuple[str, str, str, str]:
    """(level, started, timeout, execution) from an active-hash value."""
    level, started, timeout, execution = ([*raw.split("|"), "", "", ""])[:4]
    return level, started, timeout, execution
