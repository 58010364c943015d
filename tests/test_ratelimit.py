"""The shared limiter against a real Redis (db 15): decisions, boundaries, many processes, read-only reads."""

from __future__ import annotations

import multiprocessing as mp
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis

from jobctl import keys
from jobctl.queues import RateLimit
from jobctl.ratelimit import Limiter, lua_library, scope_for, throttle, throttled_for, wait_for

URL = "redis://127.0.0.1:6379/15"
WRITES = ("zadd", "zremrangebyscore", "zrem", "pexpire", "set", "del")


def _redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(URL, socket_connect_timeout=1, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"needs a Redis server at {URL}: {exc}", allow_module_level=True)
    return client


@pytest.fixture
def r() -> Iterator[redis.Redis]:
    client = _redis_or_skip()
    client.flushdb()
    yield client
    client.close()


def _scope() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def max_in_window(times: Sequence[int], window: int) -> int:
    """Most starts in any half-open window [t, t + window); the max is reached at some start t."""
    ts = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ts):
        while ts[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# --- pure arithmetic -------------------------------------------------------------------------

@pytest.mark.parametrize(("starts", "limit", "now", "expected"), [
    ([], 1, 0, 0),
    ([0, 100], 3, 200, 0),
    ([0, 100, 200], 3, 500, 500),
    ([0, 100, 200], 3, 999, 1),
    ([0, 100, 200], 3, 1000, 0),          # exactly one window later: the oldest no longer counts
    ([0, 100, 200, 300, 400], 2, 450, 850),  # over the limit (lowered): wait for the 4th newest
])
def test_wait_for_table(starts: list[int], limit: int, now: int, expected: int) -> None:
    assert wait_for(starts, limit, 1000, now) == expected


# --- decisions with time passed in (ms in, µs out) ------------------------------------------

CASES: dict[str, tuple[int, float, list[tuple[int, int]]]] = {
    # name: (limit, per_s, [(now_ms, expected wait in ms; 0 = taken)])
    "limit reached": (3, 1.0, [(0, 0), (0, 0), (0, 0), (0, 1000), (1, 999)]),
    "wait computed exactly": (3, 1.0, [(0, 0), (100, 0), (200, 0), (500, 500), (650, 350)]),
    "boundary exactly at window": (3, 1.0, [(0, 0), (100, 0), (200, 0), (999, 1), (1000, 0), (1000, 100)]),
    "window slide": (3, 1.0, [(0, 0), (100, 0), (200, 0), (1000, 0), (1050, 50), (1100, 0),
                              (1200, 0), (1300, 700), (2000, 0), (2000, 100)]),
    "limit one, quarter second": (1, 0.25, [(0, 0), (10, 240), (249, 1), (250, 0), (251, 249)]),
    "per minute": (2, 60.0, [(0, 0), (30_000, 0), (59_999, 1), (60_000, 0), (60_000, 30_000)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_decisions_table(r: redis.Redis, name: str) -> None:
    limit, per_s, steps = CASES[name]
    lim = Limiter(r, _scope(), limit, per_s)
    for now_ms, wait_ms in steps:
        wait_us, at_us = lim.decide(now_ms)
        assert (now_ms, wait_us) == (now_ms, wait_ms * 1000)
        assert at_us == now_ms * 1000


def test_try_acquire_seconds_and_usage(r: redis.Redis) -> None:
    lim = Limiter(r, _scope(), 2, 1.0)
    assert [lim.try_acquire(t) for t in (0, 250, 400)] == [0.0, 0.0, 0.6]
    assert [lim.usage(t) for t in (400, 999, 1000, 1249, 1250)] == [2, 2, 1, 1, 0]
    assert 0 < r.pttl(lim.key) <= 1000


def test_refused_attempts_are_never_recorded(r: redis.Redis) -> None:
    lim = Limiter(r, _scope(), 1, 1.0)
    assert lim.try_acquire(0) == 0.0
    for t in range(1, 1000, 37):
        assert lim.try_acquire(t) > 0
    assert r.zcard(lim.key) == 1 and lim.try_acquire(1000) == 0.0


def test_lowered_limit_waits_for_enough_expiries(r: redis.Redis) -> None:
    scope = _scope()
    wide = Limiter(r, scope, 5, 1.0)
    assert [wide.try_acquire(t) for t in (0, 100, 200, 300, 400)] == [0.0] * 5
    assert Limiter(r, scope, 2, 1.0).decide(450)[0] == 850_000


def test_release_gives_back_the_newest_start_of_a_token(r: redis.Redis) -> None:
    lim = Limiter(r, _scope(), 2, 1.0)
    assert lim.try_acquire(0, token="job-1") == 0.0
    assert lim.try_acquire(10, token="job-1") == 0.0   # a re-start of the same job still counts
    assert lim.usage(10) == 2 and lim.try_acquire(20, token="job-2") > 0
    lim.release("job-1")                                # the start at 10 did not happen
    assert lim.usage(20) == 1
    assert lim.try_acquire(30, token="job-2") == 0.0
    assert lim.decide(40)[0] == 960_000                 # the start at 0 still counts, until 1000
    lim.release("never-taken")
    assert lim.usage(40) == 2


@pytest.mark.parametrize("seed", range(6))
def test_random_times_never_overfill_a_window(r: redis.Redis, seed: int) -> None:
    rng = random.Random(seed)
    limit, window_ms = rng.randint(1, 6), rng.choice([50, 100, 250, 1000])
    lim = Limiter(r, _scope(), limit, window_ms / 1000)
    now, accepted = 0, list[int]()
    for _ in range(250):
        now += rng.choice([0, 0, 1, rng.randint(0, window_ms // 3), window_ms - 1, window_ms])
        expected = wait_for(accepted, limit, window_ms, now)
        wait_us, _ = lim.decide(now)
        assert wait_us == expected * 1000, (now, accepted[-limit:])
        if wait_us == 0:
            accepted.append(now)
    assert max_in_window(accepted, window_ms) == limit


# --- many processes, one server clock --------------------------------------------------------

def _hammer(scope: str, start_us: int, end_us: int, out: Any) -> None:
    client = redis.Redis.from_url(URL)
    lim = Limiter(client, scope, 30, 1.0)
    sec, usec = client.time()
    time.sleep(max(0.0, (start_us - sec * 1_000_000 - usec) / 1e6))
    taken, costs = [], []
    while True:
        t0 = time.perf_counter()
        wait_us, at_us = lim.decide()
        costs.append(time.perf_counter() - t0)
        if at_us >= end_us:
            break
        if wait_us == 0:
            taken.append(at_us)
        else:
            time.sleep(wait_us / 1e6)
    out.put((taken, sorted(costs)[len(costs) // 2]))


def test_four_processes_share_one_limit(r: redis.Redis) -> None:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    sec, usec = r.time()
    start_us = sec * 1_000_000 + usec + 300_000
    end_us = start_us + 3_000_000
    scope = _scope()
    procs = [ctx.Process(target=_hammer, args=(scope, start_us, end_us, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=10) for _ in procs]
    for p in procs:
        p.join(timeout=5)
    taken = sorted(t for ts, _ in results for t in ts)
    worst = max_in_window(taken, 1_000_000)
    rate = len(taken) / 3.0
    median_us = max(c for _, c in results) * 1e6
    print(f"\nmax starts in any 1 s window: {worst}; achieved {rate:.1f}/s; "
          f"slowest median decision {median_us:.0f} µs; per process {[len(ts) for ts, _ in results]}")
    assert all(p.exitcode == 0 for p in procs)
    assert worst <= 30
    assert rate >= 27


# --- reads never write -----------------------------------------------------------------------

def _write_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in WRITES)


def test_usage_and_throttled_for_issue_no_write(r: redis.Redis) -> None:
    lim = Limiter(r, _scope(), 3, 1.0)
    for t in (0, 100, 200):
        lim.try_acquire(t)
    throttle(r, "push", 5)
    ttl_before = r.pttl(lim.key)
    for _ in range(5):  # commandstats are server-wide: retry if another client wrote meanwhile
        before = _write_calls(r)
        counts = [lim.usage(t) for t in (150, 5000)] * 10
        left = throttled_for(r, "push")
        if _write_calls(r) == before:
            break
    else:
        pytest.fail("usage()/throttled_for() appear to issue write commands")
    assert counts[:2] == [3, 0] and 4.0 < left <= 5.0
    assert r.zcard(lim.key) == 3 and r.pttl(lim.key) <= ttl_before  # nothing trimmed or refreshed


def test_usage_runs_as_a_read_only_acl_user(r: redis.Redis) -> None:
    user, password = f"jc-ro-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    try:
        r.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=[
            "+@read", "+@scripting", "+@connection", "+time", "+select", "+client", "-@write"])
    except redis.ResponseError as exc:
        pytest.skip(f"cannot create an ACL user: {exc}")
    try:
        ro = redis.Redis.from_url(URL, username=user, password=password)
        scope = _scope()
        Limiter(r, scope, 3, 1.0).try_acquire(0)
        lim = Limiter(ro, scope, 3, 1.0)
        assert lim.usage(10) == 1 and lim.usage() == 0 and throttled_for(ro, "push") == 0.0
        with pytest.raises(redis.ResponseError):
            lim.try_acquire(10)  # proves the user really cannot write
        ro.close()
    finally:
        r.acl_deluser(user)


# --- throttle (HTTP 429) ----------------------------------------------------------------------

def test_throttle_keeps_the_later_expiry(r: redis.Redis) -> None:
    assert throttled_for(r, "push") == 0.0
    throttle(r, "push", 0)
    assert not r.exists(keys.throttle("push"))
    throttle(r, "push", 2)
    assert 1.9 < throttled_for(r, "push") <= 2.0
    throttle(r, "push", 0.5)
    assert 1.9 < throttled_for(r, "push") <= 2.0
    throttle(r, "push", 7.5)
    assert 7.4 < throttled_for(r, "push") <= 7.5
    assert throttled_for(r, "email") == 0.0


# --- wiring for other modules -----------------------------------------------------------------

def test_policy_scopes_and_embeddable_library(r: redis.Redis) -> None:
    assert scope_for("push", RateLimit(30), "send-push") == "push"
    assert scope_for("email", RateLimit(100, 1.0, "job"), "send-email") == "email:send-email"
    lim = Limiter.for_policy(r, "email", RateLimit(1, 1.0, "job"), "send-email")
    assert lim.key == keys.rate("email:send-email") and lim.window_us == 1_000_000
    # the documented embedding: throttle + limit + pop in one script
    pop = r.register_script(lua_library() + """
local now, window = jobctl_now_us(ARGV[3]), tonumber(ARGV[2])
local w = math.max(jobctl_throttle_wait_us(KEYS[2]),
                   jobctl_rate_wait_us(KEYS[1], tonumber(ARGV[1]), window, now))
if w > 0 then return {w, false} end
local id = redis.call('RPOP', KEYS[3])
if id then jobctl_rate_take(KEYS[1], window, now, id) end
return {0, id}
""")
    ks = [lim.key, keys.throttle("email"), "test:embed:list"]
    args = [1, 1_000_000]
    assert pop(keys=ks, args=[*args, 0]) == [0, None]            # nothing to pop: no slot taken
    r.lpush("test:embed:list", "a", "b")
    assert pop(keys=ks, args=[*args, 0]) == [0, b"a"]
    assert pop(keys=ks, args=[*args, 500_000]) == [500_000, None]  # limited: "b" stays queued
    throttle(r, "email", 3)
    assert pop(keys=ks, args=[*args, 1_000_000])[0] > 2_900_000
    r.delete(keys.throttle("email"))
    assert pop(keys=ks, args=[*args, 1_000_000]) == [0, b"b"]
    assert lim.usage(1000) == 1 and r.zscore(lim.key, "b") == 1_000_000


def test_call_gate_holds_the_limit_for_external_calls(r: redis.Redis) -> None:
    """Four threads pass the gate 24 times under 8 per 0.5 s: no window sees more than 8 calls."""
    import threading
    import time

    from jobctl.queues import RateLimit
    from jobctl.ratelimit import gate

    rate = RateLimit(8, 0.5)
    scope = _scope()
    calls: list[float] = []
    lock = threading.Lock()

    def caller() -> None:
        wait = gate(r, scope, rate, "send-push", time.sleep)
        for _ in range(6):
            wait()
            with lock:
                calls.append(time.time())

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps = sorted(int(c * 1_000_000) for c in calls)
    assert len(stamps) == 24 and max_in_window(stamps, 500_000) <= 8
    assert r.exists(f"jobctl:rate:{scope}:calls") == 1
