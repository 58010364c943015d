"""Rich renderables from plain data, plus the stdout console (`stdout()`) and JSON writer (`print_json`)
the commands print them with. Commands still print their own plain lines (`typer.echo`), `metrics`
writes Prometheus text itself, and errors are printed by `cli.main` on stderr."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from jobctl.errors import printable
from jobctl.jsonout import print_json as print_json  # re-exported: JSON output needs no Rich
from jobctl.queues import QueuePolicy


def stdout() -> Console:
    """Console on stdout: colour only on a terminal, never with NO_COLOR."""
    wide = None if sys.stdout.isatty() else 200  # pipes and files get whole rows, not 80 columns
    return Console(highlight=False, soft_wrap=False, width=wide)


def cell(value: object, lines: bool = True) -> Text:
    """A table cell or line of text from any value (Redis and the stores hold anything): plain text, never
    Rich markup, with every control character escaped (`printable`); with `lines`, line feeds stay as the
    cell's line breaks (a traceback keeps its lines, inside the table's borders)."""
    if isinstance(value, Text):
        return value
    text = "" if value is None else str(value)
    return Text("\n".join(printable(part) for part in text.split("\n")) if lines else printable(text))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A plain Rich table; every cell goes through `cell`."""
    t = Table(title=None if title is None else cell(title, lines=False), title_justify="left", header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*(cell(v) for v in row))
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


SPARK_LEVELS = "▁▂▃▄▅▆▇█"
SPARK_ZERO = "·"
_SEVERITY_STYLE = {"warning": "bold yellow", "critical": "bold red"}


def _groups(values: Sequence[float], width: int) -> list[float]:
    """`values` summed in groups of consecutive ones so that at most `width` remain, grouped from the newest
    (an incomplete oldest group is left out)."""
    if width <= 0 or not values:
        return []
    size = -(-len(values) // width)
    count = len(values) // size
    start = len(values) - count * size
    return [float(sum(values[start + k * size:start + (k + 1) * size])) for k in range(count)]


def sparkline(values: Sequence[float], width: int, top: float | None = None) -> str:
    """Block characters for `values` (oldest first) in at most `width` characters; when they do not fit,
    each character sums a group of consecutive values (see `_groups`). Heights are relative to `top`
    (default: the largest group); a zero is `·`, any other value at least `▁`."""
    groups = _groups(values, width)
    scale = top if top is not None else max(groups, default=0.0)
    n = len(SPARK_LEVELS)
    return "".join(SPARK_ZERO if v <= 0 or scale <= 0 else SPARK_LEVELS[min(n, max(1, math.ceil(v / scale * n))) - 1]
                   for v in groups)


def spark_top(series: Iterable[Sequence[float]], width: int) -> float:
    """The shared scale of several sparklines drawn `width` wide: the largest group of any."""
    return max((g for values in series for g in _groups(values, width)), default=0.0)


def duration(seconds: float | None, waiting: int = 1) -> str:
    """A drain time: `—` when nothing waits, `∞` when jobs wait and none are done, else 45s / 12m / 3h05m."""
    if waiting <= 0:
        return "—"
    if seconds is None:
        return "∞"
    return _age(seconds)


def rate(per_s: float) -> str:
    """Jobs per second, with the precision its size needs."""
    if per_s <= 0:
        return "0/s"
    return f"{per_s:.2f}/s" if per_s < 10 else f"{per_s:.1f}/s" if per_s < 100 else f"{per_s:,.0f}/s"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:g}" if value < 10_000 else f"{value:,.0f}"


@dataclass(frozen=True)
class Column:
    """A column that `fit` may drop: the lowest `keep` goes first when the table is too wide."""

    header: str
    keep: int
    justify: Literal["left", "right"] = "right"
    max_width: int | None = None  # longer cells end in an ellipsis
    field: str = ""  # the QueueStats field a threshold breach colours (see `metrics.breaches`)


