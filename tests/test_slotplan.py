"""jobctl.slotplan as a table (pure), and the pool applying it."""

from __future__ import annotations

import random

import pytest

from jobctl import slotplan
from jobctl.config import Settings
from jobctl.pool import Pool

Caps = list[tuple[str, int]]


@pytest.mark.parametrize(("caps", "processes", "expected"), [
    ([("a", 3)], 1, [{"a": 3}]),
    ([("a", 3)], 2, [{"a": 2}, {"a": 1}]),
    ([("a", 3)], 3, [{"a": 1}, {"a": 1}, {"a": 1}]),
    ([("a", 1)], 3, [{"a": 1}, {"a": 0}, {"a": 0}]),  # more processes than slots: the rest stay empty
    ([("a", 2)], 0, [{"a": 2}]),  # at least one process
    ([("a", 0), ("b", 2)], 2, [{"a": 0, "b": 1}, {"a": 0, "b": 1}]),
    # webhook-retry (3) then push (20) over 2: the cap of 3 split 2 + 1, push fills up to a balance
    ([("webhook-retry", 3), ("push", 20)], 2, [{"webhook-retry": 2, "push": 10}, {"webhook-retry": 1, "push": 10}]),
    # priority order decides who gets the first, lowest-index slots
    ([("a", 1), ("b", 1), ("c", 1)], 2, [{"a": 1, "b": 0, "c": 1}, {"a": 0, "b": 1, "c": 0}]),
    ([("a", 5), ("b", 1)], 4, [{"a": 2, "b": 0}, {"a": 1, "b": 1}, {"a": 1, "b": 0}, {"a": 1, "b": 0}]),
])
def test_plan_table(caps: Caps, processes: int, expected: list[dict[str, int]]) -> None:
    assert slotplan.plan(caps, processes) == expected


def _random_caps(rng: random.Random) -> Caps:
    return [(f"q{i}", rng.choice([0, 1, 1, 2, 3, 5, 10, 20, rng.randint(0, 60)])) for i in range(rng.randint(1, 6))]


def test_plan_keeps_every_cap_and_balances() -> None:
    rng = random.Random(20240501)
    for _ in range(2000):
        caps, processes = _random_caps(rng), rng.randint(1, 8)
        shares = slotplan.plan(caps, processes)
        assert len(shares) == processes
        for name, cap in caps:
            assert sum(s[name] for s in shares) == cap, (caps, processes)  # the cap holds in the pool as a whole
            assert max(s[name] for s in shares) - min(s[name] for s in shares) <= 1 or len(caps) > 1
        sizes = [sum(s.values()) for s in shares]
        assert max(sizes) - min(sizes) <= 1, (caps, processes, sizes)
        assert sizes == sorted(sizes, reverse=True)  # ties go to the lowest index
        assert all(set(s) == {n for n, _c in caps} for s in shares)


@pytest.mark.parametrize(("rooms", "total", "expected"), [
    ([3, 3], None, [3, 3]),
    ([3, 3], 6, [3, 3]),
    ([3, 3], 100, [3, 3]),  # more than the room: the room
    ([3, 3], 5, [3, 2]),
    ([3, 3], 1, [1, 0]),
    ([3, 3], 0, [0, 0]),
    ([5, 1], 4, [3, 1]),
    ([1, 5], 4, [1, 3]),
    ([0, 4, 2], 3, [0, 2, 1]),
    ([2, 2, 2, 2], 7, [2, 2, 2, 1]),
])
def test_totals_table(rooms: list[int], total: int | None, expected: list[int]) -> None:
    shares = [{"q": r} for r in rooms]
    assert slotplan.totals(shares, total) == expected


def test_totals_never_exceed_a_process_room() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        shares = slotplan.plan(_random_caps(rng), rng.randint(1, 6))
        rooms = [sum(s.values()) for s in shares]
        total = rng.choice([None, 0, 1, rng.randint(0, sum(rooms) + 5)])
        out = slotplan.totals(shares, total)
        assert all(0 <= o <= r for o, r in zip(out, rooms, strict=True)), (rooms, total, out)
        assert sum(out) == (sum(rooms) if total is None else min(total, sum(rooms)))
        free = [r - o for o, r in zip(out, rooms, strict=True)]
        if any(free):  # dealt evenly: a process with room left never has more than one over another
            assert max(out) - min(o for o, f in zip(out, free, strict=True) if f) <= 1


@pytest.mark.parametrize(("total_slots", "cpus", "expected"), [
    (1, 8, 1), (3, 8, 3), (4, 8, 4), (39, 8, 4), (39, 2, 2), (39, 1, 1), (2, 2, 2), (0, 2, 1), (10, 3, 3),
])
def test_default_processes_table(total_slots: int, cpus: int, expected: int) -> None:
    assert slotplan.default_processes(total_slots, cpus) == expected


def test_default_processes_uses_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slotplan.os, "cpu_count", lambda: 3)
    assert slotplan.default_processes(20) == 3
    monkeypatch.setattr(slotplan.os, "cpu_count", lambda: None)  # unknown: one process
    assert slotplan.default_processes(20) == 1


@pytest.mark.parametrize(("queues", "processes", "total", "children", "per_child_total"), [
    (["webhook-retry", "push"], 2, None, [{"webhook-retry": 2, "push": 10}, {"webhook-retry": 1, "push": 10}],
     [12, 11]),
    (["webhook-retry", "push"], 2, 5, [{"webhook-retry": 2, "push": 10}, {"webhook-retry": 1, "push": 10}], [3, 2]),
    (["data-cleanup"], 4, None, [{"data-cleanup": 1}], [1]),  # never more processes than slots
    (["webhook-retry"], 3, 1, [{"webhook-retry": 3}], [1]),  # --concurrency 1: one process, its total caps it
])
def test_pool_applies_the_plan(settings: Settings, queues: list[str], processes: int, total: int | None,
                               children: list[dict[str, int]], per_child_total: list[int]) -> None:
    pool = Pool(settings, queues, processes=processes, total_slots=total)  # nothing runs until .run()
    assert [c.slots for c in pool.children] == children
    assert [c.total for c in pool.children] == per_child_total
    assert pool.queue_slots == {q: settings.queues.get(q).concurrency for q in queues}
    assert pool.total_slots == sum(per_child_total)
