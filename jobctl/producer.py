"""Validated, JSON-only enqueue: one job, or many in pipelined batches (docs/commands/enqueue.md)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis

from jobctl import jsontree, keys
from jobctl.durations import MAX_DELAY_S, describe_s, iso
from jobctl.errors import OperationFailed, ServiceUnavailable, UsageError
from jobctl.jobs import encode_data, job_fields, new_id
from jobctl.queues import QueuePolicy
from jobctl.runtime import Runtime, out_of_memory
from jobctl.scripts import Enqueue

if TYPE_CHECKING:
    from pydantic import BaseModel

BATCH = 500


@dataclass(frozen=True)
class Enqueued:
    """The outcome of one enqueue (`status`: queued, scheduled or duplicate)."""

    id: str
    queue: str
    job: str
    status: str

    def to_json(self) -> dict[str, str]:
        """Plain dict for `--json`."""
        return asdict(self)


@dataclass(frozen=True)
class When:
    """When a job becomes runnable: now, after `delay_s`, or at `at`."""

    delay_s: float | None = None
    at: datetime | None = None

    def args(self) -> tuple[str, str, str]:
        """(mode, seconds, absolute) for the ENQUEUE script."""
        if self.at is not None:
            return "schedule", repr(self.at.timestamp()), "1"
        if self.delay_s:
            return "schedule", repr(float(self.delay_s)), "0"
        return "queue", "0", "0"

    def check(self) -> None:
        """UsageError unless the job can ever run: a finite delay of 0 to `MAX_DELAY_S` (a year), or a
        timezone-aware instant at most that far ahead."""
        limit = describe_s(MAX_DELAY_S)
        if self.delay_s is not None and self.at is not None:
            raise UsageError("give either a delay or an instant, not both")
        d = self.delay_s
        if d is not None and (isinstance(d, bool) or not isinstance(d, int | float) or not 0 <= d <= MAX_DELAY_S):
            raise UsageError(f"delay must be a number of seconds from 0 to {MAX_DELAY_S:.0f} ({limit}), got {d!r}")
        if self.at is not None:
            if not isinstance(self.at, datetime) or self.at.tzinfo is None:
                raise UsageError(f"the instant must be a timezone-aware datetime, got {self.at!r}")
            if self.at.timestamp() > time.time() + MAX_DELAY_S:
                raise UsageError(f"the instant {iso(self.at)} is more than {limit} ahead")


def _check_priority(priority: int | None, policy: QueuePolicy) -> int:
    if priority is None:
        return policy.priority
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 10:
        raise UsageError(f"priority must be an integer from 1 (highest) to 10, got {priority!r}")
    return priority


def _check_job_id(job_id: str) -> str:
    bad = any(c in job_id for c in " \t\r\n:*?[]") or not job_id.isprintable()
    if not job_id or len(job_id) > 200 or bad:
        raise UsageError(f"invalid job id {job_id!r}: 1-200 printable characters, no spaces, ':' or globs")
    return job_id


def as_text(v: Any) -> str:
    """A script's reply as str."""
    return v.decode() if isinstance(v, bytes) else str(v)


def _call(rt: Runtime, policy: QueuePolicy, job: str, payload: dict[str, Any], priority: int,
          when: When, job_id: str, now: datetime, fresh_id: bool) -> Any:
    level = policy.level(priority)
    mode, seconds, absolute = when.args()
    target = keys.scheduled(level) if mode == "schedule" else keys.queue_list(level)
    fields = job_fields(policy, job, payload, priority, now)
    if big := jsontree.too_big(str(fields["data"])):
        raise UsageError(f"invalid payload for {job}: {big}")
    flat: list[Any] = []
    for k, v in fields.items():
        flat += [k, v]
    call = Enqueue(job=keys.job(job_id), target=target, marker=keys.marker(policy.name), job_id=job_id, mode=mode,
                   seconds=seconds, absolute=absolute, queue_key=keys.queue_list(level), fields=flat)
    try:
        return rt.scripts.run_direct(rt.redis, call)
    except redis.OutOfMemoryError:
        raise out_of_memory(rt.redis) from None
    except (redis.ConnectionError, redis.TimeoutError):  # a stale pooled connection: once more, redis-py's way
        status = as_text(rt.scripts.run(call))
        # a generated id cannot exist unless the lost attempt wrote it: then that attempt's answer holds
        return ("scheduled" if mode == "schedule" else "queued") if fresh_id and status == "duplicate" else status


def enqueue(rt: Runtime, queue: str, job: str, payload: object, *, priority: int | None = None,
            when: When = When(), job_id: str | None = None) -> Enqueued:
    """Validate and enqueue one job; a second enqueue of a live `job_id` is a `duplicate` no-op."""
    policy = rt.settings.queues.check_job(queue, job)
    jsontree.check(payload, f"invalid payload for {job}")
    clean = rt.settings.queues.validate(job, payload)
    prio = _check_priority(priority, policy)
    when.check()
    jid = _check_job_id(job_id) if job_id is not None else new_id()
    status = _call(rt, policy, job, clean, prio, when, jid, datetime.now(UTC), fresh_id=job_id is None)
    return Enqueued(jid, queue, job, as_text(status))


