"""`jobctl health`: Nagios-style checks, optionally posted to the alert webhook."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from jobctl import health, render
from jobctl.runtime import Runtime


def health_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    notify: Annotated[bool, typer.Option("--notify", help="Post new and resolved alerts to the alert webhook "
                                                          "(once per alert per cool-down).")] = False,
) -> None:
    """Check Redis, persistence, backlog, failures, workers, scheduler, dead letters, RQ and key types; exit 0
    OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    rt: Runtime = ctx.obj
    report = health.run(rt)
    if as_json:
        render.print_json(report.to_json())
    elif len(report.checks) == 1:
        typer.echo(f"{report.status}: {report.checks[0].message}")
    else:
        render.stdout().print(render.health_table(report.status, report.checks))
    if notify:
        err = Console(stderr=True, highlight=False)
        if not rt.settings.alert_webhook_url:
            err.print("alert webhook not configured (JOBCTL_ALERT_WEBHOOK_URL): alerts only printed")
        for sent in health.notify(rt, report):
            if sent.error:
                err.print(f"[red]error:[/red] {sent.name} alert not sent: {sent.error}")
    raise typer.Exit(report.exit_code)
