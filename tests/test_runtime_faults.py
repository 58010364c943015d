"""Faults under the slot runtime: timeouts in one slot, a stuck job, poison jobs, and a lost Redis reply."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue as RqQueue
from rq.job import Job
from rq.serializers import JSONSerializer

from jobctl import config, control, keys, scripts
from jobctl import deadletter as dl
from jobctl.context import JobContext
from jobctl.hooks import JobEvent
from jobctl.producer import enqueue
from jobctl.runtime import Runtime
from jobctl.slots import KILL_GRACE_S
from jobctl.worker import Done, Runner, as_text
from tests.support.jobs import Pools, hook, push
from tests.support.rq_tools import wait_for

ROOT = Path(__file__).resolve().parents[1]
Start = Callable[..., subprocess.Popen[bytes]]


def runtime_with(rt: Runtime, toml: Path, body: str) -> Runtime:
    """A runtime on the test Redis configured by `body` (written to `toml`)."""
    toml.write_text(body)
    return Runtime(config.load(env={"HOME": str(toml.parent)}, config=toml, redis_url=rt.settings.redis_url))


@pytest.fixture
def pool(redis_url: str, tmp_path: Path) -> Iterator[Start]:
    """Starts harness pools in their own process groups, stderr to a file; kills what is left at the end."""
    pools = Pools(redis_url, tmp_path)

    def start(queues: str, processes: int, *extra: str) -> subprocess.Popen[bytes]:
        return pools.start(queues, processes, "--config", str(tmp_path / "jobctl.toml"), *extra)

    yield start
    pools.kill_all()


def lines(client: redis.Redis, key: str) -> list[str]:
    return [as_text(v) for v in client.lrange(key, 0, -1)]


def starts(client: redis.Redis) -> list[tuple[str, float]]:
    return [(r.split()[0], float(r.split()[1])) for r in lines(client, "test:starts")]


def done(client: redis.Redis) -> set[str]:
    return set(lines(client, "test:done"))


def runners_of(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(x) for x in out.split()}


# -- timeouts ------------------------------------------------------------------------------------


def _busy(seconds: float) -> None:
    """Python-level work: a slot's JobTimeout lands at its next instruction."""
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(0.01)


def test_timeout_in_one_slot_spares_the_others(rt: Runtime, tmp_path: Path) -> None:
    rt = runtime_with(rt, tmp_path / "jobctl.toml",
                      '[queues.push]\nrate_limit = "none"\ntimeout_s = 1\nattempts = 1\n')
    finished: list[str] = []

    def work(payload: dict[str, Any], ctx: JobContext) -> str:
        n = payload["data"]["n"]
        if n == "a":
            _busy(5)
        elif n == "b":
            time.sleep(1.5)  # one C call: a JobTimeout aimed here would land after it, and fail the job
        finished.append(n)
        return n

    a = enqueue(rt, "push", "send-push", push(n="a"))
    b = enqueue(rt, "push", "send-push", push(n="b"))
    c = enqueue(rt, "push", "send-push", push(n="c"))  # runs in the first slot to free: no late JobTimeout hits it
    rt.redis.hset(keys.job(b.id), "timeout", 10)  # RQ's per-job timeout field
    t0 = time.time()
    Runner(rt, ["push"], processors={"send-push": work}, services=object(), slots={"push": 2}).work(burst=True)
    assert time.time() - t0 < 4
    assert sorted(finished) == ["b", "c"]
    view = control.show_job(rt, a.id)
    assert view.status == "failed" and "JobTimeout" in (view.error or "")
    assert [control.show_job(rt, j.id).status for j in (b, c)] == ["finished", "finished"]
    assert control.show_job(rt, b.id).result == "b"


STUCK_TOML = '[queues.webhook-retry]\nattempts = 1\ntimeout_s = 1\n\n[queues.push]\nrate_limit = "none"\n'


