"""Root Typer app: global options, builds the runtime, and the table of commands, each loaded when used.

Start-up stays in proportion to the command (issue 13): `jobctl --help`, `--version` and shell
completion of command names import this module only (Typer, Rich's help, no command module). `COMMANDS`
names each command's module, attribute and one-line help; the root group lists them from the table
and imports a command's module only when that command is resolved (run, its `--help`, or completion
of its arguments). `tests/test_startup.py` checks the table against the real commands and the
modules each of these loads.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import typing
from typing import Annotated, Any

import typer
import typer.core
import typer.main

from jobctl import __version__
from jobctl.config import mask_url
from jobctl.errors import JobctlError

# name -> (module, attribute: a command function or a Typer group, the first paragraph of its help),
# in the order `jobctl --help` lists them (Typer lists single commands first, then groups).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "enqueue": ("jobctl.commands.enqueue", "enqueue_cmd",
                "Validate and enqueue a job (or every line of --file; nothing is enqueued if any line is invalid)."),
    "work": ("jobctl.commands.work", "work_cmd",
             "Run workers: each queue's concurrency in slots (threads) over a few processes; SIGTERM lets jobs "
             "finish."),
    "workers": ("jobctl.commands.workers", "workers_cmd",
                "Live worker pools: host, pid, queues, state, current jobs, last heartbeat."),
    "stats": ("jobctl.commands.stats", "stats_cmd",
              "Waiting, active, delayed, last-hour throughput, failures and percentiles, workers and dead letters per"
              "\nqueue; with --watch also activity sparklines, rates, drain times and the workers."),
    "health": ("jobctl.commands.health", "health_cmd",
               "Check Redis, persistence, backlog, failures, workers, scheduler, dead letters, RQ and key types; exit 0"
               "\nOK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."),
    "metrics": ("jobctl.commands.metrics", "metrics_cmd",
                "The queue figures of `jobctl stats` in Prometheus text format."),
    "scheduler": ("jobctl.commands.schedule", "scheduler_cmd",
                  "Fire installed schedules when due (any number of schedulers may run: each run fires once)."),
    "cleanup": ("jobctl.commands.cleanup", "cleanup_cmd",
                "For cron: enqueue the cleanup jobs on data-cleanup once per UTC day across hosts, or run them "
                "--now."),
    "demo": ("jobctl.commands.demo", "demo_cmd",
             "Run one job of every kind end to end on the embedded defaults (local Redis, SQLite, outboxes)."),
    "dashboard": ("jobctl.commands.dashboard", "dashboard_cmd",
                  "Serve the web dashboard: queues, jobs, dead letters, workers, schedules (read-only without a "
                  "credential)."),
    "schema": ("jobctl.commands.schema", "schema_cmd",
               "Print the JSON Schema (draft 2020-12) a job's payload must match, as one JSON document."),
    "queues": ("jobctl.commands.queues", "app", "Queue policies and per-queue controls."),
    "config": ("jobctl.commands.config", "app", "Effective settings."),
    "jobs": ("jobctl.commands.jobs", "app", "Inspect or cancel one job; list the job types."),
    "dlq": ("jobctl.commands.dlq", "app", "Dead letters: jobs that failed permanently."),
    "schedule": ("jobctl.commands.schedule", "app", "Recurring schedules kept in Redis (run by `jobctl scheduler`)."),
    "db": ("jobctl.commands.db", "app", "The application database."),
}


class _Plain:
    """Typer's coercion of one parameter, minus pydantic where the value is already plain.

    Typer (0.29) coerces every parameter value, defaults included, through a pydantic TypeAdapter: ~70 ms
    of imports for each run of any command. A value that is already what the annotation says (None, a
    string for `str` / `list[str]`, digits for `int` / `float` within min/max) passes through here as
    Typer would return it; anything else goes to Typer's own coercion, built on first need."""

    _INT = re.compile(r"-?[0-9]{1,18}")
    _FLOAT = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,15})?")

    def __init__(self, param: Any) -> None:
        self.param = param
        self.annotation = param.type_descriptor.annotation
        self.info = param.type_descriptor.parameter_info
        self.typer: Any = None

    def _number(self, value: Any, kind: type) -> Any:
        text = isinstance(value, str) and (self._INT if kind is int else self._FLOAT).fullmatch(value)
        if not (text or type(value) is int or (kind is float and type(value) is float)):
            return None
        number = kind(value)
        low, high = self.info.min, self.info.max
        return None if (low is not None and number < low) or (high is not None and number > high) else number

    def _plain(self, value: Any) -> Any:
        """The coerced value, or None when Typer must decide."""
        a = self.annotation
        if a is str:
            return value if isinstance(value, str) else None
        if a in (int, float):
            return self._number(value, a)
        if a in (list[str], list[int]) and isinstance(value, list | tuple):
            kind = typing.get_args(a)[0]
            items = [v if kind is str and isinstance(v, str) else self._number(v, int) if kind is int else None
                     for v in value]
            return None if any(v is None for v in items) else items
        return None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None:
            return () if param.multiple or param.nargs == -1 else None
        if not (self.info.parser or getattr(self.info, "click_type", None)):
            plain = self._plain(value)
            if plain is not None:
                return plain
        if self.typer is None:
            self.typer = typer.core.build_runtime_param(self.param.type_descriptor)  # type: ignore[attr-defined]
        return self.typer.coerce(value, param=param, ctx=ctx)


