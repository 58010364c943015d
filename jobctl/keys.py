"""Every Redis key jobctl owns, built in one place.

RQ's own keys (job hashes, queue lists, registries) are reached through RQ's API or the
helpers below that mirror RQ's documented layout; no other Python module builds a key with an
f-string. The Lua scripts in `jobctl/lua/` build keys too: they append a job id, a level or a queue
name to a prefix passed in from here (`keys.job("")`, `keys.wip("")`, `METRICS_PREFIX`…), and add the
`:{minute}` of a metrics key, the `:{job}` of a per-job rate scope and RQ's `job_id:execution_id`
member themselves; every key they build still has its row in this table (the scan test checks it).

| key | type | what |
| --- | --- | --- |
| `rq:job:{id}` | hash | RQ job hash (JSON data) plus jobctl fields `jc_*` |
| `rq:queue:{level}` | list | RQ queue of one priority level (`email`, `email.p3`) |
| `rq:queues` | set | RQ's set of queue keys |
| `rq:wip:{level}` | zset | RQ started registry: `job_id:execution_id` -> lease deadline + RQ margin (unix s) |
| `rq:scheduled:{level}` | zset | RQ scheduled registry: delayed jobs and retries -> due time |
| `rq:finished:{level}` | zset | RQ finished registry -> expiry; trimmed to the newest N |
| `rq:failed:{level}` | zset | RQ failed registry (permanent failures) -> expiry |
| `rq:canceled:{level}` | zset | RQ canceled registry |
| `rq:results:{id}` | stream | RQ result records (success with the JSON result, final failure with the error) |
| `rq:worker:{name}` | hash | a jobctl pool as RQ sees a worker (`rq info`, rq-dashboard), expires |
| `rq:workers` | set | RQ's set of worker keys |
| `rq:workers:{level}` | set | RQ's worker keys per queue |
| `jobctl:marker:{queue}` | zset | wake-up marker: workers block on it when idle |
| `jobctl:paused` | set | names of paused queues |
| `jobctl:requeued` | list | "dead-letter id|job id" requeued by RQ's tools, until reconcile settles them |
| `jobctl:unrecorded` | list | JSON failures with no job hash the database could not take, until reconciled |
| `jobctl:worker:{name}` | hash | a live worker pool (host, pid, queues, state), expires |
| `jobctl:workers` | zset | worker pool names -> last heartbeat |
| `jobctl:active:{runner}` | hash | a runner's running jobs: id -> "level|started (unix s)|timeout s|execution" |
| `jobctl:step:{runner}` | string | a runner's last step token and what it did (replayed when its reply was lost) |
| `rq:suspended` | string | RQ's suspension flag (`rq suspend`): jobctl's pools take no jobs while it is set |
| `jobctl:metrics:{queue}:{minute}` | hash | per-minute counters (completed, failed, retried, ms, `d{i}`), expire |
| `jobctl:durations:{queue}` | hash | cumulative durations: `{job}|d{i}` counts, `{job}|ms` sums; 30-day expiry |
| `jobctl:rate:{scope}` | zset | sliding-log rate limiter of one scope |
| `jobctl:throttle:{queue}` | string | queue throttled until expiry (HTTP 429 Retry-After) |
| `jobctl:once:{scope}` | string | at-most-once guard (cleanup per day, schedules per run) |
| `jobctl:schedules` | hash | recurring schedules: name -> JSON definition (cron or interval, target) |
| `jobctl:alert:{name}` | string | alert cool-down state |
| `jobctl:scheduler:heartbeat` | string | the delayed-job mover ran recently |

Duration bucket `d{i}` counts completed jobs that took (2^(i-1), 2^i] ms (`d0`: at most 1 ms; the last,
`d{scripts.DURATION_BUCKETS}`, anything longer), written by `step.lua` alongside `completed`. The per-minute
buckets give `stats` its percentiles; `jobctl:durations:{queue}` only ever grows (each write renews its
30-day expiry) and backs the Prometheus histogram.
"""

