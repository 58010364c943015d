"""`jobctl workers`."""

from __future__ import annotations

from typing import Annotated

import typer

from jobctl import control, render
from jobctl.runtime import Runtime


def workers_cmd(ctx: typer.Context,
                as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Live worker pools: host, pid, queues, state, current jobs, last heartbeat."""
    rt: Runtime = ctx.obj
    pools = control.list_workers(rt)
    if as_json:
        render.print_json([w.to_json() for w in pools])
        return
    rows = [(w.name, w.host, w.pid, ", ".join(f"{q} {n}" for q, n in w.slots.items()) or ",".join(w.queues),
             w.state, f"{w.concurrency} in {w.processes}", ", ".join(w.current_jobs) or "—", w.last_heartbeat)
            for w in pools]
    render.stdout().print(render.table("Workers", ["name", "host", "pid", "queue slots", "state", "slots",
                                                   "current jobs", "last heartbeat"], rows))
