"""CLI test helpers shared by the command test modules: an environment with its own SQLite database,
a runtime on the same services, and a runner for the installed `jobctl` script."""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
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


def in_pty(env: dict[str, str], *args: str, rows: int = 40, columns: int = 120, cwd: Path | None = None,
           stdout_is_tty: bool = True) -> tuple[int, str, str]:
    """Run the installed `jobctl` with stderr (and stdout unless told otherwise) on a pseudo-terminal of
    `columns` x `rows`: (exit code, what the terminal received, what a piped stdout received)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen([JOBCTL, *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL, stderr=slave,
                            stdout=slave if stdout_is_tty else subprocess.PIPE)
    os.close(slave)
    screen = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        screen += data
    piped = proc.stdout.read() if proc.stdout else b""
    rc = proc.wait(timeout=60)
    os.close(master)
    return rc, screen.decode(errors="replace"), piped.decode()
