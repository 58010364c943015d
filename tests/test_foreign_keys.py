"""Foreign data in Redis under a real pool (SPEC §9): keys of the wrong type where jobctl and RQ keep
queue lists, registries and markers affect only their own level, and ids the pool cannot run are
dead-lettered with a reason rather than dropped."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobctl import config, keys
from jobctl import deadletter as dl
from jobctl.producer import enqueue
from jobctl.runtime import Runtime
from tests.support.jobs import Pools, hook, push
from tests.support.rq_tools import wait_for

CORRUPT = {  # key -> what it holds: every kind of level key, on used and unused levels
    keys.queue_list("image-processing"): "string",
    keys.queue_list("email.p3"): "string",
    keys.wip("data-cleanup"): "string",
    keys.finished("push"): "string",
    keys.scheduled("webhook-retry.p4"): "string",
}
QUEUES = "push,webhook-retry,image-processing,data-cleanup,email"


@pytest.fixture
def pools(redis_url: str, tmp_path: Path) -> Iterator[Pools]:
    (tmp_path / "jobctl.toml").write_text(f'[settings]\ndatabase_url = "sqlite:///{tmp_path / "dead.db"}"\n\n'
                                          '[queues.webhook-retry]\nbackoff = "none"\n')
    p = Pools(redis_url, tmp_path)
    yield p
    p.kill_all()


def _rt(rt: Runtime, tmp_path: Path) -> Runtime:
    return Runtime(config.load(env={"HOME": str(tmp_path)}, config=tmp_path / "jobctl.toml",
                               redis_url=rt.settings.redis_url))


def _start(pools: Pools, tmp_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    return pools.start(QUEUES, 2, "--config", str(tmp_path / "jobctl.toml"), "--hooks",
                       "--database-url", f"sqlite:///{tmp_path / 'dead.db'}", *extra)


def _done(rt: Runtime) -> set[str]:
    return {v.decode() for v in rt.redis.lrange("test:done", 0, -1)}


def _err(tmp_path: Path) -> str:
    return (tmp_path / "pool0.err").read_bytes().decode(errors="replace")


def test_wrong_type_level_keys_spare_every_other_queue(rt: Runtime, pools: Pools, tmp_path: Path) -> None:
    for key in CORRUPT:
        rt.redis.set(key, "hello")
    ids = {enqueue(rt, "push", "send-push", push()).id, enqueue(rt, "webhook-retry", "retry-webhook", hook()).id,
           enqueue(rt, "push", "send-push", push(), priority=3).id}
    p = _start(pools, tmp_path, "--burst")
    assert p.wait(timeout=30) == 0  # --burst exits once the healthy levels drained
    err = _err(tmp_path)
    assert "Traceback" not in err and "crashed" not in err and "exited" not in err, err[-3000:]
    assert _done(rt) == ids
    for key in CORRUPT:
        assert rt.redis.get(key) == b"hello"  # not ours to overwrite
        met = [line for line in err.splitlines() if f"Redis key {key} holds a string where" in line]
        assert len(met) <= 1, (key, met)  # once for the pool, not per step or per runner
    for key in (keys.queue_list("image-processing"), keys.wip("data-cleanup"), keys.finished("push"),
                keys.scheduled("webhook-retry.p4")):  # the keys the pool met
        assert f"Redis key {key} holds a string where" in err, (key, err[-3000:])
    assert "heartbeats and the promotion of due jobs are skipped" not in err


def test_a_job_on_a_level_with_a_broken_started_registry_stays_queued(rt: Runtime, pools: Pools,
                                                                       tmp_path: Path) -> None:
    rt.redis.set(keys.wip("push.p3"), "hello")
    stuck = enqueue(rt, "push", "send-push", push(), priority=3).id
    ok = enqueue(rt, "push", "send-push", push()).id
    p = _start(pools, tmp_path, "--burst")
    assert p.wait(timeout=30) == 0
    assert _done(rt) == {ok}
    assert rt.redis.lrange(keys.queue_list("push.p3"), 0, -1) == [stuck.encode()]  # skipped, not lost
    assert rt.redis.hget(keys.job(stuck), "status") == b"queued"


def test_wrong_type_marker_leaves_the_waiting_pool_serving(rt: Runtime, pools: Pools, tmp_path: Path) -> None:
    rt.redis.set(keys.marker("push"), "hello")
    p = _start(pools, tmp_path)
    try:
        wait_for(lambda: rt.redis.zcard(keys.workers()) == 1, 15, "the pool's heartbeat")
        time.sleep(1.5)  # the runners are idle, waiting on the markers
        ids = {enqueue(rt, "push", "send-push", push()).id, enqueue(rt, "webhook-retry", "retry-webhook", hook()).id}
        wait_for(lambda: _done(rt) == ids, 15, "both jobs done")
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0
    err = _err(tmp_path)
    assert "Traceback" not in err, err[-3000:]
    assert f"Redis key {keys.marker('push')} holds a string" in err
    assert rt.redis.get(keys.marker("push")) == b"hello"


def test_ids_the_pool_cannot_run_are_dead_lettered_with_a_reason(rt: Runtime, pools: Pools,
                                                                tmp_path: Path) -> None:
    client = rt.redis
    weird = enqueue(rt, "push", "send-push", push()).id
    client.hset(keys.job(weird), "status", "weird")
    running = enqueue(rt, "push", "send-push", push()).id  # started by someone else: a stale copy in the list
    client.hset(keys.job(running), mapping={"status": "started", "worker_name": "elsewhere"})
    late = enqueue(rt, "push", "send-push", push()).id
    client.lrem(keys.queue_list("push"), 0, late)  # due in the scheduled registry, with a status RQ never writes
    client.zadd(keys.scheduled("push"), {late: 1, "no-hash-here": 1})  # and an id with no hash
    client.hset(keys.job(late), "status", "bogus")
    ok = enqueue(rt, "push", "send-push", push()).id
    p = _start(pools, tmp_path, "--burst")
    assert p.wait(timeout=30) == 0
    assert "Traceback" not in _err(tmp_path), _err(tmp_path)[-3000:]
    assert _done(rt) == {ok}
    entries = {e.job_id: e for e in dl.store_for(_rt(rt, tmp_path)).entries(dl.Filter())}
    assert set(entries) == {weird, late, "no-hash-here"}
    assert "job status is weird" in entries[weird].error and entries[weird].data == push()
    assert "job status is bogus" in entries[late].error
    assert "job hash missing" in entries["no-hash-here"].error
    assert client.zcard(keys.scheduled("push")) == 0
    assert client.hget(keys.job(running), "status") == b"started"  # left to its worker


def test_values_from_redis_reach_the_log_escaped(rt: Runtime, pools: Pools, tmp_path: Path) -> None:
    evil = "evil\x1b]0;owned\x07\x1b[2J"
    rt.redis.rpush(keys.queue_list("push"), evil)  # no hash: refused, and logged with its id
    p = _start(pools, tmp_path, "--burst")
    assert p.wait(timeout=30) == 0
    ours = [line for line in (tmp_path / "pool0.err").read_bytes().splitlines()
            if b" jobctl.worker: " in line or b" jobctl.pool: " in line]  # the runtime's own lines
    assert ours and not [line for line in ours if b"\x1b" in line or b"\x07" in line], ours
    assert any(b"job evil\\x1b]0;owned\\x07\\x1b[2J on push refused" in line for line in ours), ours
    err = (tmp_path / "pool0.err").read_bytes()
    assert b"jobctl.jobs: job evil\\x1b]0;owned" in err  # the dead-letter log hook's line, escaped too
    assert b"\x1b" not in err and b"\x07" not in err


def test_a_wrong_type_rq_queue_set_does_not_stop_a_pool_starting(rt: Runtime, pools: Pools, tmp_path: Path) -> None:
    rt.redis.set(keys.queues_set(), "hello")
    ids = {enqueue(rt, "push", "send-push", push()).id}
    p = _start(pools, tmp_path, "--burst")
    assert p.wait(timeout=30) == 0
    assert _done(rt) == ids
    err = _err(tmp_path)
    assert err.count(f"Redis key {keys.queues_set()} holds a string where RQ keeps its set of queues") == 1, err
    assert rt.redis.get(keys.queues_set()) == b"hello"


def test_a_retry_that_cannot_be_queued_again_is_dead_lettered(rt: Runtime, pools: Pools, tmp_path: Path) -> None:
    """A failed attempt goes back to its queue list (no back-off) or the scheduled registry (back-off);
    when that key holds another type, the job fails with the reason and reaches the dead-letter store,
    instead of being left, status queued or scheduled, in no list at all."""
    rt.redis.set(keys.scheduled("push"), "hello")  # where push's exponential back-off puts a retry
    delayed = enqueue(rt, "push", "send-push", push(fail=True)).id
    back = enqueue(rt, "webhook-retry", "retry-webhook", hook(fail=True, sleep=1.5)).id  # back-off none
    p = _start(pools, tmp_path, "--burst")
    wait_for(lambda: any(s.split()[0] == back.encode() for s in rt.redis.lrange("test:starts", 0, -1)), 20,
             "the webhook job to start")
    rt.redis.set(keys.queue_list("webhook-retry"), "hello")  # its list turns into a string while it runs
    assert p.wait(timeout=30) == 0
    err = _err(tmp_path)
    assert "Traceback" not in err, err[-3000:]
    entries = {e.job_id: e for e in dl.store_for(_rt(rt, tmp_path)).entries(dl.Filter())}
    assert set(entries) == {delayed, back}, err[-3000:]
    for jid, key in ((delayed, keys.scheduled("push")), (back, keys.queue_list("webhook-retry"))):
        why = f"RuntimeError: asked to fail (it could not be queued again: Redis key {key} holds a string)"
        assert entries[jid].error == why, entries[jid].error
        assert rt.redis.hget(keys.job(jid), "status") == b"failed"
        assert f"job {jid} on " in err and "could not be queued again" in err
    assert rt.redis.zscore(keys.failed("push"), delayed) is not None  # RQ's failed registry has it
    assert rt.redis.get(keys.scheduled("push")) == rt.redis.get(keys.queue_list("webhook-retry")) == b"hello"


def test_stats_and_health_read_around_wrong_type_keys_and_name_them(rt: Runtime, cli_env: dict[str, str]) -> None:
    """One foreign key used to fail the whole snapshot (stats exit 1, health UNKNOWN); now its figures
    count as empty, stats lists it and health is CRITICAL naming it."""
    import json
    import sys

    broken = {keys.queue_list("image-processing"): "string", keys.scheduled("push"): "string",
              keys.paused(): "string", keys.wip("email.p3"): "list"}
    for key, kind in broken.items():
        rt.redis.set(key, "x") if kind == "string" else rt.redis.rpush(key, "x")
    ok = enqueue(rt, "push", "send-push", push()).id

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "jobctl", *args], env=cli_env, capture_output=True, text=True,
                              timeout=60, check=False)

    out = cli("stats", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["broken_keys"] == broken
    by_name = {q["name"]: q for q in doc["queues"]}
    assert by_name["push"]["waiting"] == 1 and by_name["image-processing"]["waiting"] == 0, ok
    table = cli("stats")
    assert table.returncode == 0 and f"Redis key {keys.scheduled('push')} holds a string" in table.stdout
    health = cli("health", "--json")
    assert health.returncode == 2, health.stdout + health.stderr
    check = next(c for c in json.loads(health.stdout)["checks"] if c["name"] == "keys")
    assert check["status"] == "CRITICAL" and check["broken_keys"] == broken
    assert (f"4 Redis key(s) hold another type than jobctl and RQ keep there: {keys.paused()} (string)"
            in check["message"])
    for key in broken:
        rt.redis.delete(key)
    check = next(c for c in json.loads(cli("health", "--json").stdout)["checks"] if c["name"] == "keys")
    assert check["status"] == "OK"
