"""The one decoder of an RQ job hash's `data` field: every input gives `Decoded` or `Refused`, nothing raises.

Accepted, as plain UTF-8 JSON or zlib-compressed JSON (RQ's `Job.save` compresses `data`):

    [name, null, [{...}], {}]      jobctl's layout, and RQ's JSONSerializer for `enqueue(name, {...})`
    [name, null, [], {k: v, ...}]  RQ's JSONSerializer for `enqueue(name, k=v, ...)`: the kwargs are the payload

Refused, with a one-sentence reason for the dead-letter store: pickle (recognised by its header and never
unpickled, so nothing named in the data is imported), any other shape, invalid UTF-8 and lone surrogates,
NaN/Infinity, and data past the bounds below.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from typing import Any, Literal

MAX_RAW_BYTES = 16 * 2**20
MAX_JSON_BYTES = 64 * 2**20
MAX_DEPTH = 64  # levels of payload nesting; pydantic's JSON parser stops near 200, its serialiser at 255
MAX_NAME_CHARS = 200
_NOT = "not a jobctl job: "


@dataclass(frozen=True)
class Decoded:
    """A jobctl job: its name, its payload and how `data` was stored."""

    name: str
    payload: dict[str, Any]
    layout: Literal["json", "zlib-json"]


@dataclass(frozen=True)
class Refused:
    """Data that is not a jobctl job; `reason` is one sentence an operator reads, `name` the job name
    when the data named one."""

    reason: str
    name: str = ""


class _Refusal(Exception):
    """Carries a refusal reason (and the job name, once known) out of the helpers to `decode`."""

    def __init__(self, reason: str, name: str = "") -> None:
        super().__init__(reason)
        self.name = name


def decode(raw: bytes | str | None) -> Decoded | Refused:
    """Decode a job's `data` field; total: returns Decoded or Refused for every input and never raises."""
    try:
        data, layout = _unwrap(raw)
        name, payload = _call(_parse(data))
        try:
            _check_payload(payload)
        except _Refusal as refusal:
            raise _Refusal(str(refusal), name) from None
    except _Refusal as refusal:
        return Refused(str(refusal), refusal.name)
    return Decoded(name, payload, layout)


def encode(name: str, payload: dict[str, Any]) -> str:
    """jobctl's `data` text, exactly as `jobs.encode_data`; ValueError for a job that `decode` would refuse."""
    from jobctl.jobs import encode_data

    text = encode_data(name, payload)
    if isinstance(result := decode(text), Refused):
        raise ValueError(result.reason)
    return text


def _unwrap(raw: object) -> tuple[bytes, Literal["json", "zlib-json"]]:
    if raw is None:
        raise _Refusal("job hash has no data")
    if not isinstance(raw, bytes | bytearray | str):
        raise _Refusal(_NOT + "data is neither bytes nor text")
    if len(raw) > MAX_RAW_BYTES:  # a str's length in chars never exceeds its length in UTF-8 bytes
        raise _Refusal(_NOT + "data is larger than 16 MiB")
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError:
            raise _Refusal(_NOT + "data is not UTF-8") from None
    if not raw:
        raise _Refusal("job hash has empty data")
    if len(raw) > MAX_RAW_BYTES:
        raise _Refusal(_NOT + "data is larger than 16 MiB")
    # JSON text never starts with "x" (0x78), so a zlib header is unambiguous.
    zipped = raw[0] == 0x78 and len(raw) > 1 and (raw[0] << 8 | raw[1]) % 31 == 0
    data = _inflate(raw) if zipped else bytes(raw)
    if len(data) > 1 and data[0] == 0x80 and 2 <= data[1] <= 5:
        raise _Refusal(_NOT + "pickled data refused")
    return data, "zlib-json" if zipped else "json"


def _inflate(raw: bytes | bytearray) -> bytes:
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(raw, MAX_JSON_BYTES + 1)
    except zlib.error:
        raise _Refusal(_NOT + "compressed data is corrupt") from None
    if len(data) > MAX_JSON_BYTES:
        raise _Refusal(_NOT + "data decompresses past 64 MiB")
    if not inflater.eof:
        raise _Refusal(_NOT + "compressed data is truncated")
    if inflater.unused_data:  # zlib.decompress (and so RQ) would silently drop these
        raise _Refusal(_NOT + "compressed data has trailing bytes")
    return data


def _finite(text: str) -> float:
    if not math.isfinite(value := float(text)):  # NaN, Infinity, and 1e999 (which parses to inf)
        raise ValueError(text)
    return value


def _parse(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refusal(_NOT + "data is not UTF-8") from None
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_finite)
    except json.JSONDecodeError:
        raise _Refusal(_NOT + "data is not JSON") from None
    except RecursionError:
        raise _Refusal(_NOT + "data is nested too deeply") from None
    except ValueError:  # from _finite, or int's 4300-digit limit
        raise _Refusal(_NOT + "data has NaN, Infinity or an oversized number") from None


def _call(doc: Any) -> tuple[str, dict[str, Any]]:
    if not (isinstance(doc, list) and len(doc) == 4):
        raise _Refusal(_NOT + "data is not a [name, instance, args, kwargs] list")
    name, instance, args, kwargs = doc
    if not isinstance(name, str) or not name:
        raise _Refusal(_NOT + "data has no job name")
    if len(name) > MAX_NAME_CHARS:
        raise _Refusal(_NOT + f"job name is longer than {MAX_NAME_CHARS} characters")
    if not name.isprintable():  # also catches lone surrogates
        raise _Refusal(_NOT + "job name has unprintable characters")
    try:
        return name, _payload(instance, args, kwargs)
    except _Refusal as refusal:
        raise _Refusal(str(refusal), name) from None


def _payload(instance: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    if instance is not None:
        raise _Refusal(_NOT + "data calls a method on an instance")
    if not (isinstance(args, list) and isinstance(kwargs, dict)):
        raise _Refusal(_NOT + "args are not a list or kwargs are not an object")
    if not args:
        return kwargs
    if len(args) > 1:
        raise _Refusal(_NOT + "data has more than one positional argument")
    if kwargs:
        raise _Refusal(_NOT + "data has both a positional payload and keyword arguments")
    if not isinstance(args[0], dict):
        raise _Refusal(_NOT + "payload is not a JSON object")
    return args[0]


def _check_payload(payload: dict[str, Any]) -> None:
    # Iterative, so depth costs no stack; lone surrogates would make every later UTF-8 write raise.
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _Refusal(_NOT + "data has a lone surrogate") from None
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise _Refusal(_NOT + f"payload is nested deeper than {MAX_DEPTH} levels")
            items = [*value, *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
