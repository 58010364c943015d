"""Fixtures of the command tests: the CLI and a runtime sharing one Redis and one SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobctl.runtime import Runtime
from tests.support.cli import db_env, runtime_for


@pytest.fixture
def env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """CLI environment with a SQLite database of its own."""
    return db_env(cli_env, tmp_path)


@pytest.fixture
def rt(env: dict[str, str], tmp_path: Path) -> Runtime:
    """A runtime on the same Redis and database as the CLI."""
    return runtime_for(env, tmp_path)
