"""RQ's own tools (the `rq` CLI, rq-dashboard) and jobctl pools as subprocesses, side by side on one Redis.

`Bench` owns one test's configuration (a `jobctl.toml`, a SQLite dead-letter store) and every process
it starts: pools run `tests.support.pool_harness` with the production hooks, so dead letters land in
the test's own database. Each process's stderr goes to a file (a pipe would fill up and block a pool
that logs a lot); `Bench.close` kills whatever is still running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import requests

from jobctl import config
from jobctl.deadletter import store_for
from jobctl.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
QUEUE = "webhook-retry"
JOB = "retry-webhook"


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, extra: Callable[[], Any] | None = None) -> None:
    """Poll `cond` every 50 ms until it is true; AssertionError naming `what` after `timeout_s`."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {extra() if extra else ''}")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A started subprocess and the file its stderr goes to."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log = log
        with log.open("wb") as fh:
            self.popen = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=fh, env=env,
                                          start_new_session=True)

    @property
    def pid(self) -> int:
        """Its process id (its process group's too)."""
        return self.popen.pid

    def alive(self) -> bool:
        """Still running."""
        return self.popen.poll() is None

    def stderr(self) -> str:
        """What it wrote on stderr so far."""
        return self.log.read_text(errors="replace")

    def signal(self, signum: int, group: bool = False) -> None:
        """Send a signal to it (or to its whole process group)."""
        if group:
            os.killpg(self.pid, signum)
        else:
            self.popen.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        """Its exit code, waiting at most `timeout_s`."""
        return self.popen.wait(timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL its process group (if still running) and reap it."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait()


class Bench:
    """One test's jobctl configuration, runtime and subprocesses."""

    def __init__(self, redis_url: str, tmp: Path, toml: str = "") -> None:
        self.redis_url = redis_url
        self.tmp = tmp
        self.toml = tmp / "jobctl.toml"
        self.database_url = f"sqlite:///{tmp / 'dlq.db'}"
        self.procs: list[Proc] = []
        self._n = 0
        self.configure(toml)
        # the tables exist before any pool starts, as after `jobctl db init`: slots dead-lettering at once
        # into a fresh database race to create them (see the report of tests/test_rq_interop.py)
        store_for(self.rt).ready()

    def configure(self, toml: str) -> None:
        """Rewrite jobctl.toml (attempts are fixed at enqueue: configure before enqueueing)."""
        self.toml.write_text(toml)
        env = {"HOME": str(self.tmp), "JOBCTL_DATA_DIR": str(self.tmp / "data"),
               "JOBCTL_DATABASE_URL": self.database_url}
        self.rt = Runtime(config.load(env=env, config=self.toml, redis_url=self.redis_url))

    @property
    def redis(self) -> redis.Redis:
        """The runtime's Redis client."""
        return self.rt.redis

    def _log(self, what: str) -> Path:
        self._n += 1
        return self.tmp / f"{self._n:02d}-{what}.log"

    def _start(self, args: list[str], what: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(args, self._log(what), env)
        self.procs.append(proc)
        return proc

    def pool(self, *extra: str, processes: int = 1) -> Proc:
        """A jobctl pool (test processors, production hooks) serving webhook-retry, in the background."""
        args = [sys.executable, "-m", "tests.support.pool_harness", self.redis_url, QUEUE, str(processes),
                "--config", str(self.toml), "--hooks", "--database-url", self.database_url, *extra]
        return self._start(args, "pool")

    def burst(self, timeout_s: float = 20) -> str:
        """Run a `--burst` pool to the end: it must exit 0 without a traceback; returns its stderr."""
        proc = self.pool("--burst")
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"burst pool still running after {timeout_s}s:\n{proc.stderr()[-3000:]}") from None
        err = proc.stderr()
        assert code == 0, f"burst pool exited {code}:\n{err[-3000:]}"
        assert "Traceback" not in err, err[-3000:]
        return err

    def rq(self, *args: str, timeout_s: float = 20, clean: bool = True) -> subprocess.CompletedProcess[str]:
        """Run RQ's CLI against the test database (`--url` appended); it must exit 0 and, when `clean`,
        print no traceback (`rq worker` logs the traceback of every job it fails)."""
        res = subprocess.run([str(BIN / "rq"), *args, "--url", self.redis_url], cwd=self.tmp, capture_output=True,
                             text=True, timeout=timeout_s)
        assert res.returncode == 0, f"rq {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
        assert not clean or "Traceback" not in res.stderr, res.stderr
        return res

    def rq_worker(self, *args: str) -> Proc:
        """A real `rq worker` (JSON serializer) on webhook-retry, in the background."""
        return self._start([str(BIN / "rq"), "worker", "-S", "rq.serializers.JSONSerializer", *args, QUEUE,
                            "--url", self.redis_url], "rq-worker")

    def jobctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run jobctl's CLI on the test Redis, database and config."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCTL_", "REDIS_"))}
        env.update(HOME=str(self.tmp), JOBCTL_DATA_DIR=str(self.tmp / "data"), NO_COLOR="1", COLUMNS="200")
        return subprocess.run([str(BIN / "jobctl"), "--redis-url", self.redis_url, "--database-url",
                               self.database_url, "--config", str(self.toml), *args],
                              cwd=self.tmp, capture_output=True, text=True, timeout=30, env=env)

    def dashboard(self) -> str:
        """rq-dashboard in JSON-serializer mode; returns its base URL once it answers."""
        port = free_port()
        proc = self._start([str(BIN / "rq-dashboard"), "--redis-url", self.redis_url, "--port", str(port),
                            "--bind", "127.0.0.1", "--json"], "dashboard")
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.alive(), proc.stderr()
            try:
                return requests.get(f"{base}/0/data/queues.json", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_for(up, 15, "rq-dashboard to answer", proc.stderr)
        return base

    def close(self) -> None:
        """Kill every process still running."""
        for proc in self.procs:
            proc.kill()