def test_stuck_job_restarts_its_process_and_spares_its_neighbour(rt: Runtime, pool: Start, tmp_path: Path) -> None:
    """A job that ignores its timeout (one long C call) fails; the job beside it is put back uncharged."""
    rt = runtime_with(rt, tmp_path / "jobctl.toml", STUCK_TOML)
    stuck = enqueue(rt, "webhook-retry", "retry-webhook", hook(sleep=60))
    neighbour = enqueue(rt, "push", "send-push", push(sleep=8, once=True))  # push's timeout: 10 s
    p = pool("webhook-retry,push", 1)
    wait_for(lambda: len(starts(rt.redis)) == 2, 15, "both jobs to start")
    [old] = runners_of(p.pid)
    began = dict(starts(rt.redis))[stuck.id]
    wait_for(lambda: control.show_job(rt, stuck.id).status == "failed", 1 + KILL_GRACE_S + 6, "the stuck job to fail")
    assert time.time() - began < 1 + KILL_GRACE_S + 4  # the runner's own grace, not the supervisor's backstop
    assert "timeout" in (control.show_job(rt, stuck.id).error or "").lower()
    wait_for(lambda: bool(runners_of(p.pid) - {old}), 5, "a fresh runner process")
    assert old not in runners_of(p.pid)
    wait_for(lambda: control.show_job(rt, neighbour.id).status == "finished", 10, "the neighbour to run again")
    assert [j for j, _t in starts(rt.redis)].count(neighbour.id) == 2
    view = control.show_job(rt, neighbour.id)
    assert (view.status, view.attempts) == ("finished", 1)  # putting it back cost no attempt
    later = enqueue(rt, "webhook-retry", "retry-webhook", hook())
    wait_for(lambda: later.id in done(rt.redis), 10, "a job enqueued afterwards")
    assert p.poll() is None


# -- poison jobs ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Poison:
    """Jobs planted in webhook-retry's list: poison id -> the reason it must fail with, plus valid ones."""

    reasons: dict[str, str]
    valid: list[str]
    wrong_type: str = ""


def plant_poison(rt: Runtime, marker: Path, wrong_type: bool = True) -> Poison:
    """Real RQ producers, hand-edited hashes and missing ones, then a compressed valid job and a normal one."""
    client, reasons = rt.redis, {}
    command = f"touch {marker}"
    reasons[RqQueue("webhook-retry", connection=client).enqueue("os.system", command).id] = "pickled data refused"
    rq_json = RqQueue("webhook-retry", connection=client, serializer=JSONSerializer)
    reasons[rq_json.enqueue("os.system", command).id] = "not registered"
    bad_utf8 = enqueue(rt, "webhook-retry", "retry-webhook", hook()).id
    client.hset(keys.job(bad_utf8), "data", b"\xff\xfe[\"retry-webhook\"\xc3(")
    reasons[bad_utf8] = "not UTF-8"
    garbage = enqueue(rt, "webhook-retry", "retry-webhook", hook()).id
    client.hset(keys.job(garbage), "jc_max", "abc")
    reasons[garbage] = "garbage in field jc_max"
    client.rpush(keys.queue_list("webhook-retry"), "no-such-hash")
    reasons["no-such-hash"] = "job hash missing"
    if wrong_type:
        client.set(keys.job("not-a-hash"), "a string")
        client.rpush(keys.queue_list("webhook-retry"), "not-a-hash")
    zipped = enqueue(rt, "webhook-retry", "retry-webhook", hook(kind="zlib")).id
    Job.fetch(zipped, connection=client, serializer=JSONSerializer).save()  # RQ rewrites data zlib-compressed
    assert (client.hget(keys.job(zipped), "data") or b"")[:1] == b"\x78"
    normal = enqueue(rt, "webhook-retry", "retry-webhook", hook(kind="after")).id
    return Poison(reasons, [zipped, normal], "not-a-hash" if wrong_type else "")


def _check_poison_handled(rt: Runtime, poison: Poison, marker: Path, stderr: bytes) -> None:
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")[-3000:]
    assert done(rt.redis) == set(poison.valid)
    for jid, reason in poison.reasons.items():
        status, error = rt.redis.hmget(keys.job(jid), ["status", "jc_error"])  # raw: `jobs show` cannot read all
        assert status == b"failed" and reason.encode() in (error or b""), (jid, reason, error)
    assert not marker.exists()  # os.system never ran
    assert rt.redis.llen(keys.queue_list("webhook-retry")) == 0
    assert rt.redis.zcard(keys.wip("webhook-retry")) == 0


def test_poison_jobs_never_run_and_fail_with_a_reason(rt: Runtime, pool: Start, tmp_path: Path) -> None:
    (tmp_path / "jobctl.toml").write_text('[queues.webhook-retry]\nbackoff = "none"\n')
    marker = tmp_path / "side-effect"
    poison = plant_poison(rt, marker)
    p = pool("webhook-retry", 2, "--burst")
    assert p.wait(timeout=30) == 0
    _check_poison_handled(rt, poison, marker, (tmp_path / "pool0.err").read_bytes())
    assert rt.redis.get(keys.job(poison.wrong_type)) == b"a string"  # not ours to overwrite
    for jid in poison.valid:
        assert control.show_job(rt, jid).status == "finished"