from __future__ import annotations

RQ = "rq"
NS = "jobctl"


def job(job_id: str) -> str:
    """RQ's job hash."""
    return f"{RQ}:job:{job_id}"


def queue_list(level: str) -> str:
    """RQ's queue list of one level."""
    return f"{RQ}:queue:{level}"


def queues_set() -> str:
    """RQ's set of all queue keys."""
    return f"{RQ}:queues"


def wip(level: str) -> str:
    """RQ's started-job registry."""
    return f"{RQ}:wip:{level}"


def scheduled(level: str) -> str:
    """RQ's scheduled-job registry."""
    return f"{RQ}:scheduled:{level}"


def finished(level: str) -> str:
    """RQ's finished-job registry."""
    return f"{RQ}:finished:{level}"


def failed(level: str) -> str:
    """RQ's failed-job registry."""
    return f"{RQ}:failed:{level}"


def canceled(level: str) -> str:
    """RQ's canceled-job registry."""
    return f"{RQ}:canceled:{level}"


def rq_results(job_id: str) -> str:
    """RQ's result stream of one job (read by `job.latest_result()` and rq-dashboard)."""
    return f"{RQ}:results:{job_id}"


def rq_worker(name: str) -> str:
    """RQ's worker hash (a jobctl pool registers as one so RQ's tools see it)."""
    return f"{RQ}:worker:{name}"


def rq_workers() -> str:
    """RQ's set of worker keys."""
    return f"{RQ}:workers"


def rq_workers_of(level: str) -> str:
    """RQ's set of worker keys serving one queue."""
    return f"{RQ}:workers:{level}"


def step(runner: str) -> str:
    """A runner process's last step record."""
    return f"{NS}:step:{runner}"


def rq_suspended() -> str:
    """RQ's worker suspension flag."""
    return f"{RQ}:suspended"


def marker(queue: str) -> str:
    """Wake-up marker of one queue."""
    return f"{NS}:marker:{queue}"


def requeued() -> str:
    """Dead letters requeued by RQ's tools (`rq requeue`), waiting to be marked replayed."""
    return f"{NS}:requeued"


def unrecorded() -> str:
    """Failures without a job hash (refused keys) waiting for the dead-letter store to come back."""
    return f"{NS}:unrecorded"


def paused() -> str:
    """Set of paused queue names."""
    return f"{NS}:paused"


def worker(name: str) -> str:
    """A worker pool's description."""
    return f"{NS}:worker:{name}"


def workers() -> str:
    """Index of worker pools by heartbeat."""
    return f"{NS}:workers"


def active(name: str) -> str:
    """A pool's running jobs."""
    return f"{NS}:active:{name}"


METRICS_PREFIX = f"{NS}:metrics:"


def metrics(queue: str, minute: int) -> str:
    """Per-minute counters of one queue (the Lua scripts build the same from METRICS_PREFIX)."""
    return f"{METRICS_PREFIX}{queue}:{minute}"


def durations(queue: str) -> str:
    """Cumulative duration buckets of one queue's completed jobs, per job name (Prometheus histogram)."""
    return f"{NS}:durations:{queue}"


def rate(scope: str) -> str:
    """Sliding log of one rate-limit scope."""
    return f"{NS}:rate:{scope}"


def throttle(queue: str) -> str:
    """Queue-wide throttle (429) marker."""
    return f"{NS}:throttle:{queue}"


def once(scope: str) -> str:
    """At-most-once guard."""
    return f"{NS}:once:{scope}"


def schedules() -> str:
    """Recurring schedule definitions: name -> JSON."""
    return f"{NS}:schedules"


def alert(name: str) -> str:
    """Alert cool-down state."""
    return f"{NS}:alert:{name}"


def scheduler_heartbeat() -> str:
    """Set by whoever moves delayed jobs, with a short expiry."""
    return f"{NS}:scheduler:heartbeat"
