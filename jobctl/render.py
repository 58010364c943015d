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
