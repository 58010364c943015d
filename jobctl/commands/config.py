"""`jobctl config show`."""

from __future__ import annotations

from typing import Annotated

import typer

from jobctl import render
from jobctl.runtime import Runtime

app = typer.Typer(help="Effective settings.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The effective settings, with passwords and secrets masked."""
    rt: Runtime = ctx.obj
    doc = rt.settings.public()
    if as_json:
        render.print_json(doc)
    else:
        render.stdout().print(render.mapping_table("Settings", doc))
