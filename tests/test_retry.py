"""Back-off and retry decisions, table-tested without Redis."""

from __future__ import annotations

import random

import pytest

from jobctl.errors import PermanentFailure, RetryLater
from jobctl.queues import Backoff
from jobctl.retry import backoff_delay_s, decide

EXP3 = Backoff("exponential", 3)
WEBHOOK = Backoff("exponential", 5, max_s=3600)


@pytest.mark.parametrize(("backoff", "n", "expected"), [
    (EXP3, 1, 3), (EXP3, 2, 6), (EXP3, 3, 12), (EXP3, 4, 24),
    (Backoff("exponential", 2), 2, 4),
    (Backoff("fixed", 5), 1, 5), (Backoff("fixed", 5), 7, 5),
    (WEBHOOK, 1, 5), (WEBHOOK, 9, 1280), (WEBHOOK, 10, 2560), (WEBHOOK, 11, 3600), (WEBHOOK, 500, 3600),
    (Backoff("none"), 3, 0), (EXP3, 0, 0),
])
def test_backoff_delay(backoff: Backoff, n: int, expected: float) -> None:
    assert backoff_delay_s(backoff, n) == expected


def test_jitter_stays_within_upper_half_and_cap() -> None:
    b = Backoff("exponential", 4, max_s=10, jitter=True)
    rand = random.Random(7)
    delays = [backoff_delay_s(b, 3, rand) for _ in range(200)]
    assert all(5 <= d <= 10 for d in delays)
    assert len({round(d, 3) for d in delays}) > 50


@pytest.mark.parametrize(("error", "attempt", "max_attempts", "streak", "action", "delay", "consumes"), [
    (ValueError("x"), 1, 5, False, "retry", 3, True),
    (ValueError("x"), 4, 5, False, "retry", 24, True),
    (ValueError("x"), 5, 5, False, "dead-letter", 0, True),
    (ValueError("x"), 1, 1, False, "dead-letter", 0, True),
    (PermanentFailure("bad input"), 1, 5, False, "dead-letter", 0, True),
    (RetryLater(42), 1, 5, False, "retry", 42, True),
    (RetryLater(42), 2, 5, True, "retry", 42, False),
    (RetryLater(7), 5, 5, False, "retry", 7, False),
])
def test_decide(error: Exception, attempt: int, max_attempts: int, streak: bool, action: str,
                delay: float, consumes: bool) -> None:
    d = decide(error, attempt, max_attempts, EXP3, streak)
    assert (d.action, d.delay_s, d.consumes_attempt) == (action, delay, consumes)


def test_dead_letter_reason_names_the_error() -> None:
    d = decide(PermanentFailure("HTTP 404 from endpoint"), 1, 3, EXP3)
    assert d.reason == "permanent failure: HTTP 404 from endpoint"