def test_poison_jobs_are_dead_lettered_by_the_default_hooks(rt: Runtime, pool: Start, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'dead.db'}"
    rt = runtime_with(rt, tmp_path / "jobctl.toml",
                      f'[settings]\ndatabase_url = "{db_url}"\n\n[queues.webhook-retry]\nbackoff = "none"\n')
    marker = tmp_path / "side-effect"
    poison = plant_poison(rt, marker, wrong_type=False)
    p = pool("webhook-retry", 2, "--burst", "--hooks")
    assert p.wait(timeout=30) == 0
    _check_poison_handled(rt, poison, marker, (tmp_path / "pool0.err").read_bytes())
    entries = dl.store_for(rt).entries(dl.Filter())
    assert sorted(e.job_id for e in entries) == sorted(poison.reasons)  # one each, none for the valid jobs
    for e in entries:
        assert poison.reasons[e.job_id] in e.error and (e.queue, e.status) == ("webhook-retry", "open")


def test_concurrent_first_use_of_the_dead_letter_store(tmp_path: Path) -> None:
    """Slots dead-lettering at the same moment into a fresh database all get their tables (no CREATE race)."""
    from jobctl import db

    failures: list[str] = []
    for trial in range(3):  # a fresh database each time; 6 slots' first dead letters at the same moment
        store = dl.DeadLetterStore(db.engine_for(f"sqlite:///{tmp_path / f'fresh{trial}.db'}"))
        barrier = threading.Barrier(6)

        def first_use(s: dl.DeadLetterStore = store, b: threading.Barrier = barrier) -> None:
            b.wait()
            try:
                s.ready()
            except Exception as exc:  # noqa: BLE001 - collected and asserted on below
                failures.append(str(exc).splitlines()[0])

        threads = [threading.Thread(target=first_use) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
    assert failures == []


def test_show_job_reads_a_hash_with_garbage_counts(rt: Runtime) -> None:
    """`jobs show` reads the hash of a job the runtime refused for garbage counts."""
    jid = enqueue(rt, "webhook-retry", "retry-webhook", hook()).id
    rt.redis.hset(keys.job(jid), mapping={"jc_max": "abc", "status": "failed", "jc_error": "garbage in field jc_max"})
    view = control.show_job(rt, jid)
    assert (view.status, view.error) == ("failed", "garbage in field jc_max")


def test_step_refuses_a_job_key_that_is_not_a_hash(rt: Runtime) -> None:
    """A queued id whose key holds another type is refused with a reason, not dropped (pcall returns {err=...})."""
    rt.redis.set(keys.job("not-a-hash"), "a string")
    rt.redis.rpush(keys.queue_list("webhook-retry"), "not-a-hash")
    runner = Runner(rt, ["webhook-retry"], processors={"retry-webhook": lambda p, c: None}, services=object())
    res = runner.step([], 1)
    assert rt.redis.llen(keys.queue_list("webhook-retry")) == 0
    assert res.refused == [("not-a-hash", "webhook-retry", "webhook-retry", "job key is a string, not a hash")]


def test_dead_letter_hook_records_a_refused_key_that_is_not_a_hash(rt: Runtime) -> None:
    rt.redis.set(keys.job("not-a-hash"), "a string")
    event = JobEvent("not-a-hash", "webhook-retry", "?", {}, 0, 0, error="job key is a string, not a hash")
    dl.DeadLetterHook(rt).dead_lettered(event)
    [entry] = dl.store_for(rt).entries(dl.Filter())
    assert (entry.job_id, entry.error) == ("not-a-hash", "job key is a string, not a hash")


# -- a lost reply ----------------------------------------------------------------------------------


class _Link:
    """One proxied connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.swallow = False

    def close(self) -> None:
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class Proxy:
    """A TCP proxy to Redis that can swallow the reply to one request: the request reaches Redis (so a script
    runs), its reply never reaches the client; then it closes the connection, or stays silent (client times out)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.lock = threading.Lock()
        self.armed, self.trigger, self.close_after = 0, b"", True
        self.requests: list[bytes] = []
        self.replies: list[bytes] = []
        self.swallowed = 0
        self.links: list[_Link] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def swallow_next(self, trigger: bytes, close: bool) -> None:
        """Swallow the reply to the next request that contains `trigger`."""
        with self.lock:
            self.armed, self.trigger, self.close_after = 1, trigger, close

    def stop(self) -> None:
        """Close the listener and every connection."""
        self.server.close()
        for link in self.links:
            link.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _addr = self.server.accept()
            except OSError:
                return
            link = _Link(client, socket.create_connection(self.upstream))
            self.links.append(link)
            threading.Thread(target=self._requests, args=(link,), daemon=True).start()
            threading.Thread(target=self._replies, args=(link,), daemon=True).start()

    def _requests(self, link: _Link) -> None:
        while data := _recv(link.client):
            with self.lock:
                self.requests.append(data)
                if self.armed and self.trigger in data:
                    self.armed -= 1
                    link.swallow = True  # before forwarding: the reply cannot overtake the flag
            try:
                link.upstream.sendall(data)
            except OSError:
                break
        link.close()

    def _replies(self, link: _Link) -> None:
        while data := _recv(link.upstream):
            if link.swallow:
                with self.lock:
                    self.swallowed += 1
                if self.close_after:
                    break
                continue  # silent: this connection never answers again
            with self.lock:
                self.replies.append(data)
            try:
                link.client.sendall(data)
            except OSError:
                break
        link.close()


def _recv(s: socket.socket) -> bytes:
    try:
        return s.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def proxy(redis_url: str) -> Iterator[Proxy]:
    """A proxy in front of the test Redis."""
    parts = urlsplit(redis_url)
    p = Proxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    yield p
    p.stop()


def _completed(client: redis.Redis, queue: str) -> int:
    return sum(int(client.hget(k, "completed") or 0) for k in client.scan_iter(f"{keys.METRICS_PREFIX}{queue}:*"))


@pytest.mark.parametrize("retried_by", ["runner", "redis-py"])
@pytest.mark.parametrize("loss", ["closed", "silent"])
def test_lost_reply_neither_takes_nor_finishes_twice(rt: Runtime, proxy: Proxy, loss: str, retried_by: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The step script runs in Redis, its reply is lost, the same call is made again: it replays, never repeats."""
    first = enqueue(rt, "webhook-retry", "retry-webhook", hook(n=1)).id
    second = enqueue(rt, "webhook-retry", "retry-webhook", hook(n=2)).id
    rt.redis.script_load(scripts.program("step"))  # so the call runs the script, rather than answering NOSCRIPT
    db = urlsplit(rt.settings.redis_url).path or "/0"
    url = f"redis://127.0.0.1:{proxy.port}{db}"
    via = Runtime(dataclasses.replace(rt.settings, redis_url=url))
    retries = 0 if retried_by == "runner" else 2  # jobctl's own client has none: the runner's `_retrying` retries
    via.__dict__["redis"] = redis.Redis.from_url(url, socket_timeout=0.5, retry=Retry(NoBackoff(), retries))
    runner = Runner(via, ["webhook-retry"], processors={"retry-webhook": lambda p, c: None}, services=object())

    proxy.swallow_next(b"EVALSHA", close=loss == "closed")
    t0 = time.time()
    [taken] = runner.step([], 1).taken
    assert time.time() - t0 < 8
    assert proxy.swallowed == 1 and sum(b"EVALSHA" in r for r in proxy.requests) == 2
    assert ("Redis unavailable" in caplog.text) == (retried_by == "runner")  # whose retry made the second call
    assert any(b"replayed" in r for r in proxy.replies)  # the second call replayed the first
    assert taken.id == first
    assert rt.redis.lrange(keys.queue_list("webhook-retry"), 0, -1) == [second.encode()]
    assert list(rt.redis.hgetall(keys.active(runner.name))) == [first.encode()]
    assert rt.redis.zrange(keys.wip("webhook-retry"), 0, -1) == [taken.member.encode()]
    h = rt.redis.hmget(keys.job(first), ["status", "jc_attempt", "jc_exec"])
    assert h == [b"started", b"1", taken.execution.encode()]
    assert control.show_job(rt, second).status == "queued"

    proxy.swallow_next(b"EVALSHA", close=loss == "closed")
    res = runner.step([Done(taken, "null", 1.0, base64.b64encode(b"null").decode())], 0)
    assert proxy.swallowed == 2 and res.skipped == [] and res.taken == []
    assert control.show_job(rt, first).status == "finished"
    assert _completed(rt.redis, "webhook-retry") == 1
    assert rt.redis.xlen(keys.rq_results(first)) == 1
    assert rt.redis.hgetall(keys.active(runner.name)) == {}
    assert rt.redis.zcard(keys.wip("webhook-retry")) == 0
    assert rt.redis.zscore(keys.finished("webhook-retry"), first) is not None
    assert control.show_job(rt, second).status == "queued"
