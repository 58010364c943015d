"""`jobctl schedule list|install|remove` and `jobctl scheduler` (the loop that fires them)."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from typing import Annotated

import typer

from jobctl import render, schedules
from jobctl.durations import iso
from jobctl.errors import UsageError, printable
from jobctl.runtime import Runtime

app = typer.Typer(help="Recurring schedules kept in Redis (run by `jobctl scheduler`).", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("list")
def list_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Installed schedules with their next run time (UTC).

    An entry that is not a valid schedule (not JSON, wrong fields, unknown command, bad interval or cron
    string) is listed as invalid with the reason, and the scheduler skips it; in `--json` each row has
    `valid`, and an invalid one `error` and `raw` (the stored text)."""
    rt: Runtime = ctx.obj
    now = datetime.now(UTC)
    good, bad = schedules.load(rt)
    rows = sorted([*(s.to_json() | {"next_run": iso(schedules.next_due(s, now)), "valid": True} for s in good),
                   *(b.to_json() for b in bad)], key=lambda r: r["name"])
    if as_json:
        render.print_json(rows)
        return
    render.stdout().print(render.table("Schedules", ["name", "when", "runs", "next run"], [
        (r["name"], f"cron {r['cron']}" if r["cron"] else f"every {r['every_s']}s",
         r["command"] or f"{r['job']} on {r['queue']}", r["next_run"]) if r["valid"] else
        (r["name"], "invalid, skipped", r["error"], "—") for r in rows]))


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
        typer.echo(printable(f"removed {len(removed)} schedule(s){': ' if removed else ''}{', '.join(removed)}"))


def scheduler_cmd(ctx: typer.Context) -> None:
    """Fire installed schedules when due (any number of schedulers may run: each run fires once).

    An invalid entry is skipped, with one log line when it is first seen (see `schedule list`)."""
    rt: Runtime = ctx.obj
    try:
        empty = not schedules.load_all(rt)
    except schedules.StoreUnreadable:
        empty = False  # run() logs why, once
    if empty:
        typer.echo("no schedules installed yet: run `jobctl schedule install`; waiting for some", err=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    schedules.run(rt, stop)
