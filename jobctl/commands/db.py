"""`jobctl db init`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from jobctl.runtime import Runtime

app = typer.Typer(help="The application database.", no_args_is_help=True)


@app.command("init")
def init(ctx: typer.Context) -> None:
    """Create the application tables (idempotent)."""
    import jobctl.deadletter  # noqa: F401 - registers the dead-letter audit table on db.metadata
    from jobctl import db  # SQLAlchemy: only when run

    rt: Runtime = ctx.obj

    engine = db.engine_for(rt.settings.database_url)
    with db.reachable(engine):
        db.init_db(engine)
    typer.echo(f"tables ready in {db.masked(rt.settings.database_url)}")
