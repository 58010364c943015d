"""A pool supervisor's periodic duties, each a named task with its own interval.

| task | every | what |
| --- | --- | --- |
| promote | 1 s | move due delayed jobs and retries to their queues |
| heartbeat | ttl / 3 (≤ 5 s) | extend the leases of running jobs; refresh this pool's worker entries |
| reclaim | ttl / 3 (≤ 5 s) | take back jobs whose lease expired (their pool died) and dead pools' worker entries |
| reconcile | 60 s | record failures the dead-letter hook could not (the database was down then) |
| trim | 60 s | apply completed-job retention to what is already there |
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy.exc import SQLAlchemyError

from jobctl import keys
from jobctl.errors import JobctlError, printable
from jobctl.jobs import rq_time
from jobctl.runtime import out_of_memory
from jobctl.scripts import Expired, Heartbeat, json_arg
from jobctl.worker import RQ_MARGIN_S, as_text

if TYPE_CHECKING:
    from jobctl.pool import Pool

log = logging.getLogger("jobctl.pool")
RECONCILE_BATCH = 500  # per pass: the supervisor must keep heart-beating (a backlog takes a few passes)


class WorkerDied(Exception):
    """The process running a job exited, or its pool stopped heart-beating, without finishing it."""


class OutageLog:
    """A Redis fault that makes maintenance fail, logged once when it starts and once when it ends (not
    on every tick): Redis out of memory (noeviction) refuses every heartbeat and promotion, which would
    otherwise go unseen while `stats` shows no workers and due retries wait."""

    def __init__(self, client: Callable[[], redis.Redis]) -> None:
        self.client = client
        self.failing: set[str] = set()  # tasks whose last run failed
        self.since = 0.0
        self.skipped = 0
        self.what = ""

    def failed(self, task: str, exc: redis.RedisError, now: float) -> None:
        """Record a failed run; log only the first of an outage."""
        self.skipped += 1
        if self.failing:
            self.failing.add(task)
            return
        self.failing, self.since, self.skipped = {task}, now, 1
        if isinstance(exc, redis.OutOfMemoryError):
            self.what = "out of memory"
            reason = str(out_of_memory(self.client()))
        else:
            self.what = type(exc).__name__
            reason = f"Redis error ({type(exc).__name__}: {printable(str(exc).partition(' script: ')[0])[:200]})"
        log.warning("maintenance %s failed: %s; heartbeats and the promotion of due jobs are skipped until it "
                    "ends (logged once)", task, reason)

    def succeeded(self, task: str, now: float) -> None:
        """Record a successful run; log the end of an outage once every failing task ran again."""
        if task not in self.failing:
            return
        self.failing.discard(task)
        if not self.failing:
            log.warning("maintenance runs again: the Redis fault (%s) ended after %.0f s; %d run(s) were skipped",
                        self.what, max(0.0, now - self.since), self.skipped)


@dataclass
class Task:
    """One periodic duty."""

    name: str
    interval_s: float
    run: Callable[[float], object]  # takes Redis server time
    last: float = 0.0
    outages: OutageLog | None = None  # shared by a pool's tasks

    def due(self, now: float) -> bool:
        """Whether the interval has passed since the last run."""
        return now - self.last >= self.interval_s


def tasks(pool: Pool) -> list[Task]:
    """The pool's maintenance tasks, in the order they run within a tick."""
    beat = min(5.0, pool.settings.heartbeat_ttl_s / 3)
    outages = OutageLog(lambda: pool.rt.redis)
    return [Task("promote", 1.0, lambda _now: pool.promote_due(), outages=outages),
            Task("heartbeat", beat, lambda now: heartbeat(pool, now), outages=outages),
            Task("reclaim", beat, lambda now: reclaim(pool, now), outages=outages),
            Task("reconcile", 60.0, lambda _now: reconcile(pool), last=0.0, outages=outages),
            Task("trim", 60.0, lambda _now: trim(pool), outages=outages)]


