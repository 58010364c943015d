"""From raw rounds to medians, ratios and target verdicts, and their markdown rendering (no I/O)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.measure import median, ratio
from bench.system import Figures, Round

OURS = "jobctl"
TINY = 0.05  # a peer figure this small (0.01 script calls per job: noise) gives no meaningful ratio
PEERS = ("BullMQ", "Dramatiq", "RQ")


@dataclass(frozen=True)
class Metric:
    """One row: a figure, its unit in the label, and which way is better."""

    key: str
    label: str
    fmt: str = "{:,.0f}"
    higher_is_better: bool = True


COMPARED = (
    Metric("process_jobs_s", "no-op processing, steady 10-90 % (jobs/s)"),
    Metric("wall_s", "wall time, worker start to drained (s)", "{:.2f}", False),
    Metric("redis_cpu_us", "Redis CPU per job (µs)", "{:.1f}", False),
    Metric("round_trips", "Redis round trips per job", "{:.2f}", False),
    Metric("commands", "Redis commands per job (incl. inside Lua)", "{:.1f}", False),
    Metric("scripts", "Lua script calls per job", "{:.2f}", False),
    Metric("enqueue_single_jobs_s", "enqueue one at a time (jobs/s)"),
    Metric("enqueue_bulk_jobs_s", "enqueue in bulk (jobs/s)"),
    Metric("rss_mib", "worker RSS, whole tree, mid-run (MiB)", "{:.0f}", False),
    Metric("pss_mib", "worker PSS, whole tree, mid-run (MiB)", "{:.0f}", False),
    Metric("processes", "worker processes", "{:.0f}", False),
)
OWN = (
    Metric("io_jobs_s", "I/O-bound: 1 process, 50 slots, 50 ms GET (jobs/s)"),
    Metric("io_ideal_pct", "I/O-bound: % of the ideal 1,000 jobs/s", "{:.0f} %"),
    Metric("io_reference_jobs_s", "I/O-bound: bare pool of 50 threads, same GETs (jobs/s)"),
    Metric("io_reference_pct", "I/O-bound: jobctl as % of that bare pool", "{:.0f} %"),
    Metric("io_pss_mib", "I/O-bound: PSS of the process tree (MiB)", "{:.0f}", False),
    Metric("idle_processes", "`work --all` idle: processes", "{:.0f}", False),
    Metric("idle_pss_mib", "`work --all` idle: PSS of the tree (MiB)", "{:.0f}", False),
    Metric("idle_rss_mib", "`work --all` idle: RSS of the tree (MiB)", "{:.0f}", False),
    Metric("idle_stop_s", "`work --all`: SIGTERM to exit (s)", "{:.2f}", False),
    Metric("image_rss_worst_mib", "process-image: peak RSS, worst accepted image (MiB)", "{:.0f}", False),
    Metric("image_rss_tiny_mib", "process-image: peak RSS, 16x16 PNG (MiB)", "{:.0f}", False),
    Metric("image_rss_jpeg_thumb_mib", "process-image: peak RSS, 24 MP JPEG to 300 px (MiB)", "{:.0f}", False),
    Metric("image_rss_png16_mib", "process-image: peak RSS, issue's 6300x6300 PNG refused (MiB)", "{:.0f}", False),
    Metric("producer_enqueue_p50_us", "producer: `jobctl.enqueue` in a handler, median (µs)", "{:,.0f}", False),
    Metric("producer_enqueue_p99_us", "producer: `jobctl.enqueue` in a handler, p99 (µs)", "{:,.0f}", False),
    Metric("producer_request_p50_ms", "producer: request with the enqueue, median (ms)", "{:.2f}", False),
    Metric("producer_request_p99_ms", "producer: request with the enqueue, p99 (ms)", "{:.2f}", False),
    Metric("producer_noop_p50_ms", "producer: same request without it, median (ms)", "{:.2f}", False),
    Metric("producer_noop_p99_ms", "producer: same request without it, p99 (ms)", "{:.2f}", False),
)


@dataclass(frozen=True)
class Target:
    """A goal: a figure of jobctl (or its ratio to a peer) compared with a threshold."""

    label: str
    key: str
    peer: str | None
    op: Callable[[float, float], bool]
    threshold: float


TARGETS = (
    Target("no-op processing >= 0.6x BullMQ", "process_jobs_s", "BullMQ", operator.ge, 0.6),
    Target("no-op processing >= 1.5x Dramatiq", "process_jobs_s", "Dramatiq", operator.ge, 1.5),
    Target("Redis CPU per job <= BullMQ's", "redis_cpu_us", "BullMQ", operator.le, 1.0),
    Target("single enqueue >= 1.0x BullMQ", "enqueue_single_jobs_s", "BullMQ", operator.ge, 1.0),
    Target("I/O-bound >= 90 % of ideal", "io_ideal_pct", None, operator.ge, 90.0),
    Target("`work --all` idle <= 4 processes", "idle_processes", None, operator.le, 4.0),
    Target("`work --all` idle <= 120 MiB PSS", "idle_pss_mib", None, operator.le, 120.0),
)


def medians(rounds: Sequence[Round]) -> dict[str, Figures]:
    """system -> key -> median over its rounds (jobctl's own measurements count as jobctl)."""
    systems = dict.fromkeys(r.system.split(":")[0] for r in rounds)
    out: dict[str, Figures] = {}
    for name in systems:
        mine = [r.figures for r in rounds if r.system.split(":")[0] == name]
        keys = dict.fromkeys(k for f in mine for k in f)
        out[name] = {k: median(f.get(k) for f in mine) for k in keys}
    return out


def verdict(target: Target, meds: dict[str, Figures]) -> tuple[float | None, str]:
    """(the compared value, "pass" / "FAIL" / "n/a")."""
    ours = meds.get(OURS, {}).get(target.key)
    value = ratio(ours, meds.get(target.peer, {}).get(target.key)) if target.peer else ours
    if value is None:
        return None, "n/a"
    return value, "pass" if target.op(value, target.threshold) else "FAIL"


def cell(value: float | None, fmt: str) -> str:
    """A formatted figure, or a dash when it was not measured."""
    return "-" if value is None else fmt.format(value)


def comparison_table(meds: dict[str, Figures]) -> list[str]:
    """Markdown: every compared figure for each system, and jobctl's ratio to each peer."""
    head = ["measure (median)", OURS, *PEERS, *(f"{OURS}/{p}" for p in PEERS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in COMPARED:
        values = [meds.get(s, {}).get(m.key) for s in (OURS, *PEERS)]
        ratios = [cell(ratio(values[0], v) if v is None or abs(v) >= TINY else None, "{:.2f}x") for v in values[1:]]
        lines.append("| " + " | ".join([m.label, *(cell(v, m.fmt) for v in values), *ratios]) + " |")
    return lines


def own_table(meds: dict[str, Figures]) -> list[str]:
    """Markdown: jobctl-only figures."""
    lines = ["| jobctl only (median) | value |", "|---|---|"]
    mine = meds.get(OURS, {})
    return lines + [f"| {m.label} | {cell(mine.get(m.key), m.fmt)} |" for m in OWN if m.key in mine]


def targets_table(meds: dict[str, Figures]) -> list[str]:
    """Markdown: each target, the value compared and pass / FAIL / n/a."""
    lines = ["| target | value | result |", "|---|---|---|"]
    for t in TARGETS:
        value, result = verdict(t, meds)
        fmt = "{:.2f}x" if t.peer else "{:.0f}"
        lines.append(f"| {t.label} | {cell(value, fmt)} | {result} |")
    return lines


def problems(rounds: Sequence[Round]) -> list[str]:
    """Errors, warnings and notes, once each, with the rounds they came from."""
    seen: dict[str, list[int]] = {}
    for r in rounds:
        for kind, texts in (("error", [r.error] if r.error else []), ("warning", r.warnings), ("note", r.notes)):
            for text in texts:
                seen.setdefault(f"{kind}: {r.system}: {text}", []).append(r.round)
    return [f"- {text} (round {', '.join(map(str, nums))})" for text, nums in seen.items()]


HOW = """How measured: processing = jobs/s between the samples at 10 % and 90 % done (progress read
every ~15 ms with O(1) reads of each system's own keys); Redis figures are deltas of INFO over the
drain, less the bench's own probes and INFO calls, per job: round trips = total_reads_processed
(one per request, pipeline or MULTI; BullMQ's concurrent commands on one connection can share a
read), commands = total_commands_processed (Redis 7 counts commands run inside Lua too), CPU =
used_cpu_user + used_cpu_sys; memory = RSS/PSS summed over the worker process tree, read once
at ~50 % done. Ratios are jobctl / peer whichever way is better; see each label."""


def render(rounds: Sequence[Round], header: str) -> str:
    """The whole report as markdown."""
    meds = medians(rounds)
    parts = [header, ""]
    if any(s in meds for s in (OURS, *PEERS)) and any(m.key in f for f in meds.values() for m in COMPARED):
        parts += [*comparison_table(meds), ""]
    if any(m.key in meds.get(OURS, {}) for m in OWN):
        parts += [*own_table(meds), ""]
    parts += [*targets_table(meds), ""]
    if found := problems(rounds):
        parts += ["Errors, warnings and notes:", *found, ""]
    return "\n".join([*parts, HOW])
