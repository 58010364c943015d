"""The one check of a payload's JSON tree, before any model sees it (enqueue: CLI and producer API).

A payload that passes is plain JSON that every later step can encode and decode: objects with string
keys, arrays, strings of valid Unicode, finite numbers, booleans and null, nested at most `MAX_DEPTH`
levels. Without it, such payloads crash deep inside a library (Python's `RecursionError`, pydantic's
serialization depth of 255, `UnicodeEncodeError` on a lone surrogate) or are silently changed (`NaN`
becomes `null`). The walk is iterative, so no input can exhaust the stack here.
"""

from __future__ import annotations

import math
from typing import Any

from jobctl.errors import UsageError, printable

MAX_DEPTH = 64  # levels of objects and arrays, the payload itself being level 1
MAX_INT_BITS = 14_000  # about 4,200 digits: Python's json refuses to write more than 4,300
MAX_BYTES = 1 << 20  # of a job's stored JSON: a payload carries references (storage keys, ids), not content


def too_big(data: str) -> str | None:
    """Why a job's encoded JSON is refused for its size, or None."""
    size = len(data)  # bytes too: jobctl's JSON is ASCII (json.dumps escapes the rest)
    if size <= MAX_BYTES:
        return None
    return (f"{size:,} bytes of JSON, more than the {MAX_BYTES >> 20} MiB a payload may hold (keep large content "
            "in storage and pass its key)")


def _surrogate(text: str) -> str | None:
    return next((c for c in text if "\ud800" <= c <= "\udfff"), None)


def _where(path: list[str]) -> str:
    where = printable(".".join(path)) or "(payload)"
    return where if len(where) <= 100 else f"{where[:60]}…{where[-30:]}"


def problem(value: Any, path: list[str], depth: int) -> str | None:
    """What is wrong with one node (not its children), or None."""
    if depth > MAX_DEPTH and isinstance(value, dict | list):
        return f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        bad = _surrogate(value)
        return None if bad is None else f"not valid Unicode (lone surrogate {printable(bad)})"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a JSON number (NaN and Infinity are refused)"
    if isinstance(value, bool) or value is None or isinstance(value, float | list):
        return None
    if isinstance(value, int):
        return None if value.bit_length() <= MAX_INT_BITS else "integer too large"
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                return f"object keys must be strings, got {type(key).__name__} {printable(repr(key))[:40]}"
            if (bad := _surrogate(key)) is not None:
                return f"key '{printable(key)[:80]}' is not valid Unicode (lone surrogate {printable(bad)})"
        return None
    return f"{type(value).__name__} is not a JSON value"


def check(payload: Any, what: str) -> None:
    """Raise UsageError(`{what}: field.path: reason`) for the first node that is not plain JSON."""
    stack: list[tuple[Any, list[str], int]] = [(payload, [], 1)]
    while stack:
        value, path, depth = stack.pop()
        reason = problem(value, path, depth)
        if reason:
            raise UsageError(f"{what}: {_where(path)}: {reason}")
        if isinstance(value, dict):
            stack.extend((v, [*path, k], depth + 1) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, [*path, str(i)], depth + 1) for i, v in reversed(list(enumerate(value))))
