"""The runtime shared by every command: settings plus lazily opened connections."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import redis

from jobctl.config import Settings, mask_url
from jobctl.errors import ServiceUnavailable

if TYPE_CHECKING:
    from jobctl.scripts import Scripts


def connect_redis(url: str, socket_timeout_s: float = 10.0) -> redis.Redis:
    """A Redis client that fails within seconds when the server does not answer."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=3, socket_timeout=socket_timeout_s, health_check_interval=30
        )
        client.ping()
    except redis.AuthenticationError:
        raise ServiceUnavailable(f"Redis at {mask_url(url)} refused the credentials") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        reason = str(exc).split("\n")[0][:160] or type(exc).__name__
        raise ServiceUnavailable(f"Redis at {mask_url(url)} is unreachable ({reason})") from None
    except ValueError as exc:
        raise ServiceUnavailable(f"invalid Redis URL {mask_url(url)}: {exc}") from None
    return client


@dataclass
class Runtime:
    """Settings plus connections opened on first use, so `--help` never needs Redis."""

    settings: Settings
    _cache: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def redis(self) -> redis.Redis:
        """The Redis client (connects and pings on first use)."""
        return connect_redis(self.settings.redis_url)

    @cached_property
    def scripts(self) -> Scripts:
        """Lua scripts bound to `redis`."""
        from jobctl.scripts import Scripts

        return Scripts(self.redis)
