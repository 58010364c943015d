"""The web view: rq-dashboard (an optional extra) reading jobctl's RQ data in JSON-serializer mode."""

from __future__ import annotations

import importlib.util
import os
import sys

from jobctl.errors import OperationFailed
from jobctl.runtime import Runtime


def command(host: str, port: int) -> list[str]:
    """The rq-dashboard command line (the Redis URL goes through the environment, not `ps`)."""
    if importlib.util.find_spec("rq_dashboard") is None:
        raise OperationFailed("rq-dashboard is not installed: pip install 'jobctl[dashboard]'")
    return [sys.executable, "-m", "rq_dashboard", "--json", "--bind", host, "--port", str(port)]


def environment(rt: Runtime) -> dict[str, str]:
    """The dashboard's environment: this process's plus the Redis URL."""
    return {**os.environ, "RQ_DASHBOARD_REDIS_URL": rt.settings.redis_url}
