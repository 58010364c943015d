"""Shared fixtures: a real Redis on a dedicated, flushed database, and Settings pointing at it.

Redis: JOBCTL_TEST_REDIS_URL (default redis://127.0.0.1:6379) with database JOBCTL_TEST_REDIS_DB
(default 13). Each test starts from a flushed database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobctl import config
from jobctl.config import Settings
from jobctl.runtime import Runtime

REDIS_BASE = os.environ.get("JOBCTL_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("JOBCTL_TEST_REDIS_DB", "13"))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """URL of a flushed, dedicated Redis database."""
    url = f"{REDIS_BASE}/{REDIS_DB}"
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.ConnectionError:
        pytest.fail(f"Redis does not answer at {REDIS_BASE}: start it (see README)")
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    """Settings on the test Redis, with data in a temporary directory."""
    env = {"JOBCTL_REDIS_URL": redis_url, "JOBCTL_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    return config.load(env=env, cwd=tmp_path)


@pytest.fixture
def rt(settings: Settings) -> Runtime:
    """A runtime on the test settings."""
    return Runtime(settings)


@pytest.fixture
def cli_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running `jobctl` as a subprocess against the test Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCTL_", "REDIS_"))}
    env.update(JOBCTL_REDIS_URL=redis_url, JOBCTL_DATA_DIR=str(tmp_path / "data"), NO_COLOR="1",
               COLUMNS="200")
    return env
