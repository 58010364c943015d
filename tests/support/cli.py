"""CLI test helpers shared by the command test modules: an environment with its own SQLite database,
a runtime on the same services, and a runner for the installed `jobctl` script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from jobctl import config
from jobctl.runtime import Runtime

JOBCTL = shutil.which("jobctl") or str(Path(sys.executable).parent / "jobctl")


def db_env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """CLI environment with a SQLite database of its own."""
    return cli_env | {"JOBCTL_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}"}


def runtime_for(env: dict[str, str], tmp_path: Path) -> Runtime:
    """A runtime on the same Redis and database as the CLI."""
    return Runtime(config.load(env=env, cwd=tmp_path))


def jobctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `jobctl` script."""
    return subprocess.run([JOBCTL, *args], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