def plain_coercion(command: Any, ctx: Any) -> Any:
    """Give `command`'s parameters, its help option (made for `ctx`'s help option names) and its
    subcommands', recursively, the pydantic-free `_Plain` coercion. A Typer without the internals this
    relies on is left alone: its own coercion then runs, only slower."""
    if not hasattr(typer.core, "build_runtime_param"):
        return command
    for p in [*command.params, command.get_help_option(ctx)]:
        if getattr(p, "_runtime_param", False) is None and hasattr(p, "type_descriptor"):
            p._runtime_param = _Plain(p)
    for sub in getattr(command, "commands", {}).values():
        if not isinstance(sub, _Unloaded):
            plain_coercion(sub, ctx)
    return command


class _Unloaded(typer.core.TyperCommand):
    """Stands for a command whose module is not imported yet: enough to list it in help and completion."""


def load_command(name: str) -> Any:
    """The real Click command of `name`, built as `app.command()` / `app.add_typer()` would."""
    module, attr, _help = COMMANDS[name]
    target = getattr(importlib.import_module(module), attr)
    holder = typer.Typer()
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name=name)(target)
    return typer.main.get_group(holder).commands[name]


class LazyGroup(typer.core.TyperGroup):
    """The root group: every command of `COMMANDS` listed, each imported when resolved."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (_module, _attr, help_text) in COMMANDS.items():
            self.commands.setdefault(name, _Unloaded(name=name, help=help_text))

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        """Import the named command (to run it, show its help or complete its arguments), then resolve."""
        if args and isinstance(self.commands.get(args[0]), _Unloaded):
            self.commands[args[0]] = plain_coercion(load_command(args[0]), ctx)
        return super().resolve_command(ctx, args)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        plain_coercion(self, ctx)
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="jobctl",
    help="Background jobs on RQ + Redis: run workers, enqueue, inspect, replay.",
    cls=LazyGroup,
    no_args_is_help=True,
    rich_markup_mode=None,  # click's plain help for the root: Typer's Rich help imports ~70 ms of modules
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
    from jobctl.config import load
    from jobctl.runtime import Runtime

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = Runtime(load(config=config, redis_url=redis_url, database_url=database_url))


def _redis_errors(*names: str) -> tuple[type[BaseException], ...]:
    """redis's exception classes of these names; none when redis was never imported (then no Redis error
    can have been raised), so `main()` need not import redis to map its errors."""
    module = sys.modules.get("redis")
    found = (getattr(module, name, None) for name in names) if module is not None else ()
    return tuple(cls for cls in found if isinstance(cls, type) and issubclass(cls, BaseException))


# click's UsageError and ClickException, which Typer raises but does not re-export
_UsageError: type[Any] = typer.BadParameter.__mro__[1]
_ClickException: type[Any] = _UsageError.__mro__[1]


def fail(message: str, code: int) -> None:
    """One red line on stderr, then exit with `code`."""
    from rich.console import Console
    from rich.markup import escape

    from jobctl.errors import printable

    Console(stderr=True, highlight=False).print(f"[red]error:[/red] {escape(printable(message))}", markup=True,
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
    except _redis_errors("ConnectionError", "TimeoutError") as exc:
        fail(f"Redis became unreachable ({type(exc).__name__}: {mask_url(str(exc))[:200]})", 4)
    except _redis_errors("OutOfMemoryError"):
        from jobctl.runtime import opened_client, out_of_memory

        fail(str(out_of_memory(opened_client())), 4)
    except _redis_errors("ResponseError") as exc:  # Redis answered, and refused: the operation failed (1)
        reason = str(exc).partition(" script: ")[0]  # not the Lua script's hash and line
        fail(f"Redis refused a command: {reason[:200]}", 1)
    raise SystemExit(code if isinstance(code, int) else 0)
