"""The bench's pure arithmetic, without Redis: `pytest bench/test_measure.py`."""

from __future__ import annotations

import pytest

from bench.measure import Counters, cost_per_job, counters_from_info, drained_at, ratio, steady_rate
from bench.procs import descendants, parent_pid, parse_rollup
from bench.report import TARGETS, medians, verdict
from bench.system import Round


def linear(rate: float, n: int, start_s: float = 0.5, step_s: float = 0.01) -> list[tuple[float, int]]:
    """Samples of a system idle for start_s, then doing `rate` jobs/s until n are done."""
    out: list[tuple[float, int]] = []
    t = 0.0
    while not out or out[-1][1] < n:
        out.append((t, min(n, max(0, int((t - start_s) * rate)))))
        t += step_s
    return out


@pytest.mark.parametrize("rate", [100.0, 2_000.0, 50_000.0])
def test_steady_rate_ignores_start_up(rate: float) -> None:
    assert steady_rate(linear(rate, 10_000), 10_000) == pytest.approx(rate, rel=0.02)


@pytest.mark.parametrize(("samples", "expected"), [
    ([(0.0, 0), (1.0, 10), (2.0, 90), (3.0, 100)], 80.0),  # 10 % and 90 % hit exactly
    ([(0.0, 0), (1.0, 20), (2.0, 95), (3.0, 100)], 75.0),  # first samples at or past each mark
    ([(0.0, 0), (0.2, 100)], None),  # 10 % and 90 % in the same sample: not measurable
    ([(0.0, 0), (1.0, 50)], None),  # never reached 90 %
    ([], None),
])
def test_steady_rate_table(samples: list[tuple[float, int]], expected: float | None) -> None:
    assert steady_rate(samples, 100) == expected


def test_steady_rate_custom_window() -> None:
    samples = [(0.0, 0), (1.0, 25), (2.0, 50), (3.0, 75), (4.0, 100)]
    assert steady_rate(samples, 100, low=0.25, high=0.75) == 25.0


def test_drained_at() -> None:
    assert drained_at([(0.0, 0), (1.5, 99), (1.6, 100)], 100) == 1.6
    assert drained_at([(0.0, 0), (1.5, 99)], 100) is None


def test_cost_per_job_takes_out_the_bench_own_reads() -> None:
    before = Counters(100, 1_000, 10, 1.0)
    after = Counters(1_300, 6_100, 1_010, 1.05)
    own = Counters(100, 100, 0, 0.01)  # 100 probes, 1 round trip and 1 command each
    cost = cost_per_job(before, after, own, 1_000)
    assert (cost.round_trips, cost.commands, cost.scripts) == (1.1, 5.0, 1.0)
    assert cost.cpu_us == pytest.approx(40.0)


def test_counters_from_info_counts_every_script_command() -> None:
    info = {"total_reads_processed": 7, "total_commands_processed": 30, "used_cpu_user": "1.5",
            "used_cpu_sys": "0.25", "cmdstat_evalsha": {"calls": 4}, "cmdstat_eval": {"calls": 1},
            "cmdstat_fcall": {"calls": 2}, "cmdstat_get": {"calls": 23}}
    assert counters_from_info(info) == Counters(7, 30, 7, 1.75)


def test_ratio_and_missing_values() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None and ratio(3.0, None) is None and ratio(3.0, 0.0) is None


def test_process_tree_parsing() -> None:
    assert parse_rollup("55d0-7ff [rollup]\nRss:    2048 kB\nPss:    1024 kB\nPss_Anon: 9 kB\n") == (2048, 1024)
    assert parent_pid("42 (python -m (x)) S 7 42 42 0 -1") == 7
    table = {10: 1, 11: 10, 12: 10, 13: 12, 20: 1}
    assert sorted(descendants(10, table)) == [10, 11, 12, 13]


def test_targets_from_medians() -> None:
    rounds = [Round("jobctl", 1, {"process_jobs_s": 900.0}), Round("jobctl", 2, {"process_jobs_s": 1100.0}),
              Round("jobctl", 3, {"process_jobs_s": None}), Round("BullMQ", 1, {"process_jobs_s": 2000.0}),
              Round("jobctl:idle", 1, {"idle_processes": 5.0})]
    meds = medians(rounds)
    assert meds["jobctl"] == {"process_jobs_s": 1000.0, "idle_processes": 5.0}
    by_label = {t.label: verdict(t, meds) for t in TARGETS}
    assert by_label["no-op processing >= 0.6x BullMQ"] == (0.5, "FAIL")
    assert by_label["no-op processing >= 1.5x Dramatiq"] == (None, "n/a")
    assert by_label["`work --all` idle <= 4 processes"] == (5.0, "FAIL")
