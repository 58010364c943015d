"""`jobctl dashboard --rq`: rq-dashboard, kept for those who want RQ's view, shows the five queues (headless
Chromium). jobctl's own dashboard is tested in tests/web/."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from jobctl.producer import enqueue
from jobctl.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
QUEUES = ["email", "push", "webhook-retry", "image-processing", "data-cleanup"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dashboard(cli_env: dict[str, str], rt: Runtime) -> Iterator[str]:
    pytest.importorskip("rq_dashboard", reason="the dashboard extra is not installed")
    enqueue(rt, "push", "send-push", {"userId": "u1", "title": "t", "message": "m"})
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "jobctl", "dashboard", "--rq", "--port", str(port)], env=cli_env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


def test_queues_json_lists_the_five_queues_with_counts(dashboard: str) -> None:
    doc = requests.get(dashboard + "0/data/queues.json", timeout=5).json()
    counts = {q["name"]: q["count"] for q in doc["queues"]}
    assert set(QUEUES) <= set(counts) and counts["push"] == 1


def test_page_in_headless_chromium_shows_the_five_queues(dashboard: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed (./dev test installs it)")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=8000", "--dump-dom",
                          dashboard], capture_output=True, text=True, timeout=90).stdout
    for name in QUEUES:
        assert f"/0/view/jobs/{name}/" in dom, name
