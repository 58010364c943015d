"""`jobctl queues list|pause|resume|empty`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from jobctl import control, progress, render
from jobctl.completion import queue_names
from jobctl.errors import UsageError
from jobctl.runtime import Runtime

app = typer.Typer(help="Queue policies and per-queue controls.", invoke_without_command=True)

AllOpt = Annotated[bool, typer.Option("--all", help="Every queue.")]
Names = Annotated[list[str] | None, typer.Argument(help="Queue names.", show_default=False,
                                                  autocompletion=queue_names)]


@app.callback()
def queues_root(ctx: typer.Context,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the queues table when no subcommand is given."""
    if ctx.invoked_subcommand is None:
        list_queues(ctx, as_json)


@app.command("list")
def list_queues(ctx: typer.Context,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every queue's policy and whether it is paused."""
    rt: Runtime = ctx.obj
    policies = rt.settings.queues.policies
    paused = control.paused(rt)
    if as_json:
        render.print_json([asdict(p) | {"rate_limit": str(p.rate_limit) if p.rate_limit else None,
                                        "paused": p.name in paused} for p in policies])
    else:
        render.stdout().print(render.policies_table(policies, paused))


def _names(rt: Runtime, names: list[str] | None, every: bool) -> list[str]:
    if every == bool(names):
        raise UsageError("name queues or use --all (one of the two)")
    return rt.settings.queues.names() if every else list(names or [])


@app.command("pause")
def pause(ctx: typer.Context, names: Names = None, every: AllOpt = False) -> None:
    """Stop workers taking jobs from these queues (jobs keep arriving; running ones finish)."""
    chosen = _names(ctx.obj, names, every)
    control.set_paused(ctx.obj, chosen, True)
    typer.echo(f"paused: {', '.join(chosen)}")


@app.command("resume")
def resume(ctx: typer.Context, names: Names = None, every: AllOpt = False) -> None:
    """Let workers take jobs from these queues again."""
    chosen = _names(ctx.obj, names, every)
    control.set_paused(ctx.obj, chosen, False)
    typer.echo(f"resumed: {', '.join(chosen)}")


@app.command("empty")
def empty(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Queue name.", autocompletion=queue_names)],
          yes: Annotated[bool, typer.Option("--yes", help="Do it (required).")] = False) -> None:
    """Delete every waiting job of a queue."""
    ctx.obj.settings.queues.get(name)
    if not yes:
        raise UsageError(f"emptying {name} deletes its waiting jobs; add --yes to confirm")
    with progress.bar(f"emptying {name}") as tick:
        removed = control.empty_queue(ctx.obj, name, progress=tick)
    typer.echo(f"removed {removed} waiting job(s) from {name}")
