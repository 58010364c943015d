"""Job records on RQ's data model: the hash jobctl writes, and the view `jobs show` reads."""

from __future__ import annotations

import contextlib
import json
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobctl.queues import QueuePolicy

RQ_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
FAILURE_TTL_S = 10 * 365 * 86400  # permanent failures stay until the dead-letter store takes them


def rq_time(moment: datetime | None = None) -> str:
    """A timestamp in RQ's own format (UTC)."""
    return (moment or datetime.now(UTC)).strftime(RQ_TIME)


def new_id() -> str:
    """A fresh job id (RQ's format: a UUID4 string)."""
    return str(uuid.uuid4())


def job_fields(policy: QueuePolicy, job_name: str, payload: dict[str, Any], priority: int,
               now: datetime) -> dict[str, str | int]:
    """The hash of a new job: RQ's fields (JSON data, uncompressed) plus jobctl's `jc_*` fields."""
    stamp = rq_time(now)
    return {
        "created_at": stamp,
        "enqueued_at": stamp,
        "data": encode_data(job_name, payload),
        "origin": policy.level(priority),
        "description": job_name,
        "status": "queued",
        "timeout": policy.timeout_s,
        "result_ttl": policy.keep_completed_s,
        "failure_ttl": FAILURE_TTL_S,
        "jc_queue": policy.name,
        "jc_job": job_name,
        "jc_priority": priority,
        "jc_attempt": 0,
        "jc_max": policy.attempts,
    }


def encode_data(job_name: str, payload: dict[str, Any]) -> str:
    """RQ's `data` field as JSON: (func_name, instance, args, kwargs); the func name is the job name."""
    return json.dumps([job_name, None, [payload], {}], separators=(",", ":"))


def exc_text(raw: bytes | str | None, limit: int = 8000) -> str:
    """RQ's `exc_info` field as text: RQ writes it zlib-compressed, jobctl plain; '' when empty."""
    if not raw:
        return ""
    data = raw.encode("latin-1", errors="replace") if isinstance(raw, str) else raw
    if data[:1] == b"\x78":
        with contextlib.suppress(zlib.error):
            data = zlib.decompressobj().decompress(data, limit)
    return data.decode(errors="replace")[:limit]


def decode_data(raw: bytes | str | None) -> tuple[str, dict[str, Any]]:
    """(job name, payload) from RQ's `data` field in any layout `jobdata` reads; ("?", {}) otherwise."""
    from jobctl import jobdata

    decoded = jobdata.decode(raw)
    if isinstance(decoded, jobdata.Decoded):
        return decoded.name, decoded.payload
    return decoded.name or "?", {}


@dataclass(frozen=True)
class JobView:
    """What `jobs show` prints (the `--json` fields of docs/commands/jobs.md). A stored value that is not of
    its field's type (a time that is not a time, a progress outside 0-100) leaves the field null and is kept
    as stored in `unparsed`, by field name: a script can rely on the types, an operator still sees it."""

    id: str
    queue: str
    job: str
    status: str
    priority: int | None
    attempts: int
    max_attempts: int
    progress: int | None
    data: dict[str, Any]
    enqueued_at: str | None
    started_at: str | None
    ended_at: str | None
    result: Any
    error: str | None
    unparsed: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for `--json`."""
        return asdict(self)


def _iso(value: str) -> str | None:
    """An RQ timestamp (or any ISO-8601 one; naive is UTC) as ISO-8601 UTC with a Z; None if it is not one."""
    try:
        moment = datetime.strptime(value, RQ_TIME).replace(tzinfo=UTC)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _count(value: str | None) -> int | None:
    """A count from a job hash; None when absent or garbage (the hash may not be jobctl's)."""
    try:
        return int(value) if value else None
    except ValueError:
        return None


class _Reader:
    """Typed fields from a job hash; what does not read as its type is noted in `unparsed`."""

    def __init__(self, h: dict[str, str]) -> None:
        self.h = h
        self.unparsed: dict[str, str] = {}

    def _note(self, name: str, raw: str | None, value: Any) -> Any:
        if raw and value is None:
            self.unparsed[name] = raw
        return value

    def time(self, name: str) -> str | None:
        raw = self.h.get(name)
        return self._note(name, raw, _iso(raw) if raw else None)

    def count(self, name: str, key: str, low: int = 0, high: int | None = None) -> int | None:
        raw = self.h.get(key)
        n = _count(raw)
        return self._note(name, raw, None if n is None or n < low or (high is not None and n > high) else n)


def view(job_id: str, h: dict[str, str], raw: dict[Any, Any] | None = None) -> JobView:
    """A JobView from a job hash (decoded to str; `raw`, the hash as Redis returned it, for the fields
    RQ may have compressed: `data` and `exc_info`)."""
    raw = raw or {}
    name, payload = decode_data(raw.get(b"data", h.get("data")))
    result: Any = None
    if h.get("result"):
        try:
            result = json.loads(h["result"])
        except ValueError:
            result = h["result"]
    r = _Reader(h)
    return JobView(
        id=job_id,
        queue=h.get("jc_queue") or h.get("origin", ""),
        job=h.get("jc_job") or name,
        status=h.get("status") or "unknown",
        priority=r.count("priority", "jc_priority", 1, 10),
        attempts=r.count("attempts", "jc_attempt") or 0,
        max_attempts=r.count("max_attempts", "jc_max", 1) or 1,
        progress=r.count("progress", "jc_progress", 0, 100),
        data=payload,
        enqueued_at=r.time("enqueued_at"),
        started_at=r.time("started_at"),
        ended_at=r.time("ended_at"),
        result=result,
        error=h.get("jc_error") or exc_text(raw.get(b"exc_info", h.get("exc_info"))) or None,
        unparsed=r.unparsed,
    )