def validate_many(job: str, items: Sequence[object], model: type[BaseModel] | None = None) -> list[str]:
    """Validate every item (by `model`, default the built-in job's) and encode it as RQ's `data` field; a
    UsageError names every invalid line (1-based) and nothing is written."""
    from jobctl import payloads  # pydantic: only once something is validated (not for `--help` or completion)

    clean: list[str] = []
    bad: list[str] = []
    for n, item in enumerate(items, 1):
        try:
            jsontree.check(item, f"invalid payload for {job}")
            data = encode_data(job, payloads.validate(job, item, model))
            if big := jsontree.too_big(data):
                raise UsageError(big)
            clean.append(data)
        except UsageError as exc:
            bad.append(f"line {n}: {str(exc).removeprefix(f'invalid payload for {job}: ')}")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise UsageError(f"{len(bad)} invalid line(s), nothing enqueued: {'; '.join(bad[:5])}{more}")
    return clean


def enqueue_many(rt: Runtime, queue: str, job: str, items: Sequence[object], *,
                 priority: int | None = None, when: When = When(),
                 progress: Callable[[int], None] | None = None) -> list[Enqueued]:
    """Validate all items first, then write them in batches, each batch one MULTI/EXEC transaction.

    Fresh UUIDs cannot collide, so bulk writes skip the duplicate check of `enqueue` and push a
    whole batch of ids with one RPUSH (or ZADD when delayed)."""
    policy = rt.settings.queues.check_job(queue, job)
    clean = validate_many(job, items, rt.settings.queues.model(job))
    prio = _check_priority(priority, policy)
    when.check()
    level = policy.level(prio)
    mode, seconds, absolute = when.args()
    template = job_fields(policy, job, {}, prio, datetime.now(UTC))
    if mode == "schedule":
        template["status"] = "scheduled"
        due = float(seconds) + (0.0 if absolute == "1" else _server_time(rt))
    fields = _resp_fields(template)
    out: list[Enqueued] = []
    for start in range(0, len(clean), BATCH):
        chunk = clean[start:start + BATCH]
        ids = [new_id() for _ in chunk]
        cmds = [resp(b"MULTI")]
        cmds += [resp(b"HSET", keys.job(jid).encode(), raw=fields, tail=(b"data", data.encode()))
                 for jid, data in zip(ids, chunk, strict=True)]
        if mode == "schedule":
            cmds.append(resp(b"ZADD", keys.scheduled(level).encode(), *(x for i in ids for x in (repr(due).encode(),
                                                                                                 i.encode()))))
        else:
            cmds.append(resp(b"RPUSH", keys.queue_list(level).encode(), *(i.encode() for i in ids)))
            cmds.append(resp(b"ZADD", keys.marker(policy.name).encode(), b"0", b"m"))
        cmds.append(resp(b"SADD", keys.queues_set().encode(), keys.queue_list(level).encode()))
        cmds.append(resp(b"EXEC"))
        try:
            _send(rt, cmds)
        except redis.RedisError as exc:
            done = f"{len(out)} of {len(clean)} job(s) were enqueued before that batch"
            if isinstance(exc, redis.OutOfMemoryError):
                raise ServiceUnavailable(f"{out_of_memory(rt.redis)}; {done}") from None
            if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                raise ServiceUnavailable(f"Redis became unreachable; {done}") from None
            raise OperationFailed(f"Redis refused a batch ({exc}); {done}") from None
        status = "scheduled" if mode == "schedule" else "queued"
        out += [Enqueued(i, queue, job, status) for i in ids]
        if progress:
            progress(len(chunk))
    return out


def _resp_fields(fields: dict[str, str | int]) -> tuple[int, bytes]:
    """Field/value pairs pre-encoded once for every HSET of a batch."""
    parts = [str(x).encode() for kv in fields.items() if kv[0] != "data" for x in kv]
    return len(parts), b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def resp(*args: bytes, raw: tuple[int, bytes] = (0, b""), tail: tuple[bytes, ...] = ()) -> bytes:
    """One command in the Redis protocol (RESP2), with optional pre-encoded arguments in the middle.

    Bulk enqueue builds its commands here because redis-py's generic packer costs ~80% of the
    time of writing a 15-field hash; the bytes sent are exactly what redis-py would send."""
    parts = (*args, *tail)
    body = b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in args) + raw[1] + b"".join(
        b"$%d\r\n%s\r\n" % (len(p), p) for p in tail)
    return b"*%d\r\n" % (len(parts) + raw[0]) + body


def _send(rt: Runtime, cmds: list[bytes]) -> None:
    """Send one MULTI … EXEC batch and check every reply. A command Redis refuses while queueing
    aborts the transaction; one failing inside EXEC (none should: fresh keys) is reported."""
    pool = rt.redis.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([b"".join(cmds)])
        replies = [conn.read_response() for _ in cmds]
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    for reply in [*replies, *(replies[-1] if isinstance(replies[-1], list) else [])]:
        if isinstance(reply, Exception):
            raise reply
    if not isinstance(replies[-1], list):
        raise redis.ResponseError(f"bulk enqueue transaction aborted: {replies[-1]!r}")


def _server_time(rt: Runtime) -> float:
    secs, micros = rt.redis.time()
    return secs + micros / 1e6
