"""Slots: the threads of one runner process that run jobs, and their timeouts.

A slot runs one job at a time. Jobs that wait on I/O share a process this way, dozens at once. A job
past its timeout gets `JobTimeout` raised inside its slot (CPython's asynchronous exception, as
Dramatiq's thread time limits do); it takes effect at the job's next Python instruction, so a job
blocked inside C code ignores it. A job that has not given up `KILL_GRACE_S` later is *stuck*: its
runner then hands every job back and restarts (see `worker.Runner`).

The race to avoid: an exception aimed at a job that has just finished must never hit the next job
in that slot. The slot's lock makes "which job runs here" and "raise in it" one step, and a slot
that was signalled clears any pending exception before it takes the next job.
"""

from __future__ import annotations

import ctypes
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobctl.errors import JobTimeout

KILL_GRACE_S = 5.0


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc) if exc else ctypes.c_void_p(0))


@dataclass
class Slot:
    """One thread and the job it runs."""

    index: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread_id: int = 0
    job: Any = None
    deadline: float = 0.0  # monotonic
    signalled: bool = False

    def begin(self, job: Any, timeout_s: float) -> None:
        """Mark `job` as running here."""
        with self.lock:
            self.job, self.deadline, self.signalled = job, time.monotonic() + timeout_s, False

    def end(self) -> None:
        """Mark the slot idle, clearing a timeout that arrived too late to matter."""
        with self.lock:
            self.job = None
            if self.signalled:
                _async_raise(self.thread_id, None)
                self.signalled = False

    def interrupt(self, job: Any) -> bool:
        """Raise `JobTimeout` in the slot if it still runs `job`."""
        with self.lock:
            if self.job is not job or self.signalled:
                return False
            self.signalled = True
            _async_raise(self.thread_id, JobTimeout)
            return True


class Slots:
    """A fixed set of slot threads fed from one hand-off queue."""

    def __init__(self, n: int, run: Callable[[Slot, Any], None], name: str = "slot") -> None:
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.slots = [Slot(i) for i in range(n)]
        self._run = run
        for slot in self.slots:
            t = threading.Thread(target=self._main, args=(slot,), name=f"{name}-{slot.index}", daemon=True)
            t.start()
            slot.thread_id = t.ident or 0

    def _main(self, slot: Slot) -> None:
        while True:
            try:
                job = self.jobs.get()
                if job is None:
                    return
                self._run(slot, job)
            except JobTimeout:  # a late timeout outside the job itself: nothing to interrupt any more
                continue

    def submit(self, job: Any) -> None:
        """Hand a job to the next free slot."""
        self.jobs.put(job)

    def overdue(self, grace_s: float = 0.0) -> list[tuple[Slot, Any]]:
        """(slot, job) pairs past their deadline plus `grace_s`."""
        now = time.monotonic()
        return [(s, s.job) for s in self.slots if s.job is not None and now > s.deadline + grace_s]

    def close(self) -> None:
        """Let every slot thread end once it is idle."""
        for _ in self.slots:
            self.jobs.put(None)
