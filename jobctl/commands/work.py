"""`jobctl work`: run the worker pool for some queues (or all)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from jobctl.completion import queue_names
from jobctl.errors import UsageError

if TYPE_CHECKING:
    from jobctl.hooks import Hooks
    from jobctl.runtime import Runtime


def work_cmd(
    ctx: typer.Context,
    queues: Annotated[list[str] | None, typer.Argument(help="Queues to serve.", show_default=False,
                                                       autocompletion=queue_names)] = None,
    all_queues: Annotated[bool, typer.Option("--all", help="Serve every queue, in priority order.")] = False,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1, max=10000,
                                                    help="Most jobs the pool runs at once, all queues together "
                                                         "(each queue stays within its own concurrency).")] = None,
    processes: Annotated[int | None, typer.Option("--processes", "-p", min=1, max=64,
                                                  help="Runner processes the slots are spread over "
                                                       "(default: one per core, at most 4).")] = None,
    burst: Annotated[bool, typer.Option("--burst", help="Exit once nothing is waiting or active.")] = False,
    max_jobs: Annotated[int | None, typer.Option("--max-jobs", min=1, help="Exit after N jobs.")] = None,
) -> None:
    """Run workers: each queue's concurrency in slots (threads) over a few processes; SIGTERM lets jobs finish."""
    from jobctl.pool import Pool  # the worker machinery (SQLAlchemy, payload models): only when run

    rt: Runtime = ctx.obj
    registry = rt.settings.queues
    if all_queues and queues:
        raise UsageError("name queues or use --all, not both")
    names = registry.names() if all_queues else list(dict.fromkeys(queues or []))
    if not names:
        raise UsageError(f"name at least one queue or use --all; known queues: {', '.join(registry.names())}")
    policies = [registry.get(n) for n in names]
    names = [p.name for p in sorted(policies, key=lambda p: p.priority)]
    rt.redis  # noqa: B018 - fail fast (exit 4) before forking when Redis is down
    code = Pool(rt.settings, names, processes=processes, total_slots=concurrency, burst=burst, max_jobs=max_jobs,
                hooks=_hooks).run()
    raise typer.Exit(code)


def _hooks(rt: Runtime) -> Hooks:
    from jobctl.plugins import default_hooks

    return default_hooks(rt)
