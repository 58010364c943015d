"""`jobctl dashboard` as a real subprocess: binding rules (exit 2, one line), serving until SIGTERM (then the
port is closed and the exit code 0), `--rq` never leaving rq-dashboard serving, and a light import."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.cli import JOBCTL, jobctl
from tests.web.conftest import free_port


def _start(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen([JOBCTL, "dashboard", "--port", str(port), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            requests.get(url, timeout=1)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("dashboard did not answer within 30 s")


def _closed(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return True
    return False


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com"])
def test_non_loopback_host_without_a_credential_is_refused(cli_env: dict[str, str], host: str) -> None:
    r = jobctl(cli_env, "dashboard", "--host", host, "--port", str(free_port()))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "refusing to serve on non-loopback address" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_rq_dashboard_needs_a_user_and_password_off_loopback(cli_env: dict[str, str]) -> None:
    r = jobctl(cli_env | {"JOBCTL_DASHBOARD_TOKEN": "a-token-only"}, "dashboard", "--rq", "--host", "0.0.0.0")
    assert r.returncode == 2 and "JOBCTL_DASHBOARD_USER and JOBCTL_DASHBOARD_PASSWORD" in r.stderr
    assert "a-token-only" not in r.stderr + r.stdout


def test_unreachable_redis_is_exit_4(cli_env: dict[str, str]) -> None:
    r = jobctl(cli_env | {"JOBCTL_REDIS_URL": f"redis://:pw@127.0.0.1:{free_port()}/0"}, "dashboard",
               "--port", str(free_port()))
    assert r.returncode == 4 and "unreachable" in r.stderr and "pw" not in r.stderr.replace("****", "")


def test_sigterm_stops_the_dashboard(cli_env: dict[str, str]) -> None:
    proc, url = _start(cli_env)
    assert "read-only" in requests.get(url, timeout=5).text
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert _closed(url)
    assert "Traceback" not in err


def test_served_on_every_interface_with_a_credential_needs_sign_in(cli_env: dict[str, str]) -> None:
    proc, url = _start(cli_env | {"JOBCTL_DASHBOARD_TOKEN": "s3cret-token-value"}, "--host", "0.0.0.0")
    try:
        r = requests.get(url, timeout=5, allow_redirects=False)
        assert r.status_code == 302 and "/login" in r.headers["Location"]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def test_sigterm_stops_rq_dashboard_and_its_child(cli_env: dict[str, str]) -> None:
    pytest.importorskip("rq_dashboard", reason="rq-dashboard is not installed")
    proc, url = _start(cli_env, "--rq")
    assert requests.get(url, timeout=5).ok
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "rq-dashboard runs as a child process"
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert _closed(url)
    for pid in children:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split()[2] == "Z"  # gone, or a zombie nobody reaped yet


def test_the_command_module_imports_no_web_framework() -> None:
    code = ("import sys, jobctl.commands.dashboard; "
            "print(','.join(sorted(m for m in ('flask', 'werkzeug', 'jinja2', 'a2wsgi', 'markupsafe') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_stopping_lets_an_in_flight_request_finish() -> None:
    import threading

    from tests.web.conftest import Served

    finished = threading.Event()

    def slow(environ: dict[str, object], start_response: object) -> list[bytes]:
        time.sleep(1.0)
        start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
        finished.set()
        return [b"finished"]

    served = Served(slow)
    got: list[requests.Response] = []
    t = threading.Thread(target=lambda: got.append(requests.get(served.url, timeout=10)))
    t.start()
    time.sleep(0.3)  # the request is in the app now
    served.close()
    assert finished.is_set()  # close() returned only after the request's thread was done
    t.join(10)
    assert got and got[0].text == "finished"
    assert _closed(served.url)


def test_a_killed_rq_launcher_takes_rq_dashboard_with_it(cli_env: dict[str, str]) -> None:
    pytest.importorskip("rq_dashboard", reason="rq-dashboard is not installed")
    proc, url = _start(cli_env, "--rq")
    children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                               text=True).stdout.split()]
    os.kill(proc.pid, signal.SIGKILL)  # no handler runs: the kernel's parent-death signal stops the child
    proc.communicate(timeout=15)
    try:
        deadline = time.monotonic() + 15
        while not _closed(url):
            assert time.monotonic() < deadline, "rq-dashboard still serving after its launcher was killed"
            time.sleep(0.2)
    finally:
        for pid in children:  # never leave one behind, even when the check failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
