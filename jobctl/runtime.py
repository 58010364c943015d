"""The runtime shared by every command: settings plus lazily opened connections."""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import redis
from redis.driver_info import DriverInfo

from jobctl.config import Settings, mask_url, parses_cleanly
from jobctl.errors import ConfigError, ServiceUnavailable, printable

if TYPE_CHECKING:
    from jobctl.scripts import Scripts


CONNECT_TIMEOUT_S = 3.0  # TCP connect
FIRST_ANSWER_S = 1.5  # the hand-shake (AUTH, SELECT, CLIENT SETINFO) and the first PING: 3 + 1.5 s at worst


def connect_redis(url: str, socket_timeout_s: float = 10.0) -> redis.Redis:
    """A Redis client that fails within 5 s when the server does not answer, even one that accepts
    connections and never replies: a first connection with a short read timeout is probed, then the
    client proper (`socket_timeout_s` for every later command) is returned."""
    if not parses_cleanly(url):  # a client would connect to part of the password as a host name
        raise ConfigError(f"invalid Redis URL {mask_url(url)}: {_url_problem(url, ValueError())}")
    try:
        probe = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=FIRST_ANSWER_S,
                                     single_connection_client=True, driver_info=_driver())
        try:
            probe.ping()
        finally:
            probe.close()
        client = redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=socket_timeout_s, health_check_interval=30,
            driver_info=_driver(),
        )
    except redis.AuthenticationError:
        raise ServiceUnavailable(f"Redis at {mask_url(url)} refused the credentials") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise ServiceUnavailable(f"Redis at {mask_url(url)} is unreachable ({_reason(exc)})") from None
    except redis.ResponseError as exc:  # Redis answered, and refused (an ACL without PING, ...): the caller's
        if "DB index" not in str(exc):  # to report
            raise
        raise ConfigError(f"invalid Redis URL {mask_url(url)}: the server has no such database "
                          f"({_reason(exc)})") from None
    except redis.RedisError as exc:  # an answer that is not RESP: another service listens there (HTTP, ...)
        raise ServiceUnavailable(f"the server at {mask_url(url)} does not speak the Redis protocol "
                                 f"({_reason(exc)})") from None
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {mask_url(url)}: {_url_problem(url, exc)}") from None
    return client


def _reason(exc: Exception) -> str:
    return printable(str(exc).split("\n")[0][:160] or type(exc).__name__)


def _driver() -> DriverInfo:
    """What CLIENT SETINFO reports, as redis-py would, without its `importlib.metadata` scan of every
    installed package (~13 ms per client, twice per command: issue 13)."""
    return DriverInfo(lib_version=redis.__version__)


def _url_problem(url: str, exc: ValueError) -> str:
    """Why a Redis URL was refused, never quoting any part of its credentials or query."""
    if mask_url(url).endswith("://****"):
        return ("it cannot be parsed; percent-encode the special characters of the user name and password "
                "(# as %23, / as %2F, ? as %3F, @ as %40)")
    parts = urlsplit(url)
    text = str(exc)
    for secret in (parts.username, parts.password, parts.query):
        if secret:
            text = text.replace(secret, "****").replace(unquote(secret), "****")
    return printable(text)[:160]


def memory_state(client: redis.Redis) -> tuple[str, str, bool]:
    """(maxmemory, policy, full) from INFO memory, which Redis answers even when out of memory: `full`
    when writes are being refused under noeviction. Redis refuses a write while used memory (less what
    eviction does not count) exceeds maxmemory; a refused write frees its buffers, so the figure hovers
    just below the limit: within `FULL_MARGIN` of it counts as full."""
    mem = client.info("memory")
    limit, policy = int(mem.get("maxmemory", 0) or 0), str(mem.get("maxmemory_policy", "?"))
    used = int(mem.get("used_memory", 0) or 0) - int(mem.get("mem_not_counted_for_evict", 0) or 0)
    full = bool(limit) and policy == "noeviction" and used >= limit * (1 - FULL_MARGIN)
    return str(mem.get("maxmemory_human") or limit), policy, full


FULL_MARGIN = 0.01  # of maxmemory


def out_of_memory(client: redis.Redis | None) -> ServiceUnavailable:
    """The one message for a write Redis refused with OOM: `Redis is out of memory (maxmemory 3.00M, policy
    noeviction)`; the figures are read back when they can be."""
    limit, policy = "?", "noeviction"
    if client is not None:
        with contextlib.suppress(redis.RedisError):
            limit, policy, _full = memory_state(client)
    return ServiceUnavailable(f"Redis is out of memory (maxmemory {limit}, policy {policy}): "
                              "it refuses writes until memory is freed")


_latest: list[weakref.ref[Runtime]] = []


def latest() -> Runtime | None:
    """The runtime built last in this process (the CLI's), for turning an error into its message."""
    return _latest[0]() if _latest else None


@dataclass
class Runtime:
    """Settings plus connections opened on first use, so `--help` never needs Redis."""

    settings: Settings
    _cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _latest[:] = [weakref.ref(self)]

    @cached_property
    def redis(self) -> redis.Redis:
        """The Redis client (connects and pings on first use)."""
        return connect_redis(self.settings.redis_url)

    @cached_property
    def scripts(self) -> Scripts:
        """Lua scripts bound to `redis`."""
        from jobctl.scripts import Scripts

        return Scripts(self.redis)


def opened_client() -> redis.Redis | None:
    """The Redis client of the latest runtime if it was opened (never connects)."""
    rt = latest()
    return rt.__dict__.get("redis") if rt is not None else None
