"""`jobctl stats --watch` as a person sees it, and the pure pieces of its screen.

The live view runs in a real pseudo-terminal (tmux, 80 columns) beside a real worker pool, and the test
reads the screen back with `capture-pane`: sparklines, a rate, the workers panel, no line wider than 80
columns, redrawn in place, no colour under NO_COLOR, exit 0 on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text

from jobctl import config, metrics, render
from jobctl.metrics import PoolStats, QueueStats
from jobctl.producer import enqueue
from jobctl.runtime import Runtime
from tests.support.rq_tools import wait_for

ROOT = Path(__file__).resolve().parents[1]
TMUX = shutil.which("tmux")
TOML = '[queues.webhook-retry]\nbackoff = "none"\nattempts = 1\nconcurrency = 4\n'
SPARKS = set(render.SPARK_LEVELS)
SGR = re.compile(r"\x1b\[([0-9;:]*)m")


# -- pure pieces -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "width", "top", "expected"), [
    ([], 10, None, ""),
    ([1, 2], 0, None, ""),
    ([0, 0, 0], 10, None, "···"),
    ([1, 2, 3, 4, 5, 6, 7, 8], 8, None, "▁▂▃▄▅▆▇█"),
    ([0, 1, 8], 3, None, "·▁█"),  # any job shows, however small beside the peak
    ([1] * 60, 30, None, "█" * 30),  # two minutes a character
    ([1] * 60, 37, None, "█" * 30),  # 37 cannot split 60 minutes evenly: two a character again
    ([5] * 3 + [1] * 6, 3, None, "█▂▂"),  # groups of 3: 15, 3, 3
    ([9] + [0] * 6 + [3, 3, 3], 4, None, "··█"),  # 10 values in groups of 3: the oldest, incomplete, is left out
    ([1, 1], 2, 8, "▁▁"),  # one scale shared with a busier series
    ([8, 4], 2, 8, "█▄"),
    ([5], 1, 0, "·"),
])
def test_sparkline(values: list[int], width: int, top: float | None, expected: str) -> None:
    assert render.sparkline(values, width, top) == expected


def test_sparkline_scale_is_shared() -> None:
    done, failed = [0] * 58 + [100, 100], [0] * 59 + [5]
    top = render.spark_top([done, failed], 30)
    assert top == 200
    assert render.sparkline(done, 30, top)[-1] == "█" and render.sparkline(failed, 30, top)[-1] == "▁"


@pytest.mark.parametrize(("seconds", "waiting", "expected"), [
    (None, 0, "—"), (0.0, 0, "—"), (None, 5, "∞"), (45.2, 5, "45s"), (600, 1, "10m"), (3 * 3600 + 300, 1, "3h05m"),
])
def test_drain_time_text(seconds: float | None, waiting: int, expected: str) -> None:
    assert render.duration(seconds, waiting) == expected


@pytest.mark.parametrize(("per_s", "expected"), [(0.0, "0/s"), (0.5, "0.50/s"), (12.34, "12.3/s"),
                                                 (1234.0, "1,234/s")])
def test_rate_text(per_s: float, expected: str) -> None:
    assert render.rate(per_s) == expected


COLS = (render.Column("a", 100, "left"), render.Column("b", 10), render.Column("c", 50), render.Column("d", 20))
ROWS = [["x" * 10, "y" * 10, "z" * 10, "w" * 10]]  # each column 10 wide, + 2 gap, - 2 in all


@pytest.mark.parametrize(("width", "shown"), [(None, [0, 1, 2, 3]), (46, [0, 1, 2, 3]), (45, [0, 2, 3]),
                                              (34, [0, 2, 3]), (33, [0, 2]), (22, [0, 2]), (21, [0]), (3, [0])])
def test_fit_drops_the_least_kept_columns_first(width: int | None, shown: list[int]) -> None:
    assert render.fit(COLS, ROWS, width) == shown


def _queue(name: str, **kw: Any) -> QueueStats:
    base: dict[str, Any] = dict(name=name, waiting=3, active=2, delayed=1, completed_1h=120, failed_1h=4,
                                avg_ms_1h=80.5, oldest_waiting_s=12.0, workers=2, paused=False, dead_letters=1,
                                slots=4, p50_ms_1h=48.0, p95_ms_1h=240.0, rate_per_s=2.5, drain_s=1.2,
                                completed_per_min=tuple(range(60)), failed_per_min=(0,) * 59 + (4,),
                                rate_limit=30, rate_window_s=1.0, rate_used=12)
    return QueueStats(**(base | kw))


POOLS = [PoolStats(f"host-{i}.example.org.pool-{i}", f"host-{i}.example.org", 1000 + i,
                   ("email", "push", "webhook-retry", "image-processing", "data-cleanup"), "busy", 3, 30, 1.5)
         for i in range(3)]


def _lines(renderable: Any, width: int, color: bool = False) -> list[str]:
    console = Console(width=width, record=True, color_system="standard" if color else None, force_terminal=color,
                      file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the console
    console.print(renderable)
    console.file.close()
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_watch_view_never_wider_than_the_terminal(width: int) -> None:
    queues = [_queue("a-queue-with-a-rather-long-name-indeed"), _queue("email", waiting=5000, workers=0)]
    view = render.watch_view("2026-12-01T12:00:00Z", 0.5, queues, {"email": ("backlog", "no workers")},
                             {"email": {"waiting": "warning", "workers": "critical"}}, POOLS,
                             ["RQ workers are suspended (rq suspend): pools take no jobs " * 3], width)
    lines = _lines(view, width)
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    assert "Workers (3)" in text and "host-0.example.org" in text and "1000" in text
    assert "2.50/s" in text and SPARKS & set(text)
    assert "attention: email: backlog, no workers" in text
    if width >= 200:  # every column shown
        assert all(c.header in text for c in (*render.WATCH_COLUMNS, *render.FLOW_COLUMNS, *render.WORKER_COLUMNS))


def test_breaches_are_coloured_by_severity() -> None:
    table = render.queues_panel([_queue("email", waiting=5000, workers=0)], {"email": {"waiting": "warning",
                                                                                     "workers": "critical"}}, 120)
    console = Console(width=120, color_system="standard", force_terminal=True, file=open(os.devnull, "w"))  # noqa: SIM115
    styles = {seg.text.strip(): seg.style for seg in console.render(table) if seg.text.strip()}
    console.file.close()
    assert styles["5000"] and styles["5000"].color and styles["5000"].color.name == "yellow"
    workers = styles["0"]
    assert workers and workers.color and workers.color.name == "red"
    assert styles["email"] and styles["email"].color and styles["email"].color.name == "red"  # the worst


def test_breaches_follow_the_health_thresholds() -> None:
    q = _queue("email", waiting=11, failed_1h=3, workers=0, dead_letters_1h=2)
    assert metrics.breaches(q, 10, 3) == {"waiting": "warning", "workers": "critical", "dead_letters": "warning"}
    assert metrics.breaches(q, 11, 2) == {"failed_1h": "warning", "workers": "critical", "dead_letters": "warning"}
    assert metrics.breaches(_queue("email", paused=True, workers=0), 10, 10) == {}


# -- in a pseudo-terminal, beside a real pool --------------------------------------------------------

def _hook(sleep: float, fail: bool = False) -> dict[str, Any]:
    return {"eventId": "e", "eventType": "t", "eventData": {"sleep": sleep, "fail": fail}, "attemptNumber": 0}


@pytest.fixture
def busy_pool(redis_url: str, tmp_path: Path) -> Iterator[tuple[Runtime, Path, int]]:
    """A real pool (2 processes) on webhook-retry, fed a job every 50 ms (one in ten fails) until the end."""
    toml = tmp_path / "jobctl.toml"
    toml.write_text(TOML)
    env = {"JOBCTL_REDIS_URL": redis_url, "JOBCTL_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    rt = Runtime(config.load(env=env, config=str(toml)))
    pool = subprocess.Popen([sys.executable, "-m", "tests.support.pool_harness", redis_url, "webhook-retry", "2",
                             "--config", str(toml)], cwd=ROOT, stderr=subprocess.DEVNULL, start_new_session=True)
    stop = threading.Event()

    def feed() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            enqueue(rt, "webhook-retry", "retry-webhook", _hook(0.02, fail=n % 10 == 0))
            stop.wait(0.05)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield rt, toml, pool.pid
    finally:
        stop.set()
        feeder.join(5)
        os.killpg(pool.pid, signal.SIGKILL)
        pool.wait()


class Term:
    """A detached tmux session of its own server (socket), 80x50, running one command."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.sock = f"jobctl-test-{uuid.uuid4().hex[:8]}"
        assert TMUX
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        shell = f"cd {shlex.quote(str(ROOT))} && env -i {exports} {command}; echo EXIT=$?; sleep 120"
        self._tmux("new-session", "-d", "-s", "w", "-x", "80", "-y", "50", shell)

    def _tmux(self, *args: str) -> str:
        assert TMUX
        return subprocess.run([TMUX, "-L", self.sock, "-f", "/dev/null", *args], capture_output=True, text=True,
                              timeout=20, check=True).stdout

    def screen(self, *flags: str) -> str:
        """The visible screen, wrapped lines joined (-J), so a line too long for 80 columns shows as one."""
        return self._tmux("capture-pane", "-p", "-J", *flags, "-t", "w")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "w", *keys)

    def close(self) -> None:
        subprocess.run([TMUX or "tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=20)
        tmpdir = os.environ.get("TMUX_TMPDIR", "/tmp")
        Path(tmpdir, f"tmux-{os.getuid()}", self.sock).unlink(missing_ok=True)  # kill-server leaves the socket


@pytest.fixture
def term() -> Iterator[Callable[[str, dict[str, str]], Term]]:
    if TMUX is None:
        pytest.skip("tmux is not installed")
    made: list[Term] = []

    def start(command: str, env: dict[str, str]) -> Term:
        made.append(Term(command, env))
        return made[-1]

    yield start
    for t in made:
        t.close()


def _env(redis_url: str, tmp_path: Path, toml: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "TERM": "xterm-256color",
            "LANG": "C.UTF-8", "JOBCTL_REDIS_URL": redis_url, "JOBCTL_DATA_DIR": str(tmp_path / "data"),
            "JOBCTL_CONFIG": str(toml), **extra}


def _colours(text: str) -> list[str]:
    """SGR colour parameters in `text` (foreground/background, 16, 256 or true colour); 39/49 (the
    terminal's default colour, which tmux writes when it replays a screen) do not count."""
    found = []
    for params in SGR.findall(text):
        codes = [int(p) for p in re.split("[;:]", params) if p.isdigit()]
        found += [str(c) for c in codes if 30 <= c <= 38 or 40 <= c <= 48 or 90 <= c <= 97 or 100 <= c <= 107]
    return found


WATCH = ".venv/bin/jobctl stats --watch --interval 0.5"


def test_watch_in_a_terminal_beside_a_real_pool(busy_pool: tuple[Runtime, Path, int], redis_url: str,
                                                tmp_path: Path, term: Callable[[str, dict[str, str]], Term]) -> None:
    rt, toml, pool_pid = busy_pool
    t = term(WATCH, _env(redis_url, tmp_path, toml))
    rate = re.compile(r"^webhook-retry +(\d+\.\d+|\d[\d,]*)/s", re.M)

    def ready() -> bool:
        s = t.screen()
        m = rate.search(s)
        return bool(m and float(m.group(1).replace(",", "")) > 0 and SPARKS & set(s) and str(pool_pid) in s)

    wait_for(ready, 60, "the live view with a rate, a sparkline and the pool", t.screen)
    first = t.screen()
    assert "Workers (1)" in first and re.search(rf"\b{pool_pid}\b", first)
    assert re.search(r"^\S+ +\d+ +webhook-retry +\d+/\d+ +\d+s ago", first, re.M), first  # host pid queues jobs age
    assert "Flow" in first and "drain" in first and "p95" in first and "slots" in first
    assert max(len(line) for line in first.splitlines()) <= 80, first  # nothing wrapped (-J joins wrapped lines)

    stamp = re.compile(r"jobctl stats +(\S+Z)")
    seen = {stamp.search(first).group(1)}  # type: ignore[union-attr]
    wait_for(lambda: (m := stamp.search(t.screen())) is not None and m.group(1) not in seen, 20, "a redraw")
    history = t.screen("-S", "-")  # the scroll-back too: a view that scrolled would leave old frames there
    assert len(stamp.findall(history)) == 1, history
    assert _colours(t.screen("-e")), "the coloured run shows no colour: the NO_COLOR check below proves nothing"

    t.keys("C-c")
    wait_for(lambda: "EXIT=0" in t.screen(), 20, "exit 0 on Ctrl-C", t.screen)
    assert "Traceback" not in t.screen()
    assert rt.redis.ping()


def test_watch_under_no_color_is_plain(busy_pool: tuple[Runtime, Path, int], redis_url: str, tmp_path: Path,
                                       term: Callable[[str, dict[str, str]], Term]) -> None:
    _rt, toml, pool_pid = busy_pool
    t = term(WATCH, _env(redis_url, tmp_path, toml, NO_COLOR="1"))
    wait_for(lambda: str(pool_pid) in t.screen() and bool(SPARKS & set(t.screen())), 60, "the live view", t.screen)
    time.sleep(1.2)  # a few redraws
    coloured = t.screen("-e")
    assert _colours(coloured) == [], coloured
    assert max(len(line) for line in t.screen().splitlines()) <= 80


def test_colour_check_sees_colour() -> None:
    lines = []
    console = Console(width=40, color_system="standard", force_terminal=True, record=True,
                      file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(Text("x", style="red"), Text("y", style="bold"))
    console.file.close()
    lines.append(console.export_text(styles=True))
    assert _colours(lines[0]) == ["31"]
    assert _colours("\x1b[1m\x1b[39m\x1b[49mplain\x1b[0m") == []


def test_one_shot_stats_fits_80_columns(busy_pool: tuple[Runtime, Path, int], redis_url: str, tmp_path: Path,
                                        term: Callable[[str, dict[str, str]], Term]) -> None:
    """`jobctl stats` on an 80-column terminal drops columns instead of wrapping rows (a pipe gets them all)."""
    rt, toml, _pid = busy_pool
    wait_for(lambda: metrics.snapshot(rt, ["webhook-retry"], dead_letters=False).queues[0].completed_1h > 0, 60,
             "a finished job")
    t = term(".venv/bin/jobctl stats", _env(redis_url, tmp_path, toml))
    wait_for(lambda: "EXIT=0" in t.screen(), 30, "stats to print", t.screen)
    screen = t.screen()
    assert max(len(line) for line in screen.splitlines()) <= 80, screen
    row = next(line for line in screen.splitlines() if "│ webhook-retry" in line)
    assert "p95 ms" in screen and re.search(r"│ +\d+(\.\d+)? │", row)
    assert "dead letters" not in screen  # one of the columns dropped to fit
