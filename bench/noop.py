"""The no-op job both systems run in the benchmark."""

from __future__ import annotations

from typing import Any


def noop(*_args: Any, **_kwargs: Any) -> None:
    """Do nothing (RQ imports this by name; jobctl registers it under a job name)."""
    return None
