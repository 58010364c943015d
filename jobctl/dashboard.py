"""`jobctl dashboard`: the binding rules, then jobctl's own dashboard (`jobctl.web`) or, with `--rq`,
rq-dashboard as a child process. Light at import: Flask and werkzeug load only when serving.

Binding rules (both kinds): 127.0.0.1 by default; a non-loopback address needs a credential in the
settings (`JOBCTL_DASHBOARD_TOKEN`, or `JOBCTL_DASHBOARD_USER` + `JOBCTL_DASHBOARD_PASSWORD`), else it is
refused as a usage error (exit 2). rq-dashboard only knows a user and password (HTTP basic auth), and
changes state on plain GETs, so `--rq` on a non-loopback address needs those two.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading

from jobctl.errors import OperationFailed, UsageError
from jobctl.runtime import Runtime


def check_binding(rt: Runtime, host: str, rq: bool = False) -> None:
    """Refuse a non-loopback `host` without a credential (UsageError, exit 2)."""
    from jobctl.web.security import has_credential, is_loopback

    s = rt.settings
    if is_loopback(host):
        return
    if rq and not (s.dashboard_user and s.dashboard_password):
        raise UsageError(f"refusing to serve rq-dashboard on {host}: set JOBCTL_DASHBOARD_USER and "
                         "JOBCTL_DASHBOARD_PASSWORD first (it has no other protection)")
    if not has_credential(s):
        raise UsageError(f"refusing to serve on non-loopback address {host} without a credential: set "
                         "JOBCTL_DASHBOARD_TOKEN, or JOBCTL_DASHBOARD_USER and JOBCTL_DASHBOARD_PASSWORD")


def serve(rt: Runtime, host: str, port: int) -> None:
    """Serve jobctl's dashboard until SIGTERM/SIGINT."""
    from jobctl.web import create_app, security
    from jobctl.web.server import serve as run

    try:
        run(create_app(rt, security.allowed_hosts(host, rt.settings.dashboard_hosts)), host, port)
    except OSError as exc:
        raise OperationFailed(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def command(host: str, port: int) -> list[str]:
    """The rq-dashboard command line (the Redis URL and credentials go through the environment, not `ps`)."""
    if importlib.util.find_spec("rq_dashboard") is None:
        raise OperationFailed("rq-dashboard is not installed: pip install rq-dashboard")
    return [sys.executable, "-m", "rq_dashboard", "--json", "--bind", host, "--port", str(port)]


def environment(rt: Runtime) -> dict[str, str]:
    """rq-dashboard's environment: this process's, the Redis URL, and basic-auth credentials when set."""
    env = {**os.environ, "RQ_DASHBOARD_REDIS_URL": rt.settings.redis_url}
    if rt.settings.dashboard_user and rt.settings.dashboard_password:
        env |= {"RQ_DASHBOARD_USERNAME": rt.settings.dashboard_user,
                "RQ_DASHBOARD_PASSWORD": rt.settings.dashboard_password}
    return env


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies, so even a SIGKILLed
    `jobctl dashboard --rq` leaves no rq-dashboard serving (PR_SET_PDEATHSIG)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def serve_rq(rt: Runtime, host: str, port: int) -> int:
    """Run rq-dashboard until it exits or SIGTERM/SIGINT arrives, which stop it too (never left serving)."""
    proc = subprocess.Popen(command(host, port), env=environment(rt),
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)  # noqa: PLW1509
    stop = threading.Event()

    def forward(*_: object) -> None:
        stop.set()
        if proc.poll() is None:
            proc.terminate()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    try:
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return 0 if stop.is_set() or code in (0, -signal.SIGTERM) else 1
