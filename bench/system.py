"""What every system under test provides, and the one routine that measures any of them."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import redis

from bench.drain import Drain, Probe, drain
from bench.procs import Group, SystemFailed

ROOT = Path(__file__).resolve().parents[1]  # the repository: workers run from here so `bench` imports
PYTHON = sys.executable
PAYLOAD = {"userId": "u", "originalPath": "a.png", "targetPath": "b.jpg", "maxWidth": 10, "maxHeight": 10}
Figures = dict[str, float | None]


@dataclass(frozen=True)
class Params:
    """The run's settings, as every system needs them."""

    url: str
    jobs: int
    single: int
    timeout_s: float


class System(Protocol):
    """One job system: its enqueue paths, its workers and a cheap read of its progress."""

    name: str
    probe: Probe

    def enqueue_single(self, n: int) -> float:
        """Jobs/s enqueuing n jobs one call at a time."""
        ...

    def enqueue_bulk(self, n: int) -> float:
        """Jobs/s enqueuing n jobs through the bulk API; they stay queued for the drain."""
        ...

    def workers(self) -> Group:
        """Start the workers (they run until stopped)."""
        ...

    def notes(self) -> list[str]:
        """Anything the report should say about how this system ran."""
        ...


class Notes:
    """Mixin: no notes."""

    def notes(self) -> list[str]:
        """Nothing to add."""
        return []


@dataclass
class Round:
    """One system's figures in one round, raw (as `--json` prints them)."""

    system: str
    round: int
    figures: Figures = field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: list[tuple[float, int]] = field(default_factory=list)  # the drain's (s, done), to recheck rates


def drain_figures(d: Drain) -> Figures:
    """The figures a drain yields."""
    mem = d.memory
    return {"process_jobs_s": d.jobs_s, "wall_s": d.wall_s, "redis_cpu_us": d.cost.cpu_us,
            "round_trips": d.cost.round_trips, "commands": d.cost.commands, "scripts": d.cost.scripts,
            "rss_mib": mem.rss_mib if mem else None, "pss_mib": mem.pss_mib if mem else None,
            "processes": float(mem.processes) if mem else None}


def check_drain(d: Drain, label: str) -> None:
    """A timed-out drain is a failure of that system, with what it did reach."""
    if d.timed_out:
        t, done = d.samples[-1]
        raise SystemFailed(f"{label}: timed out after {t:.0f} s with {done} of {d.n} jobs done "
                           f"({d.average_jobs_s:.0f} jobs/s)")


def check_probe(probe: Probe, client: redis.Redis, n: int) -> None:
    """With n jobs queued and no worker yet, the probe must read 0 done (else its keys are wrong)."""
    if (early := probe.done(client, n)) != 0:
        raise SystemFailed(f"probe reads {early} of {n} done before any worker ran: "
                           f"its keys {[k for _c, k in probe.reads]} do not match the system's layout")


def measure(make: Callable[[], System], client: redis.Redis, p: Params, rec: Round) -> None:
    """Enqueue one at a time, enqueue in bulk, drain that bulk; figures and errors go into rec."""
    try:
        system = make()
        client.flushdb()
        rec.figures["enqueue_single_jobs_s"] = system.enqueue_single(p.single)
        client.flushdb()
        rec.figures["enqueue_bulk_jobs_s"] = system.enqueue_bulk(p.jobs)
        check_probe(system.probe, client, p.jobs)
        d = drain(client, system.workers, system.probe, p.jobs, p.timeout_s)
        rec.figures.update(drain_figures(d))
        rec.samples = [(round(t, 4), done) for t, done in d.samples]
        rec.warnings += d.warnings
        rec.notes += system.notes()
        check_drain(d, "drain")
    except Exception as exc:  # one system failing must not stop the others
        rec.error = describe(exc)
    finally:
        client.flushdb()


def describe(exc: BaseException) -> str:
    """One line: the exception, and where it came from when it is not one of ours."""
    text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if not isinstance(exc, SystemFailed):
        frame = traceback.extract_tb(exc.__traceback__)[-1:]
        text += "".join(f" (at {Path(f.filename).name}:{f.lineno})" for f in frame)
    return text
