"""How a pool spreads its slots over its processes: a pure decision, table-tested like `retry.decide`.

A queue's `concurrency` is the most of its jobs the pool runs at once. Its slots are dealt out over
the processes one at a time, each slot to the process that holds the fewest so far (ties to the
lowest index), queues in priority order; so the per-queue cap holds in the pool as a whole
(each process enforces its share), CPU-bound queues use every core, and I/O-bound jobs share
processes. `totals` splits the pool's `--concurrency` over the processes: a process runs at most
its total at once, from whichever of its queues have work, so no queue is left without a slot.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

DEFAULT_MAX_PROCESSES = 4


def default_processes(total_slots: int, cpus: int | None = None) -> int:
    """A sensible process count: one per core, at most 4, never more than there are slots."""
    return max(1, min(cpus or os.cpu_count() or 1, DEFAULT_MAX_PROCESSES, total_slots))


def plan(concurrency: Sequence[tuple[str, int]], processes: int) -> list[dict[str, int]]:
    """Per process, queue -> slots; `concurrency` is (queue, cap) in priority order."""
    shares: list[dict[str, int]] = [{name: 0 for name, _c in concurrency} for _ in range(max(1, processes))]
    for name, cap in concurrency:
        for _ in range(cap):
            target = min(range(len(shares)), key=lambda i: (sum(shares[i].values()), i))
            shares[target][name] += 1
    return shares


def totals(shares: Sequence[dict[str, int]], total: int | None = None) -> list[int]:
    """Per process, the most jobs it runs at once: its slots, with `total` dealt out over the processes."""
    room = [sum(s.values()) for s in shares]
    if total is None or total >= sum(room):
        return room
    out = [0] * len(shares)
    for _ in range(total):
        target = min((i for i in range(len(shares)) if out[i] < room[i]), key=lambda i: (out[i], i))
        out[target] += 1
    return out
