"""The worker pool as real processes: graceful and immediate stop, crashes, hard timeouts, burst."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Worker as RqWorker

from jobctl import config, control, keys
from jobctl.producer import enqueue, enqueue_many
from jobctl.runtime import Runtime
from tests.support.keytable import undocumented_keys
from tests.support.rq_tools import wait_for

ROOT = Path(__file__).resolve().parents[1]
HOOK = {"eventId": "e", "eventType": "t", "eventData": {}, "attemptNumber": 0}


def hook(**data: Any) -> dict[str, Any]:
    return HOOK | {"eventData": data}


@pytest.fixture
def pool(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    (tmp_path / "jobctl.toml").write_text("[queues.webhook-retry]\nbackoff = \"none\"\n")

    def start(queue: str = "webhook-retry", concurrency: int = 2, *extra: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "tests.support.pool_harness", redis_url, queue, str(concurrency),
               "--config", str(tmp_path / "jobctl.toml"), *extra]
        p = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, start_new_session=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()



def done(client: redis.Redis) -> list[str]:
    return [d.decode() for d in client.lrange("test:done", 0, -1)]


def started(client: redis.Redis) -> list[str]:
    return [s.decode().split()[0] for s in client.lrange("test:starts", 0, -1)]


def test_burst_drains_and_exits_zero(rt: Runtime, pool: Callable[..., subprocess.Popen[bytes]]) -> None:
    ids = [e.id for e in enqueue_many(rt, "webhook-retry", "retry-webhook", [hook(i=i) for i in range(40)])]
    p = pool("webhook-retry", 3, "--burst")
    assert p.wait(timeout=30) == 0
    assert sorted(done(rt.redis)) == sorted(ids)
    rt.redis.delete("test:starts", "test:done")  # the harness's own bookkeeping
    assert undocumented_keys(rt.redis) == []


def test_max_jobs_stops_after_exactly_n(rt: Runtime, pool: Callable[..., subprocess.Popen[bytes]]) -> None:
    enqueue_many(rt, "webhook-retry", "retry-webhook", [hook(i=i) for i in range(20)])
    p = pool("webhook-retry", 3, "--max-jobs", "7")
    assert p.wait(timeout=30) == 0
    assert len(done(rt.redis)) == 7 and rt.redis.llen(keys.queue_list("webhook-retry")) == 13


def test_sigterm_lets_running_jobs_finish(rt: Runtime, pool: Callable[..., subprocess.Popen[bytes]]) -> None:
    e = enqueue(rt, "webhook-retry", "retry-webhook", hook(sleep=1.5))
    waiting = enqueue(rt, "webhook-retry", "retry-webhook", hook(i=2))
    p = pool("webhook-retry", 1, "--slots", "1")
    wait_for(lambda: started(rt.redis) == [e.id], 10, "the job to start", lambda: started(rt.redis))
    rq_workers = RqWorker.all(connection=rt.redis)  # RQ's own tools see the pool as a worker
    assert [(w.pid, len(w.queue_names())) for w in rq_workers] == [(p.pid, 10)]  # every level served
    assert "webhook-retry" in rq_workers[0].queue_names()
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == 0
    assert time.time() - t0 >= 1.0
    assert done(rt.redis) == [e.id]
    assert control.show_job(rt, e.id).status == "finished"
    assert control.show_job(rt, waiting.id).status == "queued"
    assert RqWorker.all(connection=rt.redis) == []


def test_second_signal_puts_running_jobs_back(rt: Runtime, pool: Callable[..., subprocess.Popen[bytes]]) -> None:
    e = enqueue(rt, "webhook-retry", "retry-webhook", hook(sleep=20))
    p = pool("webhook-retry", 1)
    wait_for(lambda: started(rt.redis) == [e.id], 10, "the job to start", lambda: started(rt.redis))
    p.send_signal(signal.SIGINT)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=10) == 0
    view = control.show_job(rt, e.id)
    assert (view.status, view.attempts) == ("queued", 0)
    assert rt.redis.lrange(keys.queue_list("webhook-retry"), 0, -1) == [e.id.encode()]
    assert rt.redis.zcard(keys.wip("webhook-retry")) == 0


def test_killed_runner_job_is_rerun_at_once(rt: Runtime, pool: Callable[..., subprocess.Popen[bytes]]) -> None:
    e = enqueue(rt, "webhook-retry", "retry-webhook", hook(sleep=30, once=True))
    p = pool("webhook-retry", 1)
    wait_for(lambda: started(rt.redis) == [e.id], 10, "the job to start", lambda: started(rt.redis))
    runner_pid = int(subprocess.check_output(["pgrep", "-P", str(p.pid)]).split()[0])
    os.kill(runner_pid, signal.SIGKILL)
    wait_for(lambda: started(rt.redis) == [e.id, e.id], 10, "the job to run again")
    assert control.show_job(rt, e.id).attempts == 2


def test_hard_timeout_kills_a_stuck_runner(rt: Runtime, pool: Callable[..., subprocess.Popen[bytes]],
                                           tmp_path: Path) -> None:
    (tmp_path / "jobctl.toml").write_text("[queues.webhook-retry]\nattempts = 1\ntimeout_s = 1\n")
    rt = Runtime(config.load(env={"HOME": str(tmp_path)}, config=tmp_path / "jobctl.toml",
                             redis_url=rt.settings.redis_url))  # attempts are fixed when a job is enqueued
    e = enqueue(rt, "webhook-retry", "retry-webhook", hook(sleep=60, ignore_timeout=True))
    p = pool("webhook-retry", 1)
    wait_for(lambda: control.show_job(rt, e.id).status == "failed", 20, "the stuck job to be killed")
    assert "timeout" in (control.show_job(rt, e.id).error or "")
    assert p.poll() is None  # the pool lives on with a fresh runner


def test_sigkill_of_whole_pool_loses_nothing(rt: Runtime, pool: Callable[..., subprocess.Popen[bytes]]) -> None:
    """Kill -9 a pool serving several priority levels mid-job; a second pool re-runs every job."""
    ids = [e.id for e in enqueue_many(rt, "webhook-retry", "retry-webhook", [hook(sleep=0.2, i=i) for i in range(30)])]
    ids += [enqueue(rt, "webhook-retry", "retry-webhook", hook(sleep=0.2), priority=p).id for p in (1, 9)]
    first = pool("webhook-retry", 3)
    wait_for(lambda: len(done(rt.redis)) >= 5, 20, "some jobs to finish")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = time.time()
    in_flight = rt.redis.zcard(keys.wip("webhook-retry"))
    assert in_flight >= 1
    second = pool("webhook-retry", 3, "--burst")
    assert second.wait(timeout=90) == 0
    lost = set(ids) - set(done(rt.redis))
    assert lost == set()
    assert time.time() - killed_at < 60


def _starts(client: redis.Redis) -> list[float]:
    return sorted(float(s.decode().split()[1]) for s in client.lrange("test:starts", 0, -1))


def _max_in_window(starts: list[float], window_s: float = 1.0) -> int:
    """The most starts any half-open window [t, t + window) holds (checked at every start)."""
    j, best = 0, 0
    for i in range(len(starts)):
        while starts[i] - starts[j] >= window_s:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.parametrize("kill_midway", [False, True])
def test_push_rate_limit_holds_across_four_processes(rt: Runtime, pool: Callable[..., subprocess.Popen[bytes]],
                                                     kill_midway: bool) -> None:
    """300 pushes, 4 runner processes, 30/s: no 1 s window above 30, mean rate >= 27/s."""
    n = 300 if not kill_midway else 150
    payload = {"userId": "u", "title": "t", "message": "m", "data": {"sleep": 0.01}}
    enqueue_many(rt, "push", "send-push", [payload] * n)
    p = pool("push", 4, "--burst")
    if kill_midway:
        wait_for(lambda: len(started(rt.redis)) >= 40, 20, "40 starts")
        victim = int(subprocess.check_output(["pgrep", "-P", str(p.pid)]).split()[0])
        os.kill(victim, signal.SIGKILL)
    assert p.wait(timeout=60) == 0
    starts = _starts(rt.redis)
    finished = done(rt.redis)
    assert len(starts) >= n and len(set(finished)) == n  # every job ran to its end
    # SIGKILL gives at-least-once: a job of the victim that ended but whose finish was not yet recorded
    # runs again, so at most the victim's slots (20 / 4) can finish twice; without a kill, none
    assert len(finished) - n <= (5 if kill_midway else 0)
    assert _max_in_window(starts) <= 30
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert rate >= 27, f"mean rate {rate:.1f}/s"


def test_workers_ride_out_a_redis_restart(tmp_path: Path, pool: Callable[..., subprocess.Popen[bytes]]) -> None:
    """A Redis with AOF restarts under a running pool: nothing is lost, the pool carries on."""
    import shutil
    import socket

    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server binary not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--appendonly", "yes", "--appendfsync", "always",
           "--save", "", "--dir", str(tmp_path)]
    url = f"redis://127.0.0.1:{port}/0"

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        wait_for(lambda: _pings(url), 10, "redis-server to start")
        return proc

    redis_proc = start()
    try:
        rt = Runtime(config.load(env={"HOME": str(tmp_path)}, redis_url=url))
        first = [e.id for e in enqueue_many(rt, "webhook-retry", "retry-webhook", [hook(i=i) for i in range(5)])]
        p = subprocess.Popen([sys.executable, "-m", "tests.support.pool_harness", url, "webhook-retry", "2"],
                             cwd=ROOT, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            client = redis.Redis.from_url(url)
            wait_for(lambda: len(done(client)) == 5, 20, "the first jobs")
            redis_proc.terminate()  # SIGTERM: Redis fsyncs the AOF and exits
            redis_proc.wait(timeout=10)
            time.sleep(2)  # the pool keeps running against a dead Redis
            assert p.poll() is None
            redis_proc = start()
            second = [e.id for e in enqueue_many(rt, "webhook-retry", "retry-webhook", [hook(j=i) for i in range(5)])]
            wait_for(lambda: set(first + second) <= set(done(client)), 30, "the jobs after the restart")
        finally:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=20)
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.ConnectionError:
        return False
