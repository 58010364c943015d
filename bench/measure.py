"""Pure arithmetic of the benchmark: steady-state rate, Redis cost per job, medians and ratios.

Nothing here talks to Redis or reads /proc; the callers pass in what they sampled, so every
function is tested without services (bench/test_measure.py).

Redis cost is read from one `INFO stats cpu commandstats` reply before and after a drain:

| figure | INFO field | counts |
| --- | --- | --- |
| round trips | `total_reads_processed` | read events on client sockets: one per request, pipeline or MULTI block |
| commands | `total_commands_processed` | every command, including those run inside Lua (Redis 7 counts them) |
| script calls | `cmdstat_eval*` / `cmdstat_fcall*` calls | EVAL, EVALSHA and FCALL at top level |
| CPU | `used_cpu_user` + `used_cpu_sys` | the whole redis-server process |
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Sample = tuple[float, int]  # (seconds since the workers were started, jobs done)
SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")


def crossing(samples: Sequence[Sample], target: float) -> Sample | None:
    """The first sample whose done count reached `target`."""
    return next((s for s in samples if s[1] >= target), None)


def steady_rate(samples: Sequence[Sample], n: int, low: float = 0.1, high: float = 0.9) -> float | None:
    """Jobs/s between the first samples at `low` and at `high` of n done; None if not measurable."""
    first, last = crossing(samples, low * n), crossing(samples, high * n)
    if first is None or last is None or last[0] <= first[0]:
        return None
    return (last[1] - first[1]) / (last[0] - first[0])


def drained_at(samples: Sequence[Sample], n: int) -> float | None:
    """Seconds from the start of the workers until all n jobs were done."""
    done = crossing(samples, n)
    return None if done is None else done[0]


@dataclass(frozen=True)
class Counters:
    """Redis's cumulative work counters at one instant (or a difference of two)."""

    round_trips: float = 0.0
    commands: float = 0.0
    scripts: float = 0.0
    cpu_s: float = 0.0

    def __sub__(self, other: Counters) -> Counters:
        return Counters(self.round_trips - other.round_trips, self.commands - other.commands,
                        self.scripts - other.scripts, self.cpu_s - other.cpu_s)

    def __add__(self, other: Counters) -> Counters:
        return Counters(self.round_trips + other.round_trips, self.commands + other.commands,
                        self.scripts + other.scripts, self.cpu_s + other.cpu_s)

    def times(self, k: float) -> Counters:
        """These counters k times over (k samples of the bench's own probe)."""
        return Counters(self.round_trips * k, self.commands * k, self.scripts * k, self.cpu_s * k)


def counters_from_info(info: Mapping[str, object]) -> Counters:
    """Counters from a parsed `INFO stats cpu commandstats` reply (redis-py's dict)."""
    def calls(cmd: str) -> int:
        entry = info.get(f"cmdstat_{cmd}")
        return int(entry["calls"]) if isinstance(entry, Mapping) else 0

    return Counters(
        round_trips=int(str(info["total_reads_processed"])),
        commands=int(str(info["total_commands_processed"])),
        scripts=sum(calls(c) for c in SCRIPT_COMMANDS),
        cpu_s=float(str(info["used_cpu_user"])) + float(str(info["used_cpu_sys"])),
    )


@dataclass(frozen=True)
class Cost:
    """Redis work per processed job, the bench's own reads taken out."""

    round_trips: float
    commands: float
    scripts: float
    cpu_us: float


def cost_per_job(before: Counters, after: Counters, own: Counters, n: int) -> Cost:
    """(after - before - own) / n, CPU in microseconds."""
    d = after - before - own
    return Cost(d.round_trips / n, d.commands / n, d.scripts / n, max(d.cpu_s, 0.0) * 1e6 / n)


def median(values: Iterable[float | None]) -> float | None:
    """Median of the measured values, None when there is none."""
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, None when either is missing or theirs is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs
