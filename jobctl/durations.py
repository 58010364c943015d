"""Parsing of durations (`30s`, `5m`, `2h`, `7d`) and ISO-8601 instants given on the command line."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from jobctl.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


MAX_DELAY_S = 365 * 86400.0  # the longest --delay / --at ahead an enqueue accepts (a year)
MAX_AGE_S = 36500 * 86400.0  # the longest age a dead-letter filter takes (--since, --older-than: 100 years)


def parse_duration(text: str, what: str = "duration", max_s: float | None = None) -> float:
    """Seconds in `30s`, `5m`, `2h`, `7d` (a bare number is seconds); at most `max_s` when given."""
    if not text or not text.strip():
        raise UsageError(f"{what} must not be empty: use a number with s, m, h or d (e.g. 30s, 5m, 2h)")
    m = _DURATION.match(text)
    if not m:
        raise UsageError(f"invalid {what} {text!r}: use a number with s, m, h or d (e.g. 30s, 5m, 2h)")
    seconds = float(m.group(1)) * _FACTORS[m.group(2)]
    limit = math.inf if max_s is None else max_s
    if not seconds <= limit:  # also inf (400 nines) and nan
        most = f"at most {describe_s(limit)}" if max_s is not None else "a finite number"
        raise UsageError(f"invalid {what} {text[:40]!r}: must be {most}")
    return seconds


def describe_s(seconds: float) -> str:
    """`365d`, `2h`, `90s`: the largest whole unit."""
    for unit, factor in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= factor and seconds % factor == 0:
            return f"{seconds / factor:g}{unit}"
    return f"{seconds:g}s"


def parse_instant(text: str, what: str = "time") -> datetime:
    """An ISO-8601 instant; a naive one is taken as UTC."""
    if not text or not text.strip():
        raise UsageError(f"{what} must not be empty: use ISO-8601, e.g. 2026-01-31T02:00:00Z")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid {what} {text!r}: use ISO-8601, e.g. 2026-01-31T02:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
