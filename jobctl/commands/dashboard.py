"""`jobctl dashboard`: serve the web dashboard (or rq-dashboard with --rq) until SIGTERM or Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer

from jobctl import control, dashboard
from jobctl.runtime import Runtime


def dashboard_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (non-loopback needs a credential in "
                                                     "the settings).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 9181,
    rq: Annotated[bool, typer.Option("--rq", help="Serve rq-dashboard instead (RQ's view; no dead letters).")]
    = False,
) -> None:
    """Serve the web dashboard: queues, jobs, dead letters, workers, schedules (read-only without a credential)."""
    rt: Runtime = ctx.obj
    dashboard.check_binding(rt, host, rq)
    rt.redis.ping()  # an unreachable Redis is exit 4 now, not an error page later
    typer.echo(f"dashboard on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    if rq:
        control.register_queues(rt)
        raise typer.Exit(dashboard.serve_rq(rt, host, port))
    dashboard.serve(rt, host, port)
