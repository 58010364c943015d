"""`jobctl metrics`: Prometheus text exposition, once to stdout or served over HTTP."""

from __future__ import annotations

import sys
import threading
from typing import Annotated

import typer

from jobctl import metrics
from jobctl.errors import UsageError
from jobctl.runtime import Runtime


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"invalid --listen {text!r}: use HOST:PORT, e.g. 0.0.0.0:9464")
    return host.strip("[]") or "0.0.0.0", int(port)


def metrics_cmd(
    ctx: typer.Context,
    listen: Annotated[str | None, typer.Option("--listen", help="Serve /metrics on HOST:PORT until Ctrl-C.",
                                               show_default=False)] = None,
) -> None:
    """The queue figures of `jobctl stats` in Prometheus text format."""
    rt: Runtime = ctx.obj
    if listen is None:
        sys.stdout.write(metrics.exposition(rt).decode())
        return
    host, port = _address(listen)
    try:
        server, thread = metrics.serve(rt, host, port)
    except OSError as exc:  # not an address of this host, port in use, unknown host name, no permission
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    typer.echo(f"serving Prometheus metrics on http://{host}:{server.server_port}/metrics", err=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
        thread.join(5)
        raise typer.Exit(0) from None
