"""metrics.snapshot against a real Redis: counters from real workers, fixed cost, no writes, Prometheus."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
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
from jobctl.scripts import DURATIONS_TTL_S
from jobctl.worker import METRICS_TTL_S, Done, Runner
from tests.support.keytable import undocumented_keys
from tests.support.rq_tools import wait_for

ROOT = Path(__file__).resolve().parents[1]

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


def _monitor(url: str, action: Callable[[], object]) -> list[str]:
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
    crt.redis.hset(keys.worker("pool-a"), mapping={"queues": Q, "runners": "pool-a.1,pool-a.2",
                                                   "heartbeat": time.time()})
    crt.redis.zadd(keys.workers(), {"pool-a": time.time()})
    fresh = Runtime(crt.settings)
    seen = _monitor(redis_url, lambda: metrics.snapshot(fresh) and metrics.exposition(fresh))
    names = {c.split()[0].strip('"').upper() for c in seen}
    assert {"LLEN", "HGETALL", "HLEN"} <= names  # HLEN: the pools' running jobs
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


# -- percentiles and the duration histogram ---------------------------------------------------------

@pytest.mark.parametrize(("ms", "bucket"), [
    (0.0, 0), (0.4, 0), (1.0, 0), (1.001, 1), (2.0, 1), (2.5, 2), (4.0, 2), (4.01, 3), (1024.0, 10),
    (1025.0, 11), (2.0 ** 23, 23), (2.0 ** 23 + 1, 24), (1e12, 24),
])
def test_bucket_of(ms: float, bucket: int) -> None:
    assert metrics.bucket_of(ms) == bucket


def _counts(**at: int) -> list[int]:
    out = [0] * (metrics.DURATION_BUCKETS + 1)
    for name, n in at.items():
        out[int(name[1:])] = n
    return out


@pytest.mark.parametrize(("counts", "q", "expected"), [
    ([], 0.5, None),
    (_counts(), 0.95, None),
    (_counts(b0=4), 0.5, 0.5),  # (0, 1] ms
    (_counts(b5=10), 0.5, 24.0),  # (16, 32]: halfway
    (_counts(b5=10), 0.95, 31.2),
    (_counts(b3=9, b10=1), 0.5, 6.2),  # rank 5 of 9 in (4, 8]
    (_counts(b3=9, b10=1), 0.95, 768.0),  # rank 9.5: half into (512, 1024]
    (_counts(b3=9, b10=1), 0.0, 4.0),  # the lower bound of the first bucket with a count
    (_counts(b24=1), 0.5, 2.0 ** 23),  # the open bucket reads as its lower bound
])
def test_percentile_estimate(counts: list[int], q: float, expected: float | None) -> None:
    assert metrics.percentile_ms(counts, q) == expected


@pytest.mark.parametrize(("per_min", "now_s", "expected"), [
    ([0] * 60, 30.0, 0.0),
    ([0] * 59 + [60], 30.0, 2.0),  # 60 jobs in the 30 s of this minute so far
    ([0] * 55 + [60, 60, 60, 60, 30], 30.0, 1.0),  # 270 jobs in 4.5 minutes
    ([0] * 57 + [60, 0, 0], 0.0, 0.5),  # the span starts at the first busy minute: 60 jobs in 120 s
    ([100] * 55 + [0] * 5, 42.0, 0.0),  # older than 5 minutes does not count
])
def test_current_rate(per_min: list[int], now_s: float, expected: float) -> None:
    assert metrics.current_rate(per_min, now_s) == expected


@pytest.mark.parametrize(("waiting", "rate", "expected"), [(0, 0.0, 0.0), (0, 5.0, 0.0), (10, 0.0, None),
                                                          (100, 2.0, 50.0), (7, 3.0, 2.3)])
def test_drain_time(waiting: int, rate: float, expected: float | None) -> None:
    assert metrics.drain_s(waiting, rate) == expected


def test_step_files_durations_where_python_reads_them(crt: Runtime) -> None:
    """step.lua's bucketing (frexp) and metrics.bucket_of agree, at the bounds too."""
    durations = [0.0, 0.5, 1.0, 1.001, 2.0, 3.0, 4.0, 1024.0, 1025.0, 2.0 ** 23, 2.0 ** 23 + 1, 5e9]
    for _ in durations:
        enqueue(crt, Q, JOB, {"retentionDays": 1})
    runner = Runner(crt, [Q], processors={JOB: mixed}, services=object(), slots={Q: len(durations)})
    taken = runner.step([], len(durations)).taken
    assert len(taken) == len(durations)
    runner.step([Done(t, "null", ms) for t, ms in zip(taken, durations, strict=True)], 0)
    expected = Counter(metrics.bucket_of(ms) for ms in durations)
    cumulative = crt.redis.hgetall(keys.durations(Q))
    assert {int(k.rpartition(b"|d")[2]): int(v) for k, v in cumulative.items() if b"|d" in k} == expected
    assert float(cumulative[f"{JOB}|ms".encode()]) == pytest.approx(sum(durations))
    [minute] = list(crt.redis.scan_iter(f"{keys.METRICS_PREFIX}{Q}:*"))
    per_minute = crt.redis.hgetall(minute)
    assert {int(k[1:]): int(v) for k, v in per_minute.items() if k[:1] == b"d"} == expected
    assert 0 < crt.redis.ttl(keys.durations(Q)) <= DURATIONS_TTL_S
    assert 0 < crt.redis.ttl(minute) <= METRICS_TTL_S