def heartbeat(pool: Pool, now: float) -> None:
    """Extend running jobs' leases and refresh the pool's entries (jobctl's and RQ's)."""
    members = [[level, member] for c in pool.children for member, (level, _s, _t) in c.running.items()]
    ttl = pool.settings.heartbeat_ttl_s
    if members:
        pool.rt.scripts.run(Heartbeat(lease_s=ttl, rq_margin_s=RQ_MARGIN_S, members=json_arg(members)))
    state = "stopping" if pool.stopping else ("busy" if members else "idle")
    stamp = rq_time(datetime.fromtimestamp(now, UTC))
    with pool.rt.redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.worker(pool.name), mapping={
            "host": socket.gethostname(), "pid": os.getpid(), "queues": ",".join(pool.queues),
            "concurrency": pool.total_slots, "slots": json_arg(pool.queue_slots), "state": state,
            "heartbeat": now, "processes": len(pool.children), "runners": ",".join(c.name for c in pool.children)})
        pipe.expire(keys.worker(pool.name), ttl)
        key = keys.rq_worker(pool.name)
        pipe.hset(key, mapping={"hostname": socket.gethostname(), "pid": os.getpid(), "state": state,
                                "queues": ",".join(pool.rq_levels), "last_heartbeat": stamp, "version": "jobctl",
                                "python_version": "jobctl pool"})
        pipe.hsetnx(key, "birth", stamp)
        pipe.expire(key, ttl)
        pipe.sadd(keys.rq_workers(), key)
        for level in pool.rq_levels:
            pipe.sadd(keys.rq_workers_of(level), key)
        pipe.zadd(keys.workers(), {pool.name: now})
        pipe.execute()


def deregister(pool: Pool, name: str, levels: list[str]) -> None:
    """Remove a pool's worker entries, jobctl's and RQ's."""
    key = keys.rq_worker(name)
    with pool.rt.redis.pipeline(transaction=False) as pipe:
        pipe.delete(keys.worker(name), key)
        pipe.zrem(keys.workers(), name)
        pipe.srem(keys.rq_workers(), key)
        for level in levels:
            pipe.srem(keys.rq_workers_of(level), key)
        pipe.execute()


def reclaim(pool: Pool, now: float) -> None:
    """Take back jobs whose lease expired, and forget pools that stopped heart-beating."""
    res = pool.rt.scripts.run(Expired(rq_margin_s=RQ_MARGIN_S, levels=json_arg(pool.levels)))
    for level_raw, member_raw in zip(res[::2], res[1::2], strict=True):
        level, member = as_text(level_raw), as_text(member_raw)
        job_id, _, execution = member.partition(":")
        loaded = pool.recovery.load(job_id, level)  # its execution as the job hash records it
        if loaded is None:
            pool.rt.redis.zrem(keys.wip(level), member)  # the job itself is gone
            continue
        taken, owner = loaded
        if not execution or taken.execution != execution:
            continue  # a foreign worker's entry (plain RQ): RQ's own cleanup handles it
        lost = WorkerDied(f"worker {owner or '?'} stopped heart-beating while running the job")
        decision = pool.recovery.fail(taken, lost, None, owner=owner or pool.name, expired_only=True)
        if decision:
            log.warning("job %s of %s reclaimed from %s -> %s", printable(job_id), taken.queue, printable(owner),
                        decision.action)
    stale: list[Any] = pool.rt.redis.zrangebyscore(keys.workers(), "-inf", now - pool.settings.heartbeat_ttl_s)
    dead = [as_text(n) for n in stale]
    for name in dead:
        deregister(pool, name, pool.all_levels)


def reconcile(pool: Pool) -> None:
    """Record failures the dead-letter hook could not (the database was down then)."""
    from jobctl.deadletter import reconcile as run

    try:
        if n := run(pool.rt, limit=RECONCILE_BATCH):
            log.info("recorded %d dead letter(s) missed earlier", n)
    except (JobctlError, SQLAlchemyError) as exc:
        log.warning("dead-letter reconciliation skipped: %s", str(exc).splitlines()[0][:200])


def trim(pool: Pool) -> None:
    """Completed-job retention."""
    from jobctl.retention import trim_finished

    trim_finished(pool.rt)


def run_due(task_list: list[Task], now: float) -> None:
    """Run every due task; one that fails on Redis is retried on the next tick (a fault is logged once
    when it starts and once when it ends)."""
    for task in task_list:
        if task.due(now):
            try:
                task.run(now)
                task.last = now
            except redis.RedisError as exc:
                if task.outages is None:
                    log.warning("maintenance %s skipped (%s)", task.name, type(exc).__name__)
                else:
                    task.outages.failed(task.name, exc, now)
            else:
                if task.outages is not None:
                    task.outages.succeeded(task.name, now)
