"""Validated, JSON-only enqueue: one job, or many in pipelined batches (SPEC §6 `enqueue`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from jobctl import keys, payloads
from jobctl.errors import UsageError
from jobctl.jobs import job_fields, new_id
from jobctl.queues import QueuePolicy
from jobctl.runtime import Runtime

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


def _call(rt: Runtime, policy: QueuePolicy, job: str, payload: dict[str, Any], priority: int,
          when: When, job_id: str, now: datetime, client: Any = None) -> Any:
    level = policy.level(priority)
    mode, seconds, absolute = when.args()
    target = keys.scheduled(level) if mode == "schedule" else keys.queue_list(level)
    flat: list[Any] = []
    for k, v in job_fields(policy, job, payload, priority, now).items():
        flat += [k, v]
    return rt.scripts.enqueue(
        keys=[keys.job(job_id), target, keys.queues_set(), keys.marker(policy.name)],
        args=[job_id, mode, seconds, absolute, keys.queue_list(level), *flat],
        client=client,
    )


def enqueue(rt: Runtime, queue: str, job: str, payload: object, *, priority: int | None = None,
            when: When = When(), job_id: str | None = None) -> Enqueued:
    """Validate and enqueue one job; a second enqueue of a live `job_id` is a `duplicate` no-op."""
    policy = rt.settings.queues.check_job(queue, job)
    clean = payloads.validate(job, payload)
    prio = _check_priority(priority, policy)
    jid = _check_job_id(job_id) if job_id is not None else new_id()
    status = _call(rt, policy, job, clean, prio, when, jid, datetime.now(UTC))
    return Enqueued(jid, queue, job, status.decode() if isinstance(status, bytes) else str(status))


def validate_many(job: str, items: Sequence[object]) -> list[dict[str, Any]]:
    """Validate every item; a UsageError names every invalid line (1-based) and nothing is written."""
    clean: list[dict[str, Any]] = []
    bad: list[str] = []
    for n, item in enumerate(items, 1):
        try:
            clean.append(payloads.validate(job, item))
        except UsageError as exc:
            bad.append(f"line {n}: {str(exc).removeprefix(f'invalid payload for {job}: ')}")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise UsageError(f"{len(bad)} invalid line(s), nothing enqueued: {'; '.join(bad[:5])}{more}")
    return clean


def enqueue_many(rt: Runtime, queue: str, job: str, items: Sequence[object], *,
                 priority: int | None = None, when: When = When(),
                 progress: Callable[[int], None] | None = None) -> list[Enqueued]:
    """Validate all items first, then enqueue them in pipelined batches."""
    policy = rt.settings.queues.check_job(queue, job)
    clean = validate_many(job, items)
    prio = _check_priority(priority, policy)
    now = datetime.now(UTC)
    out: list[Enqueued] = []
    for start in range(0, len(clean), BATCH):
        chunk = clean[start:start + BATCH]
        ids = [new_id() for _ in chunk]
        with rt.redis.pipeline(transaction=False) as pipe:
            for jid, payload in zip(ids, chunk, strict=True):
                _call(rt, policy, job, payload, prio, when, jid, now, client=pipe)
            statuses = pipe.execute()
        out += [Enqueued(i, queue, job, s.decode()) for i, s in zip(ids, statuses, strict=True)]
        if progress:
            progress(len(chunk))
    return out
