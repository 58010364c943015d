"""Queue policies: every queue's behaviour on one screen (docs/queues.md).

A queue is served through one RQ queue per priority level: the level of the queue's built-in
priority keeps the queue's name (`email`), other levels get a suffix (`email.p3`). Level names never
depend on configuration (a `priority` override changes the default of new jobs, not where existing
jobs live), so producers and workers with different configs, or a changed config, lose nothing. Lower
numbers are taken first; FIFO within a level.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from jobctl.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from jobctl.jobtypes import JobType
    from jobctl.processors import Processor

BackoffKind = Literal["exponential", "fixed", "none"]
PRIORITIES = range(1, 11)


@dataclass(frozen=True)
class Backoff:
    """How long to wait before retry n."""

    kind: BackoffKind = "none"
    delay_s: float = 0.0
    max_s: float | None = None
    jitter: bool = False


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` starts in any sliding window of `per_s` seconds."""

    limit: int
    per_s: float = 1.0
    scope: Literal["queue", "job"] = "queue"

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(self.per_s, f"{self.per_s:g}s")
        suffix = " per job name" if self.scope == "job" else ""
        return f"{self.limit}/{unit}{suffix}"


@dataclass(frozen=True)
class QueuePolicy:
    """One queue's defaults."""

    name: str
    jobs: tuple[str, ...]  # derived from the job types on this queue (jobctl.jobtypes)
    attempts: int = 1
    backoff: Backoff = field(default_factory=Backoff)
    priority: int = 5
    concurrency: int = 1  # most of its jobs one pool runs at once, whatever else the pool serves
    global_concurrency: int = 0  # most of its jobs running at once on every host (0: no cap)
    timeout_s: int = 180
    rate_limit: RateLimit | None = None
    keep_completed_s: int = 3600
    keep_completed_count: int = 1000
    backlog_alert: int = 1000  # health/stats flag a queue with more jobs waiting
    failed_alert: int = 100  # … or more permanent failures in the last hour
    home_priority: int = 0  # the level named after the queue: the built-in priority, never configured

    def __post_init__(self) -> None:
        if not self.home_priority:
            object.__setattr__(self, "home_priority", self.priority)

    def level(self, priority: int | None = None) -> str:
        """RQ queue name of one priority level."""
        p = self.priority if priority is None else priority
        return self.name if p == self.home_priority else f"{self.name}.p{p}"

    def levels(self) -> list[tuple[int, str]]:
        """All (priority, level name) pairs, highest priority first."""
        return [(p, self.level(p)) for p in PRIORITIES]


# The built-in queues. Their job names come from the job-type records (`jobctl.processors.BUILTINS`).
DEFAULT_POLICIES: tuple[QueuePolicy, ...] = (
    QueuePolicy("email", (), attempts=5, backoff=Backoff("exponential", 3),
                priority=1, concurrency=10, timeout_s=30, rate_limit=RateLimit(100, 1.0, "job")),
    QueuePolicy("push", (), attempts=3, backoff=Backoff("exponential", 2),
                priority=2, concurrency=20, timeout_s=10, rate_limit=RateLimit(30, 1.0, "queue")),
    QueuePolicy("image-processing", (), attempts=2, backoff=Backoff("fixed", 5),
                priority=5, concurrency=5, timeout_s=60),
    QueuePolicy("webhook-retry", (), attempts=10,
                backoff=Backoff("exponential", 5, max_s=3600), priority=3, concurrency=3, timeout_s=30),
    QueuePolicy("data-cleanup", (), attempts=1, priority=10, concurrency=1, timeout_s=300),
)

_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str, scope: Literal["queue", "job"] = "queue") -> RateLimit:
    """Parse `N/s`, `N/m` or `N/h`."""
    m = _RATE.match(text)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"rate limit {text!r} is not N/s, N/m or N/h with N >= 1")
    return RateLimit(int(m.group(1)), _UNITS[m.group(2)], scope)


