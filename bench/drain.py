"""Drain a pre-filled queue: start a system's workers, sample its done count, read Redis's cost.

The done count comes from a Probe: one MULTI of O(1) reads (LLEN, ZCARD, HLEN) of the system's
own keys, issued every ~15 ms. The probe's own cost, and that of the two INFO snapshots, is
measured on the spot (the probe run 100 times) and subtracted, so the figures are the workers'.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from bench.measure import Cost, Counters, Sample, cost_per_job, counters_from_info, drained_at, steady_rate
from bench.procs import Group, Memory

CALIBRATION_PROBES = 100


@dataclass(frozen=True)
class Probe:
    """Cheap reads whose replies sum to the jobs left (`remaining`) or the jobs done."""

    reads: tuple[tuple[str, str], ...]  # (command, key), e.g. ("llen", "bull:bench:wait")
    remaining: bool

    def done(self, client: redis.Redis, n: int) -> int:
        """Jobs done out of n, read atomically in one round trip."""
        pipe = client.pipeline(transaction=True)
        for command, key in self.reads:
            pipe.execute_command(command.upper(), key)
        total = sum(int(v) for v in pipe.execute())
        return n - total if self.remaining else total


def read_counters(client: redis.Redis) -> Counters:
    """Redis's work counters now (one INFO)."""
    return counters_from_info(client.info("stats", "cpu", "commandstats"))


def own_cost(client: redis.Redis, probe: Probe) -> tuple[Counters, Counters]:
    """(cost of one INFO snapshot, cost of one probe), measured now."""
    a, b = read_counters(client), read_counters(client)
    for _ in range(CALIBRATION_PROBES):
        probe.done(client, 0)
    c = read_counters(client)
    return b - a, (c - b - (b - a)).times(1 / CALIBRATION_PROBES)


def active_elsewhere(client: redis.Redis, db: int, window_s: float) -> dict[int, int]:
    """Database -> clients on it (not ours) that ran a command within window_s: INFO counts their work too."""
    out: dict[int, int] = {}
    for c in client.client_list():
        other = int(c.get("db", db))
        if other != db and float(c.get("idle", 0)) <= window_s and c.get("cmd") != "NULL":
            out[other] = out.get(other, 0) + 1
    return out


@dataclass
class Drain:
    """What one drain measured."""

    n: int
    samples: list[Sample]
    cost: Cost
    memory: Memory | None
    timed_out: bool
    warnings: list[str]

    @property
    def jobs_s(self) -> float | None:
        """Processing rate between 10 % and 90 % done."""
        return steady_rate(self.samples, self.n)

    @property
    def average_jobs_s(self) -> float:
        """Jobs done per second since the workers were started (the figure left when a drain timed out)."""
        t, done = self.samples[-1]
        return done / t if t > 0 else 0.0

    @property
    def wall_s(self) -> float | None:
        """Worker start to all done."""
        return drained_at(self.samples, self.n)


def drain(client: redis.Redis, start: Callable[[], Group], probe: Probe, n: int, timeout_s: float,
          interval_s: float = 0.015) -> Drain:
    """Start the workers, sample until n jobs are done (or timeout_s), then stop them."""
    snapshot, per_probe = own_cost(client, probe)
    db = int(client.connection_pool.connection_kwargs.get("db", 0))
    before = read_counters(client)
    t0 = time.perf_counter()
    with start() as group:
        samples, memory = _sample(client, group, probe, n, t0, timeout_s, interval_s)
        after = read_counters(client)
        elapsed = time.perf_counter() - t0
    own = snapshot + per_probe.times(len(samples))
    busy = active_elsewhere(client, db, elapsed)
    where = ", ".join(f"{v} on db{k}" for k, v in busy.items())
    warnings = [f"Redis figures include other clients that were active meanwhile ({where})"] if busy else []
    done = samples[-1][1]
    return Drain(n, samples, cost_per_job(before, after, own, max(done, 1)), memory, done < n, warnings)


def _sample(client: redis.Redis, group: Group, probe: Probe, n: int, t0: float, timeout_s: float,
            interval_s: float) -> tuple[list[Sample], Memory | None]:
    samples: list[Sample] = []
    memory: Memory | None = None
    while True:
        done = probe.done(client, n)
        now = time.perf_counter() - t0
        samples.append((now, done))
        if done >= n or now > timeout_s:
            break
        if memory is None and done >= n / 2:
            memory = group.memory()
        group.check()
        time.sleep(interval_s)
    return samples, memory or group.memory()
