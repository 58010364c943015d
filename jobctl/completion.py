"""Shell completion of queue and job names, from the settings alone.

Each TAB runs the program (`_JOBCTL_COMPLETE=complete_bash …`, see `completions/`), so these read only
the configuration (`jobctl.toml`, the environment, `--config` given earlier on the line): no Redis, no
payload models, no processor. A configuration that does not load completes nothing rather than print
an error into the shell's prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from jobctl.queues import Registry


def _registry(ctx: typer.Context) -> Registry | None:
    from jobctl.config import load
    from jobctl.errors import JobctlError

    root = ctx.find_root().params
    try:
        return load(config=root.get("config"), redis_url=root.get("redis_url"),
                    database_url=root.get("database_url")).queues
    except (JobctlError, OSError, ValueError):
        return None


def queue_names(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Queue names starting with `incomplete`, each with its job names as help."""
    reg = _registry(ctx)
    if reg is None:
        return []
    return [(p.name, ", ".join(p.jobs)) for p in reg.policies if p.name.startswith(incomplete)]


def job_names(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Job names starting with `incomplete`: those of the queue named earlier on the line, else all."""
    reg = _registry(ctx)
    if reg is None:
        return []
    queue = ctx.params.get("queue")
    policies = [p for p in reg.policies if p.name == queue] or list(reg.policies)
    return [(job, p.name) for p in policies for job in p.jobs if job.startswith(incomplete)]
