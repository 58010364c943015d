"""`jobctl stats`: one row per queue, once, or a live view redrawn in place with --watch.

The live view (`render.watch_view`) adds the last hour's activity per queue, the current rate and
the time to drain, slots in use of the cap, the limiter's use, and a workers panel. Each frame is
one snapshot (`metrics.snapshot`, read-only) written in one piece, inside a synchronized-update
bracket (DEC mode 2026) that terminals without it ignore, so a redraw never shows half a frame.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobctl import jsonout, metrics
from jobctl.completion import queue_names
from jobctl.runtime import Runtime

if TYPE_CHECKING:
    from rich.console import Console

SYNC_BEGIN, SYNC_END = "\x1b[?2026h", "\x1b[?2026l"


def _judged(rt: Runtime, snap: metrics.Snapshot) -> tuple[dict[str, tuple[str, ...]], dict[str, dict[str, str]],
                                                          list[str]]:
    """(flags, threshold breaches, notes) of a snapshot, against each queue's health thresholds."""
    s = rt.settings
    why, hit = {}, {}
    for q in snap.queues:
        p = s.queues.get(q.name)
        why[q.name] = metrics.flags(q, p.backlog_alert, p.failed_alert)
        hit[q.name] = metrics.breaches(q, p.backlog_alert, p.failed_alert)
    notes = (["RQ workers are suspended (rq suspend): pools take no jobs"] if snap.rq_suspended else []) + \
        [f"non-jobctl RQ worker {w} serves {', '.join(q)}" for w, q in snap.foreign_workers.items()]
    if snap.dead_letters_error:
        notes.append(f"dead letters not counted: {snap.dead_letters_error}")
    notes += [f"Redis key {k} holds a {t}, not what jobctl and RQ keep there: counted as empty (see jobctl health)"
              for k, t in snap.broken_keys.items()]
    delayed = sum(q.delayed for q in snap.queues)
    if delayed and not snap.scheduler_alive:
        notes.append(f"{delayed} delayed job(s) but no scheduler heartbeat in 30 s")
    return why, hit, notes


def stats_renderable(rt: Runtime, queues: list[str] | None, width: int | None = None) -> Any:
    """The stats table of one snapshot, columns dropped to fit `width`."""
    from jobctl import render

    snap = metrics.snapshot(rt, queues)
    why, hit, notes = _judged(rt, snap)
    return render.stats_table(snap.generated_at, snap.queues, why, notes, width, hit)


def watch_renderable(rt: Runtime, queues: list[str] | None, interval: float, width: int | None) -> Any:
    """The live view of one snapshot."""
    from jobctl import render

    snap = metrics.snapshot(rt, queues)
    why, hit, notes = _judged(rt, snap)
    return render.watch_view(snap.generated_at, interval, snap.queues, why, hit, snap.pools, notes, width)


def _width(console: Console) -> int | None:
    return console.width if console.is_terminal else None


def stats_cmd(
    ctx: typer.Context,
    queues: Annotated[list[str] | None, typer.Argument(help="Queues to show (default: all).",
                                                       show_default=False, autocompletion=queue_names)] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Live view, redrawn until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.2, help="Seconds between redraws.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with --watch: one document per line).")]
    = False,
) -> None:
    """Waiting, active, delayed, last-hour throughput, failures and percentiles, workers and dead letters per
    queue; with --watch also activity sparklines, rates, drain times and the workers."""
    rt: Runtime = ctx.obj
    try:
        if as_json:
            while True:
                jsonout.print_json(metrics.snapshot(rt, queues).to_json())
                if not watch:
                    return
                time.sleep(interval)
        from jobctl import render  # Rich: not for --json

        console = render.stdout()
        if not watch:
            console.print(stats_renderable(rt, queues, _width(console)))
            return
        _watch(rt, queues, interval, console)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _watch(rt: Runtime, queues: list[str] | None, interval: float, console: Console) -> None:
    from rich.live import Live

    sync = console.is_terminal and not console.is_dumb_terminal
    with Live(watch_renderable(rt, queues, interval, _width(console)), console=console, auto_refresh=False,
              transient=False) as live:
        while True:
            time.sleep(interval)
            view = watch_renderable(rt, queues, interval, _width(console))
            if sync:
                console.file.write(SYNC_BEGIN)
            live.update(view, refresh=True)
            if sync:
                console.file.write(SYNC_END)
                console.file.flush()
