"""`jobctl demo`: seed, enqueue one job of every kind, run the workers, show stats and outputs."""

from __future__ import annotations

import typer

from jobctl import render
from jobctl.commands.stats import stats_renderable


def demo_cmd(ctx: typer.Context) -> None:
    """Run one job of every kind end to end on the embedded defaults (local Redis, SQLite, outboxes)."""
    from jobctl import demo  # Pillow, SQLAlchemy, the pool: only when run

    settings = ctx.obj.settings
    console = render.stdout()
    console.print(f"data directory: {settings.data_dir}")
    rt, results, receiver = demo.run(settings)
    console.print(stats_renderable(rt, None))
    console.print(render.table("Where the outputs went", ["job", "result"],
                               demo.outputs(rt.settings, results, receiver)))
    failed = [e.id for e, view in results if view.status != "finished"]
    if failed:
        raise typer.Exit(1)
