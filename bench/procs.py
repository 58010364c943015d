"""Worker processes of one system: started in their own session, measured as a tree, always stopped.

Memory is the sum over the whole process tree (the leader and every descendant) of RSS and PSS
from /proc/PID/smaps_rollup. PSS splits shared pages (forked copy-on-write runners, shared
libraries) between the processes that map them, so the PSS sum is what the tree really costs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PR_SET_PDEATHSIG = 1


class SystemFailed(Exception):
    """A system under test could not be measured (the others still are)."""


def parse_rollup(text: str) -> tuple[int, int]:
    """(RSS kB, PSS kB) from the text of /proc/PID/smaps_rollup."""
    fields = {line.split(":")[0]: line.split()[1] for line in text.splitlines() if line[:4] in ("Rss:", "Pss:")}
    return int(fields.get("Rss", 0)), int(fields.get("Pss", 0))


def parent_pid(stat: str) -> int:
    """The parent pid from the text of /proc/PID/stat (the command name may hold spaces and parens)."""
    return int(stat.rpartition(")")[2].split()[1])


def descendants(root: int, parents: Mapping[int, int]) -> list[int]:
    """root and every process below it, given pid -> parent pid."""
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += frontier
    return tree


def parents() -> dict[int, int]:
    """pid -> parent pid of every process now running."""
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                out[int(entry.name)] = parent_pid((entry / "stat").read_text())
    return out


@dataclass(frozen=True)
class Memory:
    """One reading of a process tree."""

    processes: int
    rss_mib: float
    pss_mib: float


def tree_memory(roots: Sequence[int]) -> Memory:
    """Processes, summed RSS and summed PSS of the trees under roots."""
    table = parents()
    pids = [pid for root in roots for pid in descendants(root, table)]
    rss = pss = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            r, p = parse_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
            rss, pss = rss + r, pss + p
    return Memory(len(pids), rss / 1024, pss / 1024)


class Group:
    """Processes started together for one system; a context manager that always stops them."""

    def __init__(self, name: str, commands: Sequence[Sequence[str]], env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.name = name
        self.logs = [tempfile.TemporaryFile() for _ in commands]  # noqa: SIM115 - read after the stop too
        self.procs = [subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=dict(env) if env else None, cwd=cwd, start_new_session=True,
                                       preexec_fn=_die_with_parent)
                      for cmd, log in zip(commands, self.logs, strict=True)]

    def __enter__(self) -> Group:
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self.stop()

    def check(self) -> None:
        """Raise SystemFailed, with the last line printed and a log of all of it, if a leader has exited."""
        for proc in self.procs:
            if proc.poll() is not None:
                log = self.save_output()
                raise SystemFailed(f"{self.name}: process exited with code {proc.returncode}: {self.tail(1)} "
                                   f"(full output: {log})")

    def save_output(self) -> str:
        """Write everything printed so far to a file that outlives the run; its path."""
        fd, path = tempfile.mkstemp(prefix=f"bench-{self.name.split()[0]}-", suffix=".log")
        with os.fdopen(fd, "w") as fh:
            fh.write(self.output())
        return path

    def memory(self) -> Memory:
        """Memory of every process tree of the group."""
        return tree_memory([p.pid for p in self.procs])

    def output(self) -> str:
        """Everything the processes printed so far."""
        text = []
        for log in self.logs:
            log.seek(0)
            text.append(log.read().decode(errors="replace"))
        return "".join(text)

    def tail(self, lines: int = 6) -> str:
        """The last lines printed, on one line."""
        return " | ".join(line.strip() for line in self.output().splitlines()[-lines:] if line.strip()) or "no output"

    def stop(self, grace_s: float = 15.0) -> float:
        """SIGTERM each leader, wait up to grace_s for the whole tree, then SIGKILL what is left; seconds taken."""
        t = time.perf_counter()
        table = parents()
        tree = {pid for p in self.procs for pid in descendants(p.pid, table)}
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = t + grace_s
        while time.perf_counter() < deadline and self._alive(tree):
            time.sleep(0.05)
        elapsed = time.perf_counter() - t
        if self._alive(tree):
            self._kill(tree)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        return elapsed

    def _alive(self, tree: set[int]) -> bool:
        for proc in self.procs:
            proc.poll()
        return any(_exists(pid) for pid in tree)

    def _kill(self, tree: set[int]) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for pid in tree:  # anything that left the session (setsid) but is still ours
            if _exists(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the bench dies, so no worker outlives a killed run."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _exists(pid: int) -> bool:
    """A live (non-zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
