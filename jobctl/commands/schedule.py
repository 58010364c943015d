"""`jobctl schedule list|install|remove` and `jobctl scheduler` (the loop that fires them)."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from typing import Annotated

import typer

from jobctl import render, schedules
from jobctl.durations import iso
from jobctl.errors import UsageError
from jobctl.runtime import Runtime

app = typer.Typer(help="Recurring schedules kept in Redis (run by `jobctl scheduler`).", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("list")
def list_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Installed schedules with their next run time (UTC)."""
    rt: Runtime = ctx.obj
    now = datetime.now(UTC)
    rows = [s.to_json() | {"next_run": iso(schedules.next_due(s, now))} for s in schedules.load_all(rt)]
    if as_json:
        render.print_json(rows)
        return
    render.stdout().print(render.table("Schedules", ["name", "when", "runs", "next run"], [
        (r["name"], f"cron {r['cron']}" if r["cron"] else f"every {r['every_s']}s",
         r["command"] or f"{r['job']} on {r['queue']}", r["next_run"]) for r in rows]))


@app.command("install")
def install_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Install the default schedules (cleanups daily at 02:00 UTC, health every 5 minutes); idempotent."""
    rt: Runtime = ctx.obj
    out = schedules.install(rt, schedules.DEFAULTS, datetime.now(UTC))
    if as_json:
        render.print_json([{"name": name, "status": status} for name, status in out])
        return
    for name, status in out:
        typer.echo(f"{name}: {status}")


@app.command("remove")
def remove_cmd(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Schedule names.", show_default=False)] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every schedule.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove schedules by name, or --all."""
    if not names and not everything:
        raise UsageError("name at least one schedule, or --all")
    if names and everything:
        raise UsageError("give schedule names or --all, not both")
    removed = schedules.remove(ctx.obj, names or [], everything=everything)
    if as_json:
        render.print_json({"removed": removed})
    else:
        typer.echo(f"removed {len(removed)} schedule(s){': ' if removed else ''}{', '.join(removed)}")


def scheduler_cmd(ctx: typer.Context) -> None:
    """Fire installed schedules when due (any number of schedulers may run: each run fires once)."""
    rt: Runtime = ctx.obj
    if not schedules.load_all(rt):
        typer.echo("no schedules installed yet: run `jobctl schedule install`; waiting for some", err=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    schedules.run(rt, stop)
