"""Concurrency caps of the slot runtime: per queue in a multi-queue pool, per runner, and global across pools."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from jobctl import config, keys
from jobctl.context import JobContext
from jobctl.producer import enqueue, enqueue_many
from jobctl.runtime import Runtime
from jobctl.worker import Runner, as_text
from tests.support.jobs import Pools, hook, push
from tests.support.rq_tools import wait_for

ROOT = Path(__file__).resolve().parents[1]
Start = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def pool(redis_url: str, tmp_path: Path) -> Iterator[Start]:
    """Starts harness pools (`--track`ed) in their own process groups; kills what is left at the end."""
    pools = Pools(redis_url, tmp_path)

    def start(queues: str, processes: int, *extra: str, toml: Path | None = None) -> subprocess.Popen[bytes]:
        return pools.start(queues, processes, "--track", *(["--config", str(toml)] if toml else []), *extra)

    yield start
    pools.kill_all()


def lines(client: redis.Redis, key: str) -> list[str]:
    return [as_text(v) for v in client.lrange(key, 0, -1)]


def peaks(client: redis.Redis) -> dict[str, int]:
    rows: Any = client.zrange("test:peak", 0, -1, withscores=True)
    return {as_text(k): int(v) for k, v in rows}


def spans(client: redis.Redis, queue: str) -> list[tuple[float, float]]:
    rows = [line.split() for line in lines(client, "test:spans")]
    return [(float(r[1]), float(r[2])) for r in rows if r[0] == queue]


def done(client: redis.Redis) -> set[str]:
    return set(lines(client, "test:done"))


def _all_queues(rt: Runtime) -> str:
    return ",".join(rt.settings.queues.names())


@pytest.mark.parametrize("queues", ["webhook-retry,push", "all"])
def test_queue_cap_holds_across_a_multi_queue_pool(rt: Runtime, pool: Start, queues: str) -> None:
    """12 one-second webhooks with 2 processes and other queues served: exactly 3 at once, pushes alongside."""
    hooks = [e.id for e in enqueue_many(rt, "webhook-retry", "retry-webhook", [hook(sleep=1.0, i=i)
                                                                                for i in range(12)])]
    pushes = [e.id for e in enqueue_many(rt, "push", "send-push", [push(sleep=0.5, i=i) for i in range(16)])]
    p = pool(_all_queues(rt) if queues == "all" else queues, 2, "--burst")
    assert p.wait(timeout=40) == 0
    assert done(rt.redis) == set(hooks + pushes)
    peak = peaks(rt.redis)
    assert peak["webhook-retry"] == 3  # never more, and reached
    assert peak["webhook-retry:wip"] <= 3  # nor held (taken, not yet finished) beyond the cap
    assert peak["push"] > 1
    webhook, pushed = spans(rt.redis, "webhook-retry"), spans(rt.redis, "push")
    assert any(ps < we and ws < pe for ws, we in webhook for ps, pe in pushed)  # they ran side by side
    assert max(e for _s, e in webhook) - min(s for s, _e in webhook) >= 3.9  # 4 rounds of 3


class Meter:
    """Counts running jobs per queue inside processors (thread-safe), keeping the peaks and the order."""

    def __init__(self, sleep_s: float) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.order: list[str] = []
        self.sleep_s = sleep_s

    def __call__(self, payload: dict[str, Any], ctx: JobContext) -> None:
        data = payload.get("data") or payload.get("eventData") or {}
        with self.lock:
            self.order.append(str(data.get("n", "")))
            for key in (ctx.queue, "*"):
                self.running[key] = self.running.get(key, 0) + 1
                self.peak[key] = max(self.peak.get(key, 0), self.running[key])
        time.sleep(self.sleep_s)
        with self.lock:
            for key in (ctx.queue, "*"):
                self.running[key] -= 1


def _runtime(rt: Runtime, tmp_path: Path, body: str) -> Runtime:
    (tmp_path / "jobctl.toml").write_text(body)
    return Runtime(config.load(env={"HOME": str(tmp_path)}, config=tmp_path / "jobctl.toml",
                               redis_url=rt.settings.redis_url))


@pytest.mark.parametrize(("slots", "total", "expected"), [
    ({"webhook-retry": 2, "push": 3}, None, {"webhook-retry": 2, "push": 3, "*": 5}),
    ({"webhook-retry": 2, "push": 3}, 4, {"*": 4}),
    ({"webhook-retry": 1, "push": 1}, None, {"webhook-retry": 1, "push": 1, "*": 2}),
    ({"webhook-retry": 3, "push": 0}, None, {"webhook-retry": 3, "*": 3}),  # no slot: push is not served
])
def test_runner_caps_each_queue_at_its_slots(rt: Runtime, tmp_path: Path, slots: dict[str, int],
                                             total: int | None, expected: dict[str, int]) -> None:
    rt = _runtime(rt, tmp_path, '[queues.push]\nrate_limit = "none"\n')
    enqueue_many(rt, "webhook-retry", "retry-webhook", [hook(n=f"w{i}") for i in range(8)])
    enqueue_many(rt, "push", "send-push", [push(n=f"p{i}") for i in range(9)])
    meter = Meter(0.15)
    runner = Runner(rt, ["webhook-retry", "push"], processors={"retry-webhook": meter, "send-push": meter},
                    services=object(), slots=slots, total_slots=total)
    t0 = time.time()
    runner.work(burst=True)
    assert time.time() - t0 < 8
    for key, cap in expected.items():
        assert meter.peak.get(key, 0) == cap, (key, meter.peak)
    for queue, cap in slots.items():
        assert meter.peak.get(queue, 0) <= cap
    assert len(meter.order) == 8 + (9 if slots["push"] else 0)


def test_priority_then_fifo_across_queues_with_one_slot(rt: Runtime) -> None:
    jobs = [("webhook-retry", "w1", None), ("push", "p1", None), ("webhook-retry", "w2", 1), ("push", "p2", 5),
            ("webhook-retry", "w3", 2), ("push", "p3", None), ("webhook-retry", "w4", 1)]
    for queue, n, prio in jobs:
        if queue == "push":
            enqueue(rt, queue, "send-push", push(n=n), priority=prio)
        else:
            enqueue(rt, queue, "retry-webhook", hook(n=n), priority=prio)
    meter = Meter(0.0)
    Runner(rt, ["webhook-retry", "push"], processors={"retry-webhook": meter, "send-push": meter},
           services=object(), slots={"webhook-retry": 3, "push": 3}, total_slots=1).work(burst=True)
    # priority 1: w2 w4; priority 2: push's own level (p1 p3) before webhook-retry.p2 (push ranks first); 3; 5
    assert meter.order == ["w2", "w4", "p1", "p3", "w3", "w1", "p2"]
    assert meter.peak["*"] == 1


GLOBAL_TOML = ('[settings]\nheartbeat_ttl_s = 3\n\n'
               '[queues.webhook-retry]\nglobal_concurrency = 2\nconcurrency = 3\nbackoff = "none"\n')


def test_global_concurrency_holds_across_two_pools(rt: Runtime, pool: Start, tmp_path: Path) -> None:
    """Pool A (3 slots) takes 3 jobs then leaves (--max-jobs); pool B (3 slots) runs the rest: 2 at once in all."""
    (tmp_path / "jobctl.toml").write_text(GLOBAL_TOML)
    toml = tmp_path / "jobctl.toml"
    ids = [e.id for e in enqueue_many(rt, "webhook-retry", "retry-webhook", [hook(sleep=2.5, i=i) for i in range(3)])]
    ids += [e.id for e in enqueue_many(rt, "webhook-retry", "retry-webhook", [hook(sleep=0.5, j=i) for i in range(7)])]
    a = pool("webhook-retry", 1, "--max-jobs", "3", toml=toml)
    wait_for(lambda: rt.redis.get("test:running:webhook-retry") == b"2", 15, "pool A to run 2 jobs")
    b = pool("webhook-retry", 1, "--burst", toml=toml)  # A's third job comes from its own finish, atomically
    assert a.wait(timeout=40) == 0 and b.wait(timeout=40) == 0
    assert done(rt.redis) == set(ids)
    peak = peaks(rt.redis)
    assert peak["webhook-retry"] == 2  # reached, never exceeded, though each pool has 3 slots
    assert peak["webhook-retry:wip"] <= 2
    by_pool: dict[str, list[tuple[float, float]]] = {}
    for row in lines(rt.redis, "test:spans"):
        _queue, start, end, supervisor = row.split()
        by_pool.setdefault(supervisor, []).append((float(start), float(end)))
    assert sorted(len(v) for v in by_pool.values()) == [3, 7]
    first, second = by_pool[str(a.pid)], by_pool[str(b.pid)]
    assert any(s1 < e2 and s2 < e1 for s1, e1 in first for s2, e2 in second)  # the cap was shared at some point


def test_a_killed_pools_slots_come_back_after_its_leases_expire(rt: Runtime, pool: Start, tmp_path: Path) -> None:
    (tmp_path / "jobctl.toml").write_text(GLOBAL_TOML)
    toml = tmp_path / "jobctl.toml"
    long = [enqueue(rt, "webhook-retry", "retry-webhook", hook(sleep=60, once=True, n=i)).id for i in range(2)]
    short = [e.id for e in enqueue_many(rt, "webhook-retry", "retry-webhook", [hook(sleep=0.3, i=i)
                                                                                 for i in range(4)])]
    a = pool("webhook-retry", 1, toml=toml)
    wait_for(lambda: rt.redis.get("test:running:webhook-retry") == b"2", 15, "pool A to run the 2 long jobs")
    time.sleep(1.0)  # A has a third slot and work queued, but the global cap holds it at 2
    assert rt.redis.llen("test:starts") == 2
    os.killpg(a.pid, signal.SIGKILL)
    a.wait()
    rt.redis.delete("test:running:webhook-retry", "test:peak")  # A's processors died without counting down
    b = pool("webhook-retry", 1, "--burst", toml=toml)
    assert b.wait(timeout=40) == 0
    assert done(rt.redis) == set(long + short)
    peak = peaks(rt.redis)
    assert peak["webhook-retry"] == 2
    # at every start in B, the started registry (A's dead leases included) held at most 2: B waited for them
    assert peak["webhook-retry:wip"] <= 2
    for jid in long:
        h = rt.redis.hmget(keys.job(jid), ["status", "jc_attempt", "jc_error"])
        assert (h[0], h[1]) == (b"finished", b"2")
        assert b"stopped heart-beating" in (h[2] or b"")  # reclaimed from A, not lost