WEBHOOK_TOML = '[queues.webhook-retry]\nbackoff = "none"\nattempts = 1\nconcurrency = 4\n'


def _hook(sleep: float) -> dict[str, Any]:
    return {"eventId": "e", "eventType": "t", "eventData": {"sleep": sleep}, "attemptNumber": 0}


def _burst_pool(url: str, toml: Path) -> None:
    """A real pool (tests/support/pool_harness: 2 processes) that drains webhook-retry and exits."""
    out = subprocess.run([sys.executable, "-m", "tests.support.pool_harness", url, "webhook-retry", "2", "--burst",
                          "--config", str(toml)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def _histogram(text: str, queue: str, job: str) -> tuple[list[tuple[float, float]], float, float]:
    """(sorted (le, cumulative count), _count, _sum) of one series of jobctl_job_duration_seconds."""
    fam = _families(text)["jobctl_job_duration_seconds"]
    assert fam.type == "histogram"
    mine = [s for s in fam.samples if s.labels.get("queue") == queue and s.labels.get("job") == job]
    buckets = sorted((float(s.labels["le"]), s.value) for s in mine if s.name.endswith("_bucket"))
    [count] = [s.value for s in mine if s.name.endswith("_count")]
    [total] = [s.value for s in mine if s.name.endswith("_sum")]
    return buckets, count, total


def _check_histogram(buckets: list[tuple[float, float]], count: float) -> None:
    """The invariants Prometheus relies on: buckets non-decreasing with le, +Inf last and equal to _count."""
    values = [v for _le, v in buckets]
    assert values == sorted(values)
    assert buckets[-1][0] == float("inf") and buckets[-1][1] == count
    assert [le for le, _v in buckets[:-1]] == [ms / 1000 for ms in metrics.BUCKET_BOUNDS_MS]


def test_percentiles_and_histogram_after_a_real_pool(redis_url: str, tmp_path: Path,
                                                     cli_env: dict[str, str]) -> None:
    """30 jobs of 70 ms and 10 of 600 ms through a real pool: p50 lands in (64, 128] ms, p95 in (512, 1024];
    `jobctl metrics` parses as a histogram whose buckets only grow, across scrapes and past the hour. The
    bounds leave room for a loaded machine: a job's time includes its Redis calls, and a shared Redis can
    stall for a hundred milliseconds (seen here), so each check holds with a few jobs slowed that much."""
    toml = tmp_path / "webhook.toml"
    toml.write_text(WEBHOOK_TOML)
    env = {"JOBCTL_REDIS_URL": redis_url, "JOBCTL_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    rt = Runtime(config.load(env=env, config=str(toml)))
    sleeps = [0.07] * 30 + [0.6] * 10
    for s in sleeps:
        enqueue(rt, "webhook-retry", "retry-webhook", _hook(s))
    _burst_pool(redis_url, toml)
    q = metrics.snapshot(rt, ["webhook-retry"]).queues[0]
    assert q.completed_1h == 40
    assert q.p50_ms_1h is not None and 64 < q.p50_ms_1h <= 128, q
    assert q.p95_ms_1h is not None and 512 < q.p95_ms_1h <= 1024, q
    assert q.avg_ms_1h is not None and q.p50_ms_1h < q.avg_ms_1h < q.p95_ms_1h

    cli = cli_env | {"JOBCTL_CONFIG": str(toml)}
    doc = json.loads(subprocess.run([str(ROOT / ".venv/bin/jobctl"), "stats", "--json", "webhook-retry"], env=cli,
                                    capture_output=True, text=True, timeout=60, check=True).stdout)
    assert (doc["queues"][0]["p50_ms_1h"], doc["queues"][0]["p95_ms_1h"]) == (q.p50_ms_1h, q.p95_ms_1h)

    def scrape() -> str:
        return subprocess.run([str(ROOT / ".venv/bin/jobctl"), "metrics"], env=cli, capture_output=True, text=True,
                              timeout=60, check=True).stdout

    buckets, count, total = _histogram(scrape(), "webhook-retry", "retry-webhook")
    _check_histogram(buckets, count)
    le = dict(buckets)
    assert count == 40
    assert le[0.064] == 0  # nothing sleeps less than 70 ms
    assert le[0.512] == 30  # the 70 ms jobs (with 440 ms of slack), none of the 600 ms ones
    assert le[2.048] == 40
    assert sum(sleeps) <= total <= sum(sleeps) + 40 * 0.5

    for s in (0.07, 0.6, 0.6):
        enqueue(rt, "webhook-retry", "retry-webhook", _hook(s))
    _burst_pool(redis_url, toml)
    later, count2, total2 = _histogram(scrape(), "webhook-retry", "retry-webhook")
    _check_histogram(later, count2)
    assert count2 == 43 and total2 > total
    assert all(b >= a for (_l, a), (_l2, b) in zip(buckets, later, strict=True))  # a counter never goes down

    after_the_hour = metrics.snapshot(rt, ["webhook-retry"], now=time.time() + 2 * 3600, durations=True)
    assert after_the_hour.queues[0].p50_ms_1h is None  # the percentiles are the last hour's...
    [hist] = [d for d in after_the_hour.durations if d.job == "retry-webhook"]
    assert hist.count == 43  # ...the histogram is not
    rt.redis.delete("test:starts", "test:done")  # the harness's own bookkeeping
    assert undocumented_keys(rt.redis) == []


def test_reading_percentiles_costs_the_same_whatever_the_volume(crt: Runtime, redis_url: str) -> None:
    """The commands a snapshot (with histograms) sends are the same after 20 and after 2,000 finished jobs."""
    def noop(_payload: dict[str, Any], _ctx: JobContext) -> None:
        return None

    def drain(n: int) -> None:
        for _ in range(n):
            enqueue(crt, Q, JOB, {"retentionDays": 1})
        Runner(crt, [Q], processors={JOB: noop}, services=object(), slots={Q: 50}).work(burst=True)

    def commands() -> list[str]:
        seen = _monitor(redis_url, lambda: metrics.snapshot(crt, dead_letters=False, durations=True))
        return sorted(c.split()[0].strip('"').upper() for c in seen)

    drain(20)
    small = commands()
    drain(2_000)
    assert metrics.snapshot(crt, [Q]).queues[0].completed_1h == 2_020
    assert commands() == small


def test_pools_in_the_snapshot(rt: Runtime, tmp_path: Path) -> None:
    """A real pool shows in `pools` with its host, pid, queues, running jobs and a fresh heartbeat."""
    toml = tmp_path / "webhook.toml"
    toml.write_text(WEBHOOK_TOML)
    for _ in range(6):
        enqueue(rt, "webhook-retry", "retry-webhook", _hook(3))
    p = subprocess.Popen([sys.executable, "-m", "tests.support.pool_harness", rt.settings.redis_url, "webhook-retry",
                          "2", "--config", str(toml)], cwd=ROOT, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def busy() -> bool:
            snap = metrics.snapshot(rt, ["webhook-retry"], dead_letters=False)
            return bool(snap.pools) and snap.pools[0].running >= 2
        wait_for(busy, 30, "a pool running jobs")
        [pool] = metrics.snapshot(rt, ["webhook-retry"], dead_letters=False).pools
        assert pool.pid == p.pid and pool.host == socket.gethostname()
        assert pool.queues == ("webhook-retry",) and 2 <= pool.running <= pool.concurrency
        assert pool.heartbeat_age_s is not None and pool.heartbeat_age_s < 30
        assert metrics.snapshot(rt).to_json()["pools"][0]["pid"] == p.pid
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_a_hand_edited_counter_does_not_break_the_read(rt: Runtime) -> None:
    minute = int(rt.redis.time()[0] // 60)
    rt.redis.hset(keys.metrics("email", minute), mapping={"completed": 4, "ms": 40, "d3": 3, "d4": 1})
    rt.redis.hset(keys.metrics("email", minute - 1), mapping={"completed": "lots", "d5": "x", "failed": 2})
    q = metrics.snapshot(rt, ["email"], dead_letters=False).queues[0]
    assert (q.completed_1h, q.failed_1h, q.avg_ms_1h) == (4, 2, 10.0)
    assert q.p50_ms_1h is not None and 4 < q.p50_ms_1h <= 8
    assert q.completed_per_min[-2:] == (0, 4) and q.failed_per_min[-2:] == (2, 0)


def _not_local_address() -> str:
    """An IPv4 address that no interface of this host has (binding it fails with EADDRNOTAVAIL)."""
    for candidate in ("192.0.2.77", "198.51.100.77", "203.0.113.77"):  # TEST-NET ranges, never assigned
        with socket.socket() as s:
            try:
                s.bind((candidate, 0))
            except OSError:
                return candidate
    pytest.skip("every TEST-NET address is bound here")


def test_metrics_listen_on_an_address_it_cannot_bind_is_one_line_exit_2(cli_env: dict[str, str]) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    foreign = _not_local_address()
    try:
        for address, reason in ((f"{foreign}:9100", "Cannot assign requested address"),
                                (f"127.0.0.1:{port}", "Address already in use"),
                                ("no-such-host.invalid:9100", "")):
            out = subprocess.run([sys.executable, "-m", "jobctl", "metrics", "--listen", address], env=cli_env,
                                 capture_output=True, text=True, timeout=30)
            assert (out.returncode, out.stdout) == (2, ""), (address, out.stderr)
            assert out.stderr.startswith(f"error: cannot listen on {address}: {reason}"), out.stderr
            assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    finally:
        taken.close()
