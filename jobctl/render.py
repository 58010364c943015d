"""Rich renderables from plain data (no I/O), and the one place output is printed."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from jobctl.queues import QueuePolicy


def stdout() -> Console:
    """Console on stdout: colour only on a terminal, never with NO_COLOR."""
    wide = None if sys.stdout.isatty() else 200  # pipes and files get whole rows, not 80 columns
    return Console(highlight=False, soft_wrap=False, width=wide)


def print_json(doc: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(doc, default=str, ensure_ascii=False) + "\n")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A plain Rich table."""
    t = Table(title=title, title_justify="left", header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def policies_table(policies: Sequence[QueuePolicy], paused: set[str]) -> Table:
    """The queues table of `jobctl queues list`."""
    rows = []
    for p in policies:
        b = p.backoff
        backoff = "—" if b.kind == "none" or p.attempts <= 1 else (
            f"{b.kind} {b.delay_s:g}s" + (f" cap {b.max_s:g}s" if b.max_s else "") + (" jitter" if b.jitter else ""))
        rows.append((p.name, ", ".join(p.jobs), p.attempts, backoff, p.priority, p.concurrency,
                     f"{p.timeout_s}s", str(p.rate_limit) if p.rate_limit else "—",
                     "paused" if p.name in paused else "active"))
    return table("Queues", ["queue", "jobs", "attempts", "back-off", "priority", "concurrency", "timeout",
                            "rate limit", "state"], rows)


def mapping_table(title: str, data: Mapping[str, Any]) -> Table:
    """Two-column key/value table."""
    return table(title, ["field", "value"], ((k, "" if v is None else v) for k, v in data.items()))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def stats_table(generated_at: str, queues: Sequence[Any], flags: Mapping[str, Sequence[str]],
                notes: Sequence[str] = ()) -> Table:
    """The `jobctl stats` table: one row per queue (metrics.QueueStats), flagged rows in colour, and
    system-wide notes (RQ suspended, foreign workers) as its caption."""
    t = Table(title=f"Queues at {generated_at}", title_justify="left", header_style="bold",
              caption="; ".join(notes) or None, caption_justify="left", caption_style="bold yellow")
    for col in ("queue", "waiting", "active", "delayed", "done 1h", "failed 1h", "avg ms", "oldest",
                "workers", "paused", "dead letters", "attention"):
        t.add_column(col, justify="left" if col in ("queue", "attention") else "right")
    for q in queues:
        why = flags.get(q.name, ())
        style = "bold red" if "no workers" in why or "failures" in why else ("yellow" if why else None)
        t.add_row(q.name, str(q.waiting), str(q.active), str(q.delayed), str(q.completed_1h),
                  str(q.failed_1h), "—" if q.avg_ms_1h is None else f"{q.avg_ms_1h:g}",
                  _age(q.oldest_waiting_s), str(q.workers), "yes" if q.paused else "no",
                  "—" if q.dead_letters is None else str(q.dead_letters), ", ".join(why), style=style)
    return t


_STATUS_STYLE = {"OK": "green", "WARNING": "yellow", "CRITICAL": "bold red", "UNKNOWN": "magenta"}


def health_table(status: str, checks: Sequence[Any]) -> Table:
    """The `jobctl health` table: one row per check (health.Check)."""
    t = Table(title=f"Health: {status}", title_justify="left", header_style="bold")
    for col in ("check", "status", "message"):
        t.add_column(col, overflow="fold")
    for c in checks:
        t.add_row(c.name, f"[{_STATUS_STYLE.get(c.status, '')}]{c.status}[/]", c.message)
    return t
