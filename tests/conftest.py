"""Shared fixtures: a real Redis on a dedicated, flushed database, and Settings pointing at it.

Redis: JOBCTL_TEST_REDIS_URL (default redis://127.0.0.1:6379) with database JOBCTL_TEST_REDIS_DB
(default 13). Each test starts from a flushed database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import delete

from jobctl import config, db
from jobctl.config import Settings
from jobctl.runtime import Runtime

REDIS_BASE = os.environ.get("JOBCTL_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("JOBCTL_TEST_REDIS_DB", "13"))
PG_URL = os.environ.get("JOBCTL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


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
def client(redis_url: str) -> redis.Redis:
    """A plain Redis client on the test database (for writing what a test plants)."""
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def cli_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running `jobctl` as a subprocess against the test Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCTL_", "REDIS_"))}
    env.update(JOBCTL_REDIS_URL=redis_url, JOBCTL_DATA_DIR=str(tmp_path / "data"), NO_COLOR="1",
               COLUMNS="200")
    return env


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema of its own, dropped at the end."""
    import psycopg

    try:
        conn = psycopg.connect(PG_URL, connect_timeout=2, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {str(exc).splitlines()[0]}")
    schema = f"jobctl_test_{uuid.uuid4().hex[:10]}"
    conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        db.dispose_engines()
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database-facing test runs on SQLite (a fresh file) and on PostgreSQL (tables emptied)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'app.db'}"
    url: str = request.getfixturevalue("pg_url")
    engine = db.engine_for(url)
    db.init_db(engine)
    with engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(delete(table))
    return url
