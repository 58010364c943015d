"""`jobctl dashboard`: serve rq-dashboard against the configured Redis."""

from __future__ import annotations

import subprocess
from typing import Annotated

import typer

from jobctl import control, dashboard
from jobctl.runtime import Runtime


def dashboard_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 9181,
) -> None:
    """Serve the web view (rq-dashboard, JSON serializer) until Ctrl-C."""
    rt: Runtime = ctx.obj
    cmd = dashboard.command(host, port)
    control.register_queues(rt)
    typer.echo(f"dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    proc = subprocess.Popen(cmd, env=dashboard.environment(rt))
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        code = 0 if proc.wait() in (0, -15) else 1
    raise typer.Exit(code)
