"""Root Typer app: global options, builds the runtime, adds each command module."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import redis
import typer
from rich.console import Console
from rich.markup import escape

from jobctl import __version__
from jobctl.config import load, mask_url
from jobctl.errors import JobctlError
from jobctl.runtime import Runtime

app = typer.Typer(
    name="jobctl",
    help="Background jobs on RQ + Redis: run workers, enqueue, inspect, replay.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"jobctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    redis_url: Annotated[str | None, typer.Option("--redis-url", help="Redis URL (overrides JOBCTL_REDIS_URL).",
                                                  show_default=False)] = None,
    database_url: Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL of the app database.",
                                                     show_default=False)] = None,
    config: Annotated[str | None, typer.Option("--config", help="Path to jobctl.toml (or JOBCTL_CONFIG).",
                                               show_default=False)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more (DEBUG).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Build the settings once; connections open lazily when a command needs them."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = Runtime(load(config=config, redis_url=redis_url, database_url=database_url))


def _add_commands() -> None:
    from jobctl.commands import cleanup as cleanup_cmd
    from jobctl.commands import config as config_cmd
    from jobctl.commands import dashboard as dashboard_cmd
    from jobctl.commands import db as db_cmd
    from jobctl.commands import demo as demo_cmd
    from jobctl.commands import dlq, enqueue, jobs, queues, stats, work, workers
    from jobctl.commands import health as health_cmd
    from jobctl.commands import metrics as metrics_cmd
    from jobctl.commands import schedule as schedule_cmd

    app.add_typer(queues.app, name="queues")
    app.add_typer(config_cmd.app, name="config")
    app.add_typer(jobs.app, name="jobs")
    app.add_typer(dlq.app, name="dlq")
    app.command(name="enqueue")(enqueue.enqueue_cmd)
    app.command(name="work")(work.work_cmd)
    app.command(name="workers")(workers.workers_cmd)
    app.command(name="stats")(stats.stats_cmd)
    app.command(name="health")(health_cmd.health_cmd)
    app.command(name="metrics")(metrics_cmd.metrics_cmd)
    app.add_typer(schedule_cmd.app, name="schedule")
    app.command(name="scheduler")(schedule_cmd.scheduler_cmd)
    app.command(name="cleanup")(cleanup_cmd.cleanup_cmd)
    app.add_typer(db_cmd.app, name="db")
    app.command(name="demo")(demo_cmd.demo_cmd)
    app.command(name="dashboard")(dashboard_cmd.dashboard_cmd)


_add_commands()


# click's UsageError and ClickException, which Typer raises but does not re-export
_UsageError: type[Any] = typer.BadParameter.__mro__[1]
_ClickException: type[Any] = _UsageError.__mro__[1]


def fail(message: str, code: int) -> None:
    """One red line on stderr, then exit with `code`."""
    Console(stderr=True, highlight=False).print(f"[red]error:[/red] {escape(message)}", markup=True,
                                                soft_wrap=True)
    raise SystemExit(code)


def main() -> None:
    """Console entry point: JobctlError and service outages become one line and an exit code."""
    try:
        code = app(standalone_mode=False)
    except _UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed already
            raise SystemExit(0) from None
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx else ""
        fail(exc.format_message().replace("\n", " ") + hint, 2)
    except typer.Abort:
        fail("aborted", 1)
    except _ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except JobctlError as exc:
        fail(str(exc), exc.exit_code)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        fail(f"Redis became unreachable ({type(exc).__name__}: {mask_url(str(exc))[:200]})", 4)
    except redis.ResponseError as exc:
        fail(f"Redis refused a command: {str(exc)[:200]}", 4)
    raise SystemExit(code if isinstance(code, int) else 0)
