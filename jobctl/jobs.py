"""Job records on RQ's data model: the hash jobctl writes, and the view `jobs show` reads."""

from __future__ import annotations

import contextlib
import json
import uuid
import zlib
from dataclasses import asdict, dataclass
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
    """What `jobs show` prints (the `--json` fields of docs/commands/jobs.md)."""

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

    def to_json(self) -> dict[str, Any]:
        """Plain dict for `--json`."""
        return asdict(self)


def _iso(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, RQ_TIME).replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    except ValueError:
        return value


def _count(value: str | None) -> int | None:
    """A count from a job hash; None when absent or garbage (the hash may not be jobctl's)."""
    try:
        return int(value) if value else None
    except ValueError:
        return None


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
    progress = h.get("jc_progress")
    return JobView(
        id=job_id,
        queue=h.get("jc_queue") or h.get("origin", ""),
        job=h.get("jc_job") or name,
        status=h.get("status", "unknown"),
        priority=_count(h.get("jc_priority")),
        attempts=_count(h.get("jc_attempt")) or 0,
        max_attempts=_count(h.get("jc_max")) or 1,
        progress=_count(progress),
        data=payload,
        enqueued_at=_iso(h.get("enqueued_at")),
        started_at=_iso(h.get("started_at")),
        ended_at=_iso(h.get("ended_at")),
        result=result,
        error=h.get("jc_error") or exc_text(raw.get(b"exc_info", h.get("exc_info"))) or None,
    )
