"""`jobctl stats`: one row per queue, once or redrawn in place with --watch."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from jobctl import metrics, render
from jobctl.runtime import Runtime


def stats_renderable(rt: Runtime, queues: list[str] | None) -> Table:
    """The stats table of one snapshot."""
    snap = metrics.snapshot(rt, queues)
    s = rt.settings
    why = {q.name: metrics.flags(q, s.queues.get(q.name).backlog_alert, s.queues.get(q.name).failed_alert)
           for q in snap.queues}
    notes = (["RQ workers are suspended (rq suspend): pools take no jobs"] if snap.rq_suspended else []) + \
        [f"non-jobctl RQ worker {w} serves {', '.join(q)}" for w, q in snap.foreign_workers.items()]
    return render.stats_table(snap.generated_at, snap.queues, why, notes)


def stats_cmd(
    ctx: typer.Context,
    queues: Annotated[list[str] | None, typer.Argument(help="Queues to show (default: all).",
                                                       show_default=False)] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Redraw until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.2, help="Seconds between redraws.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with --watch: one document per line).")]
    = False,
) -> None:
    """Waiting, active, delayed, last-hour throughput and failures, workers and dead letters per queue."""
    rt: Runtime = ctx.obj
    try:
        if as_json:
            while True:
                render.print_json(metrics.snapshot(rt, queues).to_json())
                if not watch:
                    return
                time.sleep(interval)
        console = render.stdout()
        if not watch:
            console.print(stats_renderable(rt, queues))
            return
        with Live(stats_renderable(rt, queues), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(stats_renderable(rt, queues), refresh=True)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
