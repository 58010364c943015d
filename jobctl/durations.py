"""Parsing of durations (`30s`, `5m`, `2h`, `7d`) and ISO-8601 instants given on the command line."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from jobctl.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in `30s`, `5m`, `2h`, `7d` (a bare number is seconds)."""
    m = _DURATION.match(text or "")
    if not m:
        raise UsageError(f"invalid {what} {text!r}: use a number with s, m, h or d (e.g. 30s, 5m, 2h)")
    return float(m.group(1)) * _FACTORS[m.group(2)]


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant; a naive one is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid time {text!r}: use ISO-8601, e.g. 2026-01-31T02:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