Cell = str | Text


def fit(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int | None,
        compact: bool = True) -> list[int]:
    """Indexes of the columns to show so that a `fitted_table` of `rows` is at most `width` cells wide
    (each column takes its widest cell, or its `max_width`, plus a gap: compact 2 less 2 in all, boxed 3
    plus 1), dropping the lowest-`keep` columns first; all of them when `width` is None."""
    natural = []
    for i, col in enumerate(columns):
        w = max([cell_len(col.header), *(cell_len(str(r[i])) for r in rows)])
        natural.append(min(w, col.max_width) if col.max_width else w)
    shown = list(range(len(columns)))
    if width is None:
        return shown
    for i in sorted(shown, key=lambda k: columns[k].keep):
        if (sum(natural[k] + 2 for k in shown) - 2 if compact else sum(natural[k] + 3 for k in shown) + 1) <= width \
                or len(shown) == 1:
            break
        shown.remove(i)
    return shown


def fitted_table(title: str | None, columns: Sequence[Column], rows: Sequence[Sequence[Cell]],
                 width: int | None, styles: Sequence[Mapping[int, str]] = (), compact: bool = True) -> Table:
    """A table of the columns that fit in `width` (see `fit`), whose cells never wrap (text cells escaped by
    `printable`); `styles[r]` maps a
    column index to the style of that cell of row r. Compact: a rule under the header and no other lines
    (the live view); else Rich's default box."""
    rows = [[printable(c) if isinstance(c, str) else c for c in row] for row in rows]  # escaped before measured
    shown = fit(columns, rows, width, compact)
    if compact:
        t = Table(title=title, title_justify="left", title_style="bold", header_style="bold", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    else:
        t = Table(title=title, title_justify="left", header_style="bold")
    for i in shown:
        c = columns[i]
        t.add_column(c.header, justify=c.justify, no_wrap=True, overflow="ellipsis", max_width=c.max_width)
    for r, row in enumerate(rows):
        style = styles[r] if styles else {}
        cells = [(i, row[i]) for i in shown]
        t.add_row(*(Text(c, style=style.get(i, "")) if isinstance(c, str) else c for i, c in cells))
    return t


def _cap(q: Any) -> int:
    """The most of a queue's jobs that can run now: its live slots, or its global cap if lower (0: none)."""
    caps = [c for c in (q.slots, q.global_concurrency) if c]
    return min(caps) if caps else 0


def _limit(q: Any) -> str:
    if q.rate_limit is None:
        return "—"
    return f"{q.rate_used or 0}/{q.rate_limit} per {q.rate_window_s:g}s"


def _styles(columns: Sequence[Column], hit: Mapping[str, str]) -> dict[int, str]:
    """Cell styles of one row: each breached figure in its severity's colour, and the queue name in the worst."""
    out = {i: _SEVERITY_STYLE[hit[c.field]] for i, c in enumerate(columns) if c.field in hit}
    if hit:
        out[0] = _SEVERITY_STYLE["critical" if "critical" in hit.values() else "warning"]
    return out


QUEUE_COLUMNS = (
    Column("queue", 100, "left", 24), Column("waiting", 95, field="waiting"), Column("active", 90),
    Column("delayed", 45), Column("done 1h", 70), Column("failed 1h", 85, field="failed_1h"),
    Column("avg ms", 62), Column("p50 ms", 64), Column("p95 ms", 80), Column("oldest", 55),
    Column("workers", 75, field="workers"), Column("paused", 30), Column("dead letters", 40, field="dead_letters"),
    Column("attention", 88, "left", 32),
)


def stats_table(generated_at: str, queues: Sequence[Any], flags: Mapping[str, Sequence[str]],
                notes: Sequence[str] = (), width: int | None = None,
                breaches: Mapping[str, Mapping[str, str]] | None = None) -> Table:
    """The `jobctl stats` table: one row per queue (metrics.QueueStats), threshold breaches in colour
    (`breaches`: queue -> field -> 'warning' or 'critical', see `metrics.breaches`), the lowest-priority
    columns dropped to fit `width`, and system-wide notes (RQ suspended, foreign workers) as its caption."""
    rows: list[list[Cell]] = []
    for q in queues:
        rows.append([q.name, str(q.waiting), str(q.active), str(q.delayed), str(q.completed_1h), str(q.failed_1h),
                     _ms(q.avg_ms_1h), _ms(q.p50_ms_1h), _ms(q.p95_ms_1h), _age(q.oldest_waiting_s), str(q.workers),
                     "yes" if q.paused else "no", "—" if q.dead_letters is None else str(q.dead_letters),
                     ", ".join(flags.get(q.name, ()))])
    styles = [_styles(QUEUE_COLUMNS, (breaches or {}).get(q.name, {})) for q in queues]
    t = fitted_table(f"Queues at {generated_at}", QUEUE_COLUMNS, rows, width, styles, compact=False)
    t.caption = cell("; ".join(notes), lines=False) if notes else None
    t.caption_justify, t.caption_style = "left", "bold yellow"
    return t


WATCH_COLUMNS = (
    Column("queue", 100, "left", 20), Column("waiting", 95, field="waiting"), Column("slots", 90),
    Column("done", 70), Column("failed", 85, field="failed_1h"), Column("avg", 62), Column("p50", 64),
    Column("p95", 80), Column("workers", 75, field="workers"), Column("oldest", 55), Column("delayed", 45),
    Column("dead", 40, field="dead_letters"), Column("paused", 30),
)
FLOW_COLUMNS = (
    Column("queue", 100, "left", 20), Column("rate", 95), Column("drain", 90), Column("limit", 60),
    Column("done/min", 80, "left"), Column("failed/min", 70, "left"),
)
WORKER_COLUMNS = (
    Column("host", 100, "left", 24), Column("pid", 90), Column("queues", 70, "left", 28), Column("jobs", 95),
    Column("heartbeat", 96), Column("state", 60, "left"), Column("pool", 30, "left", 30),
)


def queues_panel(queues: Sequence[Any], breaches: Mapping[str, Mapping[str, str]], width: int | None) -> Table:
    """The live view's queue table: slots in use of the cap, last hour's done and failed, mean, p50 and
    p95 processing ms, breaches in colour."""
    rows: list[list[Cell]] = []
    styles = []
    for q in queues:
        cap = _cap(q)
        rows.append([q.name, str(q.waiting), f"{q.active}/{cap or '—'}", str(q.completed_1h), str(q.failed_1h),
                     _ms(q.avg_ms_1h), _ms(q.p50_ms_1h), _ms(q.p95_ms_1h), str(q.workers),
                     _age(q.oldest_waiting_s), str(q.delayed), "—" if q.dead_letters is None else str(q.dead_letters),
                     "yes" if q.paused else "no"])
        style = _styles(WATCH_COLUMNS, breaches.get(q.name, {}))
        if cap and q.active >= cap:
            style.setdefault(2, "yellow")
        styles.append(style)
    return fitted_table("Queues · last hour · ms", WATCH_COLUMNS, rows, width, styles)


def flow_panel(queues: Sequence[Any], width: int | None) -> Table:
    """Per queue: the current rate, the time its backlog needs at that rate, the limiter's use of its rate
    limit, and done and failed jobs per minute over the last hour (sparklines on one scale). In a narrow
    terminal the limit column goes first, then the sparklines (each at least 6 marks)."""
    cells = {"queue": [q.name for q in queues], "rate": [rate(q.rate_per_s) for q in queues],
             "drain": [duration(q.drain_s, q.waiting) for q in queues], "limit": [_limit(q) for q in queues]}

    def room(names: Sequence[str]) -> int:
        if width is None:
            return 60
        fixed = sum(max([cell_len(n), *(min(cell_len(v), 20) for v in cells[n])]) + 2 for n in names)
        return max(0, min(60, (width - fixed - 2) // 2))

    fixed = ["queue", "rate", "drain", "limit"]
    if room(fixed) < 12 and room(fixed[:3]) > room(fixed):
        fixed = fixed[:3]
    spark_w = room(fixed)
    top = spark_top([q.completed_per_min for q in queues] + [q.failed_per_min for q in queues], spark_w)
    columns = [c for c in FLOW_COLUMNS if c.header in fixed]
    if spark_w >= 6:
        columns += FLOW_COLUMNS[4:]
    rows: list[list[Cell]] = []
    styles = []
    for i, q in enumerate(queues):
        row: list[Cell] = [cells[n][i] for n in fixed]
        if spark_w >= 6:
            row += [Text(sparkline(q.completed_per_min, spark_w, top), style="green"),
                    Text(sparkline(q.failed_per_min, spark_w, top), style="red")]
        rows.append(row)
        styles.append({3: "yellow"} if q.rate_limited and "limit" in fixed else {})
    per = -(-60 // spark_w) if spark_w else 0
    title = "Flow · per minute, last hour" + (f" ({per} min per mark)" if per > 1 else "")
    return fitted_table(title, columns, rows, width, styles)


def workers_panel(pools: Sequence[Any], width: int | None) -> Table:
    """The workers panel: one row per live pool (metrics.PoolStats), a heartbeat older than 30 s in red."""
    rows: list[list[Cell]] = []
    styles = []
    for p in pools:
        age = "—" if p.heartbeat_age_s is None else f"{p.heartbeat_age_s:.0f}s ago"
        rows.append([p.host, str(p.pid), ",".join(p.queues), f"{p.running}/{p.concurrency}", age, p.state, p.name])
        styles.append({4: "bold red"} if p.heartbeat_age_s is not None and p.heartbeat_age_s > 30 else {})
    t = fitted_table(f"Workers ({len(pools)})", WORKER_COLUMNS, rows, width, styles)
    if not pools:
        t.caption, t.caption_justify = "no live worker pool", "left"
    return t


def watch_view(generated_at: str, interval_s: float, queues: Sequence[Any], flags: Mapping[str, Sequence[str]],
               breaches: Mapping[str, Mapping[str, str]], pools: Sequence[Any], notes: Sequence[str] = (),
               width: int | None = 80) -> Group:
    """The `jobctl stats --watch` screen: the queues, the flow (rates, drain times, sparklines), the workers,
    what needs attention in words (so NO_COLOR loses nothing), and notes; every line at most `width`
    cells (columns are dropped, cells never wrap)."""
    def line(text: str, style: str) -> Text:
        return Text(printable(text), style=style, no_wrap=True, overflow="ellipsis")

    attention = "; ".join(f"{name}: {', '.join(why)}" for name, why in flags.items() if why)
    parts: list[Any] = [line(f"jobctl stats  {generated_at}  every {interval_s:g}s, Ctrl-C quits", "bold"),
                        queues_panel(queues, breaches, width)]
    if attention:
        parts.append(line(f"attention: {attention}", "bold red"))
    parts += [flow_panel(queues, width), workers_panel(pools, width)]
    parts += [line(n, "bold yellow") for n in notes]
    return Group(*parts)


_STATUS_STYLE = {"OK": "green", "WARNING": "yellow", "CRITICAL": "bold red", "UNKNOWN": "magenta"}


def health_table(status: str, checks: Sequence[Any]) -> Table:
    """The `jobctl health` table: one row per check (health.Check)."""
    t = Table(title=f"Health: {status}", title_justify="left", header_style="bold")
    for col in ("check", "status", "message"):
        t.add_column(col, overflow="fold")
    for c in checks:
        t.add_row(cell(c.name), Text(printable(c.status), style=_STATUS_STYLE.get(c.status, "")), cell(c.message))
    return t
