"""`jobctl schema JOB`: the JSON Schema of one job's payload, for producers in other languages."""

from __future__ import annotations

from typing import Annotated

import typer

from jobctl import render
from jobctl.completion import job_names
from jobctl.runtime import Runtime


def schema_cmd(ctx: typer.Context,
               job: Annotated[str, typer.Argument(help="Job name (see `jobctl jobs types`).",
                                                  autocompletion=job_names)]) -> None:
    """Print the JSON Schema (draft 2020-12) a job's payload must match, as one JSON document."""
    rt: Runtime = ctx.obj
    render.print_json(rt.settings.queues.job_type(job).schema())
