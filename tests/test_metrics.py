"""metrics.snapshot against a real Redis: counters from real workers, fixed cost, no writes, Prometheus."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from jobctl import config, control, db, keys, metrics
from jobctl.config import Settings
from jobctl.context import JobContext
from jobctl.errors import PermanentFailure
from jobctl.jobs import job_fields, new_id
from jobctl.producer import When, enqueue
from jobctl.runtime import Runtime
from jobctl.worker import Runner

Q, JOB = "data-cleanup", "cleanup-audit-logs"
TOML = f'[queues.{Q}]\nattempts = 3\nbackoff = "none"\n'


@pytest.fixture
def crt(redis_url: str, tmp_path: Path) -> Runtime:
    """A runtime whose data-cleanup queue retries 3 times at once."""
    (tmp_path / "jobctl.toml").write_text(TOML)
    env = {"JOBCTL_REDIS_URL": redis_url, "JOBCTL_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    return Runtime(config.load(env=env, cwd=tmp_path))


def mixed(payload: dict[str, Any], ctx: JobContext) -> dict[str, int]:
    """retentionDays selects: 1 ok, 2 fails once, 3 permanent failure, 4 always fails."""
    kind = payload["retentionDays"]
    time.sleep(0.01)
    if kind == 2 and ctx.attempt == 1 or kind == 4:
        raise ValueError("flaky")
    if kind == 3:
        raise PermanentFailure("bad input")
    return {"deletedCount": 0}


def run_mix(rt: Runtime) -> None:
    for kind in (1, 1, 1, 2, 2, 3, 4):
        enqueue(rt, Q, JOB, {"retentionDays": kind})
    Runner(rt, [Q], processors={JOB: mixed}, services=object()).work(burst=True)


def test_counters_after_a_known_mix(crt: Runtime) -> None:
    run_mix(crt)
    q = metrics.snapshot(crt, [Q]).queues[0]
    assert (q.completed_1h, q.failed_1h, q.retried_1h) == (5, 2, 4)
    assert q.avg_ms_1h is not None and 10 <= q.avg_ms_1h < 1000
    assert (q.waiting, q.active, q.delayed) == (0, 0, 0)
    assert q.oldest_waiting_s is None


def test_window_is_the_last_hour(crt: Runtime) -> None:
    run_mix(crt)
    later = time.time() + 3600 + 61
    assert metrics.snapshot(crt, [Q], now=later).queues[0].completed_1h == 0


def test_counts_levels_workers_paused_and_oldest(rt: Runtime) -> None:
    enqueue(rt, "email", "send-email", _email())
    enqueue(rt, "email", "send-email", _email(), priority=4)
    enqueue(rt, "email", "send-email", _email(), when=When(delay_s=300))
    rt.redis.hset(keys.worker("pool-a"), mapping={"queues": "email,push", "concurrency": 30, "processes": 4,
                                                  "slots": '{"email": 10, "push": 20}'})
    rt.redis.zadd(keys.workers(), {"pool-a": time.time(), "gone": time.time() - 999})
    control.set_paused(rt, ["push"], True)
    snap = metrics.snapshot(rt, ["email", "push"], now=time.time() + 100)
    email, push = snap.queues
    assert (email.waiting, email.delayed, email.workers, email.paused) == (2, 1, 4, False)
    assert email.oldest_waiting_s is not None and 99 <= email.oldest_waiting_s <= 102
    assert (push.waiting, push.workers, push.paused) == (0, 4, True)
    assert (email.slots, push.slots) == (10, 20)
    assert snap.scheduler_alive is False


def test_dead_letters_from_the_database(rt: Runtime) -> None:
    q = metrics.snapshot(rt, ["email"]).queues[0]
    assert (q.dead_letters, q.dead_letters_1h) == (0, 0)  # no database file: nothing recorded
    assert not Path(rt.settings.database_url.removeprefix("sqlite:///")).exists()  # and none created
    engine = db.engine_for(rt.settings.database_url)
    db.init_db(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for i, status in enumerate(("open", "open", "replayed")):
            conn.execute(db.dead_letters.insert().values(queue="email", job="send-email", job_id=f"j{i}",
                                                         data="{}", status=status, failed_at=now))
    q = metrics.snapshot(rt, ["email"]).queues[0]
    assert (q.dead_letters, q.dead_letters_1h) == (2, 2)
    db.dispose_engines()


def test_unreachable_database_is_null_not_an_error(rt: Runtime) -> None:
    broken = Runtime(replace(rt.settings, database_url="postgresql://u:s3cret@127.0.0.1:1/x"))
    snap = metrics.snapshot(broken, ["email"])
    assert snap.queues[0].dead_letters is None
    assert snap.dead_letters_error and "s3cret" not in snap.dead_letters_error


def _email() -> dict[str, Any]:
    return {"to": "a@example.com", "subject": "Hi", "template": "welcome", "data": {"name": "A"}, "lang": "en"}


def _monitor(url: str, action: Callable[[], None]) -> list[str]:
    """Commands the server received on this database while `action` ran (MONITOR)."""
    db_no = int(url.rsplit("/", 1)[1])
    seen: list[str] = []
    ready = threading.Event()

    def listen() -> None:
        with redis.Redis.from_url(url).monitor() as m:
            ready.set()
            for c in m.listen():
                if "__stop__" in c["command"]:
                    return
                if int(c["db"]) == db_no:
                    seen.append(c["command"])

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    ready.wait(5)
    action()
    redis.Redis.from_url(url).echo("__stop__")
    t.join(10)
    return seen


def test_reading_stats_never_writes(crt: Runtime, redis_url: str) -> None:
    run_mix(crt)
    enqueue(crt, Q, JOB, {"retentionDays": 1})
    fresh = Runtime(crt.settings)
    seen = _monitor(redis_url, lambda: metrics.snapshot(fresh) and metrics.exposition(fresh))
    names = {c.split()[0].strip('"').upper() for c in seen}
    assert {"LLEN", "HGETALL"} <= names
    table = crt.redis.command()
    assert all(n.lower() in table for n in names)
    writes = {n for n in names if "write" in table[n.lower()]["flags"]}
    assert not writes, f"stats issued write commands: {writes}"


def fill(rt: Runtime, queue: str, job: str, payload: dict[str, Any], n: int) -> None:
    """n real-shaped waiting jobs (the hashes and list ENQUEUE writes), pipelined."""
    policy = rt.settings.queues.get(queue)
    fields = job_fields(policy, job, payload, policy.priority, datetime.now(UTC))
    for start in range(0, n, 5000):
        with rt.redis.pipeline(transaction=False) as pipe:
            ids = [new_id() for _ in range(min(5000, n - start))]
            for jid in ids:
                pipe.hset(keys.job(jid), mapping=fields)
            pipe.rpush(keys.queue_list(policy.level()), *ids)
            pipe.execute()


def median_ms(rt: Runtime, runs: int = 30) -> float:
    metrics.snapshot(rt, dead_letters=False)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        metrics.snapshot(rt, dead_letters=False)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def test_latency_does_not_grow_with_jobs(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    fill(rt, Q, JOB, {}, 1_000)
    small = median_ms(rt)
    fill(rt, Q, JOB, {}, 99_000)
    assert metrics.snapshot(rt, [Q]).queues[0].waiting == 100_000
    large = median_ms(rt)
    with capsys.disabled():
        print(f"\nstats latency: 1k waiting {small:.2f} ms, 100k waiting {large:.2f} ms")
    assert large <= 2 * small + 1.0


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_prometheus_exposition(crt: Runtime) -> None:
    run_mix(crt)
    enqueue(crt, Q, JOB, {"retentionDays": 1})
    fams = _families(metrics.exposition(crt).decode())
    assert fams["jobctl_up"].samples[0].value == 1
    by_queue = {s.labels["queue"]: s.value for s in fams["jobctl_queue_completed_1h"].samples}
    assert by_queue[Q] == 5
    assert {s.labels["queue"]: s.value for s in fams["jobctl_queue_waiting"].samples}[Q] == 1
    assert {s.labels["queue"]: s.value for s in fams["jobctl_queue_failed_1h"].samples}[Q] == 2
    assert {s.labels["queue"]: s.value for s in fams["jobctl_queue_dead_letters"].samples}[Q] == 0  # no store yet


def test_prometheus_redis_down(settings: Settings) -> None:
    down = Runtime(replace(settings, redis_url="redis://127.0.0.1:1/0"))
    fams = _families(metrics.exposition(down).decode())
    assert fams["jobctl_up"].samples[0].value == 0
    assert "jobctl_queue_waiting" not in fams


@pytest.fixture
def served(rt: Runtime) -> Iterator[int]:
    server, thread = metrics.serve(rt, "127.0.0.1", 0)
    yield int(server.server_port)
    server.shutdown()
    thread.join(5)


def test_prometheus_http(rt: Runtime, served: int) -> None:
    enqueue(rt, "email", "send-email", _email())
    text = requests.get(f"http://127.0.0.1:{served}/metrics", timeout=5).text
    waiting = {s.labels["queue"]: s.value for s in _families(text)["jobctl_queue_waiting"].samples}
    assert waiting["email"] == 1


def test_stats_flag_a_queue_at_its_rate_limit(rt: Runtime) -> None:
    from jobctl import ratelimit

    now_us = int(rt.redis.time()[0] * 1e6)
    rt.redis.zadd(keys.rate("push"), {f"j{i}": now_us - 1000 for i in range(30)})
    rt.redis.zadd(keys.rate("email:send-email"), {f"e{i}": now_us - 1000 for i in range(99)})
    flags = {q.name: q.rate_limited for q in metrics.snapshot(rt, dead_letters=False).queues}
    assert flags["push"] is True and flags["email"] is False  # 99 of 100 per job name
    rt.redis.zadd(keys.rate("email:send-email"), {"e99": now_us - 1000})
    ratelimit.throttle(rt.redis, "webhook-retry", 5)
    flags = {q.name: q.rate_limited for q in metrics.snapshot(rt, dead_letters=False).queues}
    assert (flags["email"], flags["webhook-retry"], flags["image-processing"]) == (True, True, False)
