"""What the runtime tests share: payload builders (valid `retry-webhook` and `send-push` payloads) and
the launcher of harness pools."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

HOOK = {"eventId": "e", "eventType": "t", "eventData": {}, "attemptNumber": 0}
PUSH = {"userId": "u", "title": "t", "message": "m"}


def hook(**data: Any) -> dict[str, Any]:
    """A webhook payload whose eventData steers the harness's processor (sleep, fail, once…)."""
    return HOOK | {"eventData": data}


def push(**data: Any) -> dict[str, Any]:
    """A push payload whose data steers the harness's processor."""
    return PUSH | {"data": data}


class Pools:
    """Harness pools (`tests.support.pool_harness`) started in their own process groups, stderr to files."""

    def __init__(self, redis_url: str, tmp_path: Path) -> None:
        self.redis_url, self.tmp_path = redis_url, tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, queues: str, processes: int, *args: str) -> subprocess.Popen[bytes]:
        """One pool: `python -m tests.support.pool_harness URL QUEUES PROCESSES ARGS…`."""
        cmd = [sys.executable, "-m", "tests.support.pool_harness", self.redis_url, queues, str(processes), *args]
        err = (self.tmp_path / f"pool{len(self.procs)}.err").open("wb")
        self.procs.append(subprocess.Popen(cmd, cwd=ROOT, stderr=err, start_new_session=True))
        return self.procs[-1]

    def kill_all(self) -> None:
        """SIGKILL every pool still running (whole process groups)."""
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
