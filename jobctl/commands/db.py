"""`jobctl db init`."""

from __future__ import annotations

import typer

from jobctl import db
from jobctl.runtime import Runtime

app = typer.Typer(help="The application database.", no_args_is_help=True)


@app.command("init")
def init(ctx: typer.Context) -> None:
    """Create the application tables (idempotent)."""
    rt: Runtime = ctx.obj
    import jobctl.deadletter  # noqa: F401 - registers the dead-letter audit table on db.metadata

    engine = db.engine_for(rt.settings.database_url)
    with db.reachable(engine):
        db.init_db(engine)
    typer.echo(f"tables ready in {db.masked(rt.settings.database_url)}")
