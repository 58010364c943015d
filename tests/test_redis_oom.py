"""Redis out of memory under `maxmemory-policy noeviction` (issue 12), on a redis-server of the test's own
with a small maxmemory (never the shared server): one message with exit 4 for every enqueue path, health
CRITICAL, and the pool's maintenance logging the outage once when it starts and once when it ends."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from jobctl import config, keys, maintenance
from jobctl.pool import Pool
from jobctl.producer import When, enqueue
from jobctl.runtime import Runtime
from tests.support.cli import jobctl

HOOK = {"eventId": "e", "eventType": "t", "eventData": {}}
FULL = "Redis is out of memory (maxmemory 4.00M, policy noeviction): it refuses writes until memory is freed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[str]:
    """URL of a private redis-server with maxmemory 4 MB and noeviction, no persistence."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--maxmemory", "4mb",
                             "--maxmemory-policy", "noeviction", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.time() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.time() < deadline and proc.poll() is None, "redis-server did not start"
            time.sleep(0.05)
    try:
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def fill(url: str) -> list[str]:
    """Write 1 KB strings until Redis refuses; the keys written."""
    client = redis.Redis.from_url(url)
    names: list[str] = []
    with pytest.raises(redis.OutOfMemoryError):
        for i in range(100_000):
            client.set(f"fill:{i}", "x" * 1024)
            names.append(f"fill:{i}")
    return names


def free(url: str, names: list[str]) -> None:
    client = redis.Redis.from_url(url)
    for start in range(0, len(names), 500):
        client.delete(*names[start:start + 500])


def test_every_enqueue_path_says_out_of_memory_once_with_exit_4(small_redis: str, cli_env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    env = cli_env | {"JOBCTL_REDIS_URL": small_redis}
    lines = tmp_path / "jobs.jsonl"
    lines.write_text(json.dumps(HOOK) + "\n" + json.dumps(HOOK) + "\n")
    fill(small_redis)
    single = jobctl(env, "enqueue", "webhook-retry", "retry-webhook", "--data", json.dumps(HOOK))
    assert (single.returncode, single.stderr, single.stdout) == (4, f"error: {FULL}\n", "")
    bulk = jobctl(env, "enqueue", "webhook-retry", "retry-webhook", "--file", str(lines))
    assert (bulk.returncode, bulk.stderr) == (4, f"error: {FULL}; 0 of 2 job(s) were enqueued before that batch\n")
    later = jobctl(env, "enqueue", "webhook-retry", "retry-webhook", "--data", json.dumps(HOOK), "--delay", "5m")
    assert (later.returncode, later.stderr) == (4, f"error: {FULL}\n")  # no Lua script hash, no line number


def test_health_is_critical_while_redis_is_out_of_memory(small_redis: str, cli_env: dict[str, str]) -> None:
    env = cli_env | {"JOBCTL_REDIS_URL": small_redis}
    assert json.loads(jobctl(env, "health", "--json").stdout)["checks"][0]["status"] == "OK"
    names = fill(small_redis)
    out = jobctl(env, "health", "--json")
    assert out.returncode == 2
    check = json.loads(out.stdout)["checks"][0]
    assert check["name"] == "redis" and check["status"] == "CRITICAL" and check["out_of_memory"] is True
    assert check["message"].startswith(FULL) and check["maxmemory_policy"] == "noeviction"
    free(small_redis, names)
    assert json.loads(jobctl(env, "health", "--json").stdout)["checks"][0]["status"] == "OK"


def test_maintenance_logs_the_outage_once_and_its_end(small_redis: str, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    settings = config.load(env={"JOBCTL_REDIS_URL": small_redis, "JOBCTL_DATA_DIR": str(tmp_path / "data"),
                                "HOME": str(tmp_path)}, cwd=tmp_path)
    rt = Runtime(settings)
    due = enqueue(rt, "webhook-retry", "retry-webhook", HOOK, when=When(at=datetime.now(UTC) - timedelta(seconds=1)))
    pool = Pool(settings, ["webhook-retry"], processes=1)
    tasks = [t for t in pool.tasks if t.name in ("promote", "heartbeat", "reclaim")]
    names = fill(small_redis)
    caplog.set_level(logging.INFO, logger="jobctl.pool")
    now = time.time()
    for tick in range(12):  # a minute of ticks: heartbeat and promote are due in each
        maintenance.run_due(tasks, now + 6 * tick)
    outage = [r.getMessage() for r in caplog.records if r.name == "jobctl.pool"]
    assert len(outage) == 1, outage
    assert outage[0].startswith("maintenance promote failed: " + FULL)
    assert rt.redis.zscore(keys.workers(), pool.name) is None  # the heartbeat never landed
    assert due.id.encode() not in rt.redis.lrange(keys.queue_list("webhook-retry"), 0, -1)

    free(small_redis, names)
    caplog.clear()
    maintenance.run_due(tasks, now + 6 * 12)
    ended = [r.getMessage() for r in caplog.records if r.name == "jobctl.pool"]
    assert len(ended) == 1 and ended[0].startswith("maintenance runs again: the Redis fault (out of memory) ended")
    assert rt.redis.zscore(keys.workers(), pool.name) is not None
    assert due.id.encode() in rt.redis.lrange(keys.queue_list("webhook-retry"), 0, -1)
    caplog.clear()
    maintenance.run_due(tasks, now + 6 * 13)
    assert [r for r in caplog.records if r.name == "jobctl.pool"] == []



def test_a_runner_waits_out_out_of_memory_then_finishes_every_job(small_redis: str, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A script Redis refuses for memory (at its first write, so nothing was written) is retried, never
    raised into the runner: before, a burst runner's promotion of due jobs raised OutOfMemoryError."""
    import threading

    from jobctl.worker import Runner

    settings = config.load(env={"JOBCTL_REDIS_URL": small_redis, "JOBCTL_DATA_DIR": str(tmp_path / "data"),
                                "HOME": str(tmp_path)}, cwd=tmp_path)
    rt = Runtime(settings)
    jobs = [enqueue(rt, "webhook-retry", "retry-webhook", {**HOOK, "eventId": f"e{i}"}) for i in range(3)]
    runner = Runner(rt, ["webhook-retry"], processors={"retry-webhook": lambda p, c: {"ok": True}})
    names = fill(small_redis)
    caplog.set_level(logging.WARNING, logger="jobctl.worker")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            runner.work(burst=True)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(3.0)
    assert t.is_alive() and not errors  # waiting, nothing raised
    assert any("Redis out of memory (OutOfMemoryError)" in r.getMessage() for r in caplog.records)
    free(small_redis, names)
    t.join(20)
    assert not t.is_alive() and not errors
    assert [rt.redis.hget(keys.job(j.id), "status") for j in jobs] == [b"finished"] * 3
