"""Progress of long operations: core functions report `(done, total)` through a plain callback, and
commands turn it into a Rich bar when a person is watching.

Core functions that can touch thousands of items (replay, purge, export, reconcile, emptying a
queue) take `progress: Tick | None` and call it after each batch; they know nothing of terminals.
A command opens `bar(...)`, which draws on stderr only when stdout and stderr are both terminals and
`--json` is off, and is silent (a no-op callback) otherwise, so pipes, files and scripts see only the
command's output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Tick = Callable[[int, int], None]  # (items done so far, items in all)


def _silent(_done: int, _total: int) -> None:
    return None


def on_terminal(as_json: bool = False) -> bool:
    """Whether a progress bar may be drawn: stdout and stderr are terminals and output is not JSON."""
    return not as_json and sys.stdout.isatty() and sys.stderr.isatty()


@contextmanager
def bar(description: str, as_json: bool = False) -> Iterator[Tick]:
    """A `Tick` drawing a transient Rich progress bar on stderr when on a terminal, else a no-op."""
    if not on_terminal(as_json):
        yield _silent
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as shown:
        task = shown.add_task(description, total=None)

        def tick(done: int, total: int) -> None:
            shown.update(task, completed=done, total=max(total, done))

        yield tick
