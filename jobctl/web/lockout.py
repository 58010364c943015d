"""Sign-in lockout per client address, shared through Redis by every process serving the dashboard.

Each sign-in attempt is recorded in the client's sliding log `keys.rate("dashboard-login:{address}")` (a zset
of Redis server times, seconds) *before* the credential is checked, in one WATCH/MULTI transaction with the
check of the log, so parallel guesses cannot slip past the count; a correct sign-in deletes the log. Once
`threshold` attempts that failed are in the log, the client is refused (HTTP 429, the credential not even
checked, nothing recorded) for `base_s`, doubling with every further failure up to `max_s`: the lockout
runs from the newest failure. A log idle for `memory_s` expires, and with it the growth. The rule is the
pure `locked_for_s`; `attempt` and `succeeded` only apply it.

Behind a reverse proxy every client has the proxy's address, so they share one lockout: wrap the app in
werkzeug's `ProxyFix` (which sets the client address from `X-Forwarded-For`) when the proxy is trusted.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import redis

from jobctl import keys


@dataclass(frozen=True)
class Lockout:
    """How many failed sign-ins a client may make, and for how long it is refused after them."""

    threshold: int = 5
    base_s: float = 30.0
    max_s: float = 900.0
    memory_s: float = 3600.0  # a log idle this long is forgotten (at least max_s, so a lockout outlives nothing)

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.base_s <= 0 or self.max_s < self.base_s or self.memory_s < self.max_s:
            raise ValueError("Lockout needs threshold >= 1 and 0 < base_s <= max_s <= memory_s")


def locked_for_s(failures: Sequence[float], now: float, p: Lockout) -> float:
    """Seconds a client with these failed sign-ins (Redis times, s) is still refused at `now` (0: free)."""
    recent = [t for t in failures if t > now - p.memory_s]
    if len(recent) < p.threshold:
        return 0.0
    period = min(p.base_s * 2 ** (len(recent) - p.threshold), p.max_s)
    return max(0.0, max(recent) + period - now)


def _key(client: str) -> str:
    return keys.rate(f"dashboard-login:{client}")


def attempt(r: redis.Redis, client: str, p: Lockout) -> float:
    """Seconds `client` must still wait (nothing recorded), or 0 after recording this attempt as a failure
    until `succeeded` says otherwise."""
    key = _key(client)
    with r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                sec, usec = cast(tuple[int, int], pipe.time())  # immediate mode while watching
                now = sec + usec / 1e6
                logged = cast(list[tuple[bytes, float]], pipe.zrangebyscore(key, now - p.memory_s, "+inf",
                                                                            withscores=True))
                failures = [float(score) for _, score in logged]
                wait = locked_for_s(failures, now, p)
                if wait > 0:
                    pipe.unwatch()
                    return wait
                pipe.multi()
                pipe.zremrangebyscore(key, "-inf", now - p.memory_s)
                pipe.zadd(key, {uuid.uuid4().hex: now})
                pipe.expire(key, int(p.memory_s) + 1)
                pipe.execute()
                return 0.0
            except redis.WatchError:  # another attempt of this client changed the log first: look again
                continue


def succeeded(r: redis.Redis, client: str) -> None:
    """Forget `client`'s failed sign-ins (its attempt was right)."""
    r.delete(_key(client))
