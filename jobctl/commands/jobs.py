"""`jobctl jobs show|cancel|types`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from jobctl import control, jobtypes, render
from jobctl.runtime import Runtime

_EXPECTED = {"priority": "a priority 1-10", "progress": "a percentage 0-100", "attempts": "a count",
             "max_attempts": "a count >= 1"}

app = typer.Typer(help="Inspect or cancel one job; list the job types.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="Job id.")],
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """A job's state, attempts, progress, timings, result or error.

    A stored value that is not of its field's type (a time that is not ISO-8601, a progress outside 0-100)
    is shown as stored and marked; in `--json` that field is null and `unparsed` maps its name to the
    stored text."""
    rt: Runtime = ctx.obj
    job = control.show_job(rt, job_id)
    if as_json:
        render.print_json(job.to_json())
        return
    doc = job.to_json()
    unparsed = doc.pop("unparsed")
    doc["data"] = json.dumps(doc["data"])
    doc["result"] = json.dumps(doc["result"]) if doc["result"] is not None else None
    for name, stored in unparsed.items():  # shown as stored, marked, instead of an empty cell
        doc[name] = f"{stored} (stored value, not {_EXPECTED.get(name, 'a time')})"
    render.stdout().print(render.mapping_table(f"Job {job_id}", doc))


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Cancel a waiting or delayed job: it will never run."""
    before = control.cancel_job(ctx.obj, job_id)
    typer.echo(f"cancelled {job_id} (was {before})")


@app.command("types")
def types(ctx: typer.Context,
          as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with schemas).")] = False) -> None:
    """Every job type with its queue, where it is declared and its payload (`jobctl schema JOB` for one)."""
    rt: Runtime = ctx.obj
    rt.settings.queues.processors()  # imports every model and processor: a declaration that cannot be is exit 2
    docs = [t.to_json() for t in jobtypes.iter_types(rt.settings.queues)]
    if as_json:
        render.print_json({"jobs": docs})
        return
    rows = [(d["name"], d["queue"], d["declared_by"], jobtypes.fields(d["schema"])) for d in docs]
    render.stdout().print(render.table("Job types", ("job", "queue", "declared by", "payload (* required)"), rows))
