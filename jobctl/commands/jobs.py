"""`jobctl jobs show|cancel`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from jobctl import control, render
from jobctl.runtime import Runtime

app = typer.Typer(help="Inspect or cancel one job.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="Job id.")],
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """A job's state, attempts, progress, timings, result or error."""
    rt: Runtime = ctx.obj
    job = control.show_job(rt, job_id)
    if as_json:
        render.print_json(job.to_json())
        return
    doc = job.to_json()
    doc["data"] = json.dumps(doc["data"])
    doc["result"] = json.dumps(doc["result"]) if doc["result"] is not None else None
    render.stdout().print(render.mapping_table(f"Job {job_id}", doc))


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Cancel a waiting or delayed job: it will never run."""
    before = control.cancel_job(ctx.obj, job_id)
    typer.echo(f"cancelled {job_id} (was {before})")
