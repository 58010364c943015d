"""Pure retry decisions: back-off arithmetic and what happens after a failure."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from jobctl.errors import PermanentFailure, RetryLater
from jobctl.queues import Backoff


def backoff_delay_s(backoff: Backoff, retry_number: int, rand: random.Random | None = None) -> float:
    """Wait before retry n (n = 1, 2, …): `base × 2^(n−1)` or fixed, capped, optional full jitter."""
    if backoff.kind == "none" or retry_number < 1:
        return 0.0
    exponent = 0 if backoff.kind == "fixed" else min(retry_number - 1, 64)
    delay = backoff.delay_s * 2.0**exponent
    if backoff.max_s is not None:
        delay = min(delay, backoff.max_s)
    if backoff.jitter:
        # jitter only shortens within the upper half so a retry stays predictable-ish
        delay = delay / 2 + (rand or random).uniform(0, delay / 2)
    return delay


@dataclass(frozen=True)
class Decision:
    """What the worker does with a failed attempt."""

    action: Literal["retry", "dead-letter"]
    delay_s: float = 0.0
    consumes_attempt: bool = True
    reason: str = ""


def decide(error: BaseException, attempt: int, max_attempts: int, backoff: Backoff,
           retry_later_used: bool = False) -> Decision:
    """Retry or dead-letter after attempt `attempt` (1-based) failed with `error`.

    `RetryLater` waits its own delay; it consumes an attempt only the first time in a row
    (`retry_later_used` is false), so repeated 429s never exhaust a job.
    """
    reason = f"{type(error).__name__}: {error}"
    if isinstance(error, PermanentFailure):
        return Decision("dead-letter", reason=f"permanent failure: {error.reason}")
    if isinstance(error, RetryLater):
        consumes = not retry_later_used
        if consumes and attempt >= max_attempts:
            return Decision("retry", error.delay_s, consumes_attempt=False, reason=reason)
        return Decision("retry", error.delay_s, consumes_attempt=consumes, reason=reason)
    if attempt >= max_attempts:
        return Decision("dead-letter", reason=f"{reason} (attempt {attempt} of {max_attempts})")
    return Decision("retry", backoff_delay_s(backoff, attempt), reason=reason)
