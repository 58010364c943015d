"""The shared rate limiter: a sliding log in Redis, one atomic Lua round trip per decision (docs/index.md, guarantees).

A scope's log is the zset `keys.rate(scope)` of start times in microseconds. At time `now` a start
counts while `score > now - window`; a new start is recorded only when fewer than `limit` count.
So every half-open window `[t, t + window)` holds at most `limit` recorded starts, while two starts
exactly `window` apart are allowed; no window edge can release a second quota as BullMQ's fixed
window does. Time is Redis server time (`TIME`, µs) unless the caller passes `now_ms`, so hosts with
skewed clocks agree (and µs stamps keep a sub-ms gap from sneaking an extra start into a real 1 s
window). The guarantee needs one non-decreasing clock per scope: do not mix `now_ms` with server
time on one scope. Memory is O(limit) per scope; the key expires once idle for a window.

Embedding in a larger script ("check throttle + limit, then pop a job", atomically): prepend
`lua_library()` and call its local functions; times are Lua numbers in µs:

    jobctl_now_us(arg)                            -> tonumber(arg), or server time if arg is nil/''
    jobctl_throttle_wait_us(key)                  -> µs left on a `keys.throttle(queue)` key, else 0
    jobctl_rate_wait_us(key, limit, window, now)  -> 0 if a slot is free, else µs until one frees
                                                     (trims expired starts; records nothing)
    jobctl_rate_take(key, window, now, member)       records a start; member '' or nil = anonymous

Pass every key in KEYS (cluster-safe); call `take` only after `wait` returned 0 in the same script
and once a job was really popped. E.g. KEYS = rate, throttle, queue; ARGV = limit, window_us, now_us:

    local now, window = jobctl_now_us(ARGV[3]), tonumber(ARGV[2])
    local w = math.max(jobctl_throttle_wait_us(KEYS[2]),
                       jobctl_rate_wait_us(KEYS[1], tonumber(ARGV[1]), window, now))
    if w > 0 then return {w, false} end
    local id = redis.call('RPOP', KEYS[3])
    if id then jobctl_rate_take(KEYS[1], window, now, id) end
    return {0, id}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING

from jobctl import keys
from jobctl.queues import RateLimit
from jobctl.scripts import program, source

if TYPE_CHECKING:
    from redis import Redis

# A worker's limiter counts starts over the window plus this guard band: the take is atomic in Redis, but
# the processor's first instruction (and its external call) comes later in a slot thread, and that
# jitter must not push one start too many into any real one-second window. Measured take-to-start gaps
# in a 4-process pool: p50 ~2 ms, p99 ~47 ms with both cores saturated by other work, hence 100 ms.
GUARD_US = 100_000


@cache
def lua_library() -> str:
    """The Lua chunk of local functions to prepend to a script that embeds the limiter check."""
    return source("lib_rate")


@cache
def _program(name: str) -> str:
    """A limiter script with its libraries, read on first use (importing this module reads no file)."""
    return program(name)


def wait_for(starts: Sequence[int], limit: int, window: int, now: int) -> int:
    """Pure model of the Lua decision (any one time unit): 0 if a start is allowed now, else the wait."""
    live = sorted(t for t in starts if t > now - window)
    if len(live) < limit:
        return 0
    return max(1, live[len(live) - limit] + window - now)


def scope_for(queue: str, rate: RateLimit, job_name: str) -> str:
    """The limiter scope of a queue's policy: the queue, or the queue and job name."""
    return f"{queue}:{job_name}" if rate.scope == "job" else queue


def _now_arg(now_ms: float | None) -> str:
    return "" if now_ms is None else str(round(now_ms * 1000))


class Limiter:
    """Sliding-log limiter for one scope: at most `limit` acquisitions in any window of `per_s` seconds."""

    def __init__(self, redis: Redis, scope: str, limit: int, per_s: float = 1.0) -> None:
        if limit < 1 or per_s <= 0:
            raise ValueError(f"rate limit must be >= 1 per > 0 s, got {limit} per {per_s} s")
        self.redis = redis
        self.scope = scope
        self.key = keys.rate(scope)
        self.limit = limit
        self.window_us = max(1, round(per_s * 1_000_000))
        self._acquire = redis.register_script(_program("rate_acquire"))
        self._usage = redis.register_script(_program("rate_usage"))

    @classmethod
    def for_policy(cls, redis: Redis, queue: str, rate: RateLimit, job_name: str) -> Limiter:
        """The limiter a queue's `RateLimit` asks for."""
        return cls(redis, scope_for(queue, rate, job_name), rate.limit, rate.per_s)

    def decide(self, now_ms: float | None = None, token: str | None = None) -> tuple[int, int]:
        """(µs to wait, 0 if a slot was taken; the time of the decision in µs)."""
        args: list[int | str] = [self.limit, self.window_us, _now_arg(now_ms), token or ""]
        wait_us, at_us = self._acquire(keys=[self.key], args=args)
        return int(wait_us), int(at_us)

    def try_acquire(self, now_ms: float | None = None, token: str | None = None) -> float:
        """0.0 if a slot was taken (recorded), else seconds to wait until one frees (never taken)."""
        return self.decide(now_ms, token)[0] / 1_000_000

    def release(self, token: str) -> None:
        """Give back the slot last taken with `token`, for a job that then did not start."""
        self.redis.zrem(self.key, token)

    def usage(self, now_ms: float | None = None) -> int:
        """How many starts count in the current window; read-only."""
        return int(self._usage(keys=[self.key], args=[self.window_us, _now_arg(now_ms)]))


def gate(redis: Redis, queue: str, rate: RateLimit, job_name: str,
         sleep: Callable[[float], None]) -> Callable[[], None]:
    """A blocking gate for external calls under a queue's limit (its own log, `…:calls`)."""
    limiter = Limiter(redis, scope_for(queue, rate, job_name) + ":calls", rate.limit,
                      rate.per_s + GUARD_US / 1_000_000)

    def wait_for_slot() -> None:
        while (wait_s := limiter.try_acquire()) > 0:
            sleep(wait_s)

    return wait_for_slot


def throttle(redis: Redis, queue: str, seconds: float) -> None:
    """Pause starts on `queue` for `seconds` (HTTP 429), keeping a later expiry if one exists."""
    ms = round(seconds * 1000)
    if ms > 0:
        redis.register_script(_program("throttle"))(keys=[keys.throttle(queue)], args=[ms])


def throttled_for(redis: Redis, queue: str) -> float:
    """Seconds left on the queue's throttle, 0.0 if none; read-only."""
    return max(0, int(redis.pttl(keys.throttle(queue)))) / 1000.0