class Registry:
    """The queues and job types of one configuration, queues in priority order, with job-name lookup.

    Each policy's `jobs` is derived from the job types (the built-ins unless `types` is given); a type
    whose queue is not among the policies is refused."""

    def __init__(self, policies: Iterable[QueuePolicy], types: Iterable[JobType] | None = None) -> None:
        if types is None:
            from jobctl.jobtypes import builtin_types

            types = builtin_types()
        self.types: dict[str, JobType] = {t.name: t for t in types}
        on: dict[str, list[str]] = {}
        for t in self.types.values():
            on.setdefault(t.queue, []).append(t.name)
        given = list(policies)
        stray = sorted(set(on) - {p.name for p in given})
        if stray:
            t = self.types[on[stray[0]][0]]
            raise ConfigError(f"{t.source}: [jobs.{t.name}]: unknown queue {t.queue!r}")
        self.policies = tuple(sorted((replace(p, jobs=tuple(on.get(p.name, ()))) for p in given),
                                     key=lambda p: p.priority))
        self._by_name = {p.name: p for p in self.policies}
        self._by_job = {j: p for p in self.policies for j in p.jobs}

    def names(self) -> list[str]:
        """Queue names, highest priority first."""
        return [p.name for p in self.policies]

    def get(self, name: str) -> QueuePolicy:
        """A queue by name, or a usage error listing the known ones."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UsageError(f"unknown queue {name!r}; known queues: {', '.join(self.names())}") from None

    def for_job(self, job_name: str) -> QueuePolicy:
        """The queue that runs a job name."""
        try:
            return self._by_job[job_name]
        except KeyError:
            known = ", ".join(sorted(self._by_job))
            raise UsageError(f"unknown job {job_name!r}; known jobs: {known}") from None

    def check_job(self, queue: str, job_name: str) -> QueuePolicy:
        """The policy a new job of `job_name` gets on `queue` (its type's defaults applied), after
        checking the job name belongs to the queue."""
        policy = self.get(queue)
        if job_name not in policy.jobs:
            raise UsageError(
                f"unknown job {job_name!r} for queue {queue!r}; known jobs: {', '.join(policy.jobs)}"
            )
        defaults = self.types[job_name].defaults
        return replace(policy, **defaults) if defaults else policy  # type: ignore[arg-type]

    def job_type(self, job_name: str) -> JobType:
        """A job type by name, or a usage error listing the known ones."""
        self.for_job(job_name)
        return self.types[job_name]

    def model(self, job_name: str) -> type[BaseModel]:
        """The payload model of a job (imported on first use)."""
        return self.job_type(job_name).payload_model()

    def validate(self, job_name: str, payload: object) -> dict[str, Any]:
        """The payload checked and normalised by its job's model, or a UsageError naming the field.
        A declared (not built-in) job's processor is imported too: a job that could never run is
        refused at enqueue, not dead-lettered by every run."""
        from jobctl import payloads

        t = self.job_type(job_name)
        if t.source != "jobctl":
            t.function()
        return payloads.validate(job_name, payload, t.payload_model())

    def processors(self, queues: Iterable[str] | None = None) -> dict[str, Processor]:
        """Job name -> processor for some queues (all by default): the only code a worker runs.
        Imports each one now, so a declaration that cannot be imported fails before any job starts."""
        wanted = None if queues is None else set(queues)
        out = {}
        for p in self.policies:
            if wanted is None or p.name in wanted:
                for j in p.jobs:
                    t = self.types[j]
                    t.payload_model()
                    out[j] = t.function()
        return out

    def level_owner(self, level: str) -> tuple[QueuePolicy, int]:
        """The queue and priority of an RQ level name."""
        name, _, suffix = level.rpartition(".p")
        if name and suffix.isdigit() and name in self._by_name:
            return self._by_name[name], int(suffix)
        policy = self.get(level)
        return policy, policy.home_priority


_FIELDS = {"attempts", "backoff", "backoff_delay_s", "backoff_max_s", "backoff_jitter", "priority",
           "concurrency", "global_concurrency", "timeout_s", "rate_limit", "keep_completed_s", "keep_completed_count",
           "backlog_alert", "failed_alert"}


def _int(source: str, key: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{source}: {key} must be an integer from {low} to {high}, got {value!r}")
    return value


def _num(source: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{source}: {key} must be a number >= 0, got {value!r}")
    return float(value)


def override(policy: QueuePolicy, fields: dict[str, object], source: str) -> QueuePolicy:
    """Apply a `[queues.NAME]` table from a config file, validating every field."""
    where = f"{source}: [queues.{policy.name}]"
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; known: {', '.join(sorted(_FIELDS))}")
    b = policy.backoff
    kind = fields.get("backoff", b.kind)
    if kind not in ("exponential", "fixed", "none"):
        raise ConfigError(f"{where}: backoff must be \"exponential\", \"fixed\" or \"none\", got {kind!r}")
    jitter = fields.get("backoff_jitter", b.jitter)
    if not isinstance(jitter, bool):
        raise ConfigError(f"{where}: backoff_jitter must be true or false, got {jitter!r}")
    max_s = fields.get("backoff_max_s", b.max_s)
    backoff = Backoff(
        kind,  # type: ignore[arg-type]
        _num(where, "backoff_delay_s", fields.get("backoff_delay_s", b.delay_s)),
        None if max_s is None else _num(where, "backoff_max_s", max_s),
        jitter,
    )
    rate = policy.rate_limit
    if "rate_limit" in fields:
        raw = fields["rate_limit"]
        try:
            rate = None if raw in ("", "none") else parse_rate(str(raw), rate.scope if rate else "queue")
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return replace(
        policy,
        attempts=_int(where, "attempts", fields.get("attempts", policy.attempts), 1, 1000),
        backoff=backoff,
        priority=_int(where, "priority", fields.get("priority", policy.priority), 1, 10),
        concurrency=_int(where, "concurrency", fields.get("concurrency", policy.concurrency), 1, 1000),
        global_concurrency=_int(where, "global_concurrency",
                                fields.get("global_concurrency", policy.global_concurrency), 0, 100000),
        timeout_s=_int(where, "timeout_s", fields.get("timeout_s", policy.timeout_s), 1, 86400),
        rate_limit=rate,
        keep_completed_s=_int(where, "keep_completed_s",
                              fields.get("keep_completed_s", policy.keep_completed_s), 0, 10**8),
        keep_completed_count=_int(where, "keep_completed_count",
                                  fields.get("keep_completed_count", policy.keep_completed_count), 0, 10**7),
        backlog_alert=_int(where, "backlog_alert", fields.get("backlog_alert", policy.backlog_alert), 0, 10**9),
        failed_alert=_int(where, "failed_alert", fields.get("failed_alert", policy.failed_alert), 0, 10**9),
    )
