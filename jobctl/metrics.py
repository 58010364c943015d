"""One read-only snapshot of every queue, shared by `stats`, `health` and `metrics`.

Workers write per-minute counters (`keys.metrics`) from the Lua steps in `jobctl.scripts`; this
module only reads. The cost is fixed per queue, whatever the number of jobs: LLEN/ZCARD/LINDEX on
each priority level, HGETALL of the last 60 minute hashes, one HGET per non-empty level, in two
pipelined round trips, and a third (one HLEN per runner) when worker pools are alive. Reading never
writes to Redis (raw read commands only, no RQ cleanup).

Derived figures, all from the same per-minute hashes:
- `p50_ms_1h`, `p95_ms_1h`: estimated from the exponential duration buckets `d{i}` (completed jobs
  of (2^(i-1), 2^i] ms, see `keys`) summed over the hour, by linear interpolation within the bucket
  that holds the rank, as Prometheus's `histogram_quantile` does: never off by more than the
  bucket's width (a factor of 2); a rank in the last, open bucket reads as its lower bound.
- `rate_per_s`: jobs done (completed plus failed for good) per second over the last 5 minutes, the
  current minute included up to now; the span starts at the first minute of those 5 with any job.
- `drain_s`: waiting jobs / `rate_per_s` (0 when none wait, null when jobs wait and none are done).
- `completed_per_min`, `failed_per_min`: the hour's 60 minute counts, oldest first, now last.

Prometheus exposition (`jobctl metrics`), one sample per queue unless noted. The `_1h` figures are
sliding one-hour windows, so they are gauges (a Prometheus counter must never decrease):

| metric | type | labels | meaning |
| --- | --- | --- | --- |
| `jobctl_up` | gauge | — | 1 when Redis answered this scrape, else 0 (and nothing else is exposed) |
| `jobctl_scheduler_up` | gauge | — | 1 when a delayed-job mover heart-beat in the last 30 s |
| `jobctl_queue_waiting` | gauge | `queue` | jobs waiting (all priority levels) |
| `jobctl_queue_active` | gauge | `queue` | jobs running |
| `jobctl_queue_delayed` | gauge | `queue` | jobs delayed or waiting for a retry |
| `jobctl_queue_completed_1h` | gauge | `queue` | jobs completed in the last hour |
| `jobctl_queue_failed_1h` | gauge | `queue` | jobs failed permanently (dead-lettered) in the last hour |
| `jobctl_queue_retried_1h` | gauge | `queue` | failed attempts scheduled for a retry in the last hour |
| `jobctl_queue_avg_ms_1h` | gauge | `queue` | mean processing ms of last hour's completed jobs (absent when none) |
| `jobctl_queue_p50_ms_1h` | gauge | `queue` | median processing ms of the last hour, estimated (absent when none) |
| `jobctl_queue_p95_ms_1h` | gauge | `queue` | 95th percentile of the same, estimated (absent when none) |
| `jobctl_queue_oldest_waiting_seconds` | gauge | `queue` | age of the oldest waiting job (0 when none wait) |
| `jobctl_queue_workers` | gauge | `queue` | runner processes of live worker pools serving the queue |
| `jobctl_queue_slots` | gauge | `queue` | slots of live pools for the queue (its cap of running jobs there) |
| `jobctl_queue_paused` | gauge | `queue` | 1 when paused |
| `jobctl_queue_rate_limited` | gauge | `queue` | 1 while at its rate limit or throttled by an upstream 429 |
| `jobctl_queue_dead_letters` | gauge | `queue` | open dead letters (absent when the store is unreadable) |
| `jobctl_job_duration_seconds` | histogram | `queue`, `job` | completed jobs' processing time (`_bucket`...) |

The histogram is cumulative (`keys.durations`, which only grows), not a one-hour window: its buckets
are the exponential bounds 2^0..2^23 ms (0.001 s .. 8388.608 s) and `+Inf`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    import threading
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

from jobctl import keys, ratelimit
from jobctl.control import pool_slots
from jobctl.durations import iso
from jobctl.jobs import RQ_TIME
from jobctl.queues import QueuePolicy
from jobctl.runtime import Runtime
from jobctl.scripts import DURATION_BUCKETS

log = logging.getLogger("jobctl.metrics")
WINDOW_MIN = 60
RATE_WINDOW_MIN = 5
BUCKET_BOUNDS_MS: tuple[float, ...] = tuple(float(2 ** i) for i in range(DURATION_BUCKETS))  # then +Inf
_BUCKET_INDEX = {f"d{i}".encode(): i for i in range(DURATION_BUCKETS + 1)}  # per-minute hash field -> bucket
_TOTALS = {b"completed": 0, b"failed": 1, b"retried": 2, b"ms": 3}


def bucket_of(ms: float) -> int:
    """The duration bucket of `ms` as step.lua files it: i with 2^(i-1) < ms <= 2^i, 0 for ms <= 1,
    DURATION_BUCKETS (the open bucket) beyond the last bound."""
    return next((i for i, bound in enumerate(BUCKET_BOUNDS_MS) if ms <= bound), DURATION_BUCKETS)


def percentile_ms(counts: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of durations from non-cumulative bucket counts (index i = bucket i, the last
    the open bucket), by linear interpolation within the bucket holding rank q * total; the open bucket
    reads as its lower bound. None when there is no count."""
    total = sum(counts)
    if total <= 0:
        return None
    rank, below = q * total, 0.0
    for i, n in enumerate(counts):
        if n > 0 and below + n >= rank:
            if i >= len(BUCKET_BOUNDS_MS):
                return BUCKET_BOUNDS_MS[-1]
            low = BUCKET_BOUNDS_MS[i - 1] if i else 0.0
            return round(low + (BUCKET_BOUNDS_MS[i] - low) * max(0.0, rank - below) / n, 1)
        below += n
    return BUCKET_BOUNDS_MS[-1]


def current_rate(done_per_min: Sequence[int], now_s: float, window_min: int = RATE_WINDOW_MIN) -> float:
    """Jobs per second over the last `window_min` minute counts (oldest first, the last being the current
    minute, counted up to `now_s`); the span starts at the first of those minutes with any job."""
    recent = list(done_per_min[-window_min:])
    first = next((i for i, n in enumerate(recent) if n), None)
    if first is None:
        return 0.0
    span = (len(recent) - 1 - first) * 60 + now_s % 60
    return round(sum(recent) / max(span, 1.0), 2)


def drain_s(waiting: int, rate_per_s: float) -> float | None:
    """Seconds the backlog needs at `rate_per_s`: 0 when nothing waits, None when jobs wait and none are done."""
    if waiting <= 0:
        return 0.0
    if rate_per_s <= 0:
        return None
    return round(waiting / rate_per_s, 1)


@dataclass(frozen=True)
class QueueStats:
    """One queue's figures (`stats --json` names, docs/commands/stats.md)."""

    name: str
    waiting: int
    active: int
    delayed: int
    completed_1h: int
    failed_1h: int
    avg_ms_1h: float | None
    oldest_waiting_s: float | None
    workers: int
    paused: bool
    dead_letters: int | None
    retried_1h: int = 0
    rate_limited: bool = False
    dead_letters_1h: int | None = None
    slots: int = 0  # slots of live pools for this queue: the most of its jobs they run at once
    global_concurrency: int | None = None  # the cap on its running jobs across every host
    p50_ms_1h: float | None = None  # estimated from the duration buckets (see the module docstring)
    p95_ms_1h: float | None = None
    rate_per_s: float = 0.0  # jobs done (completed + failed) per second, last 5 minutes
    drain_s: float | None = None  # waiting / rate_per_s; None when jobs wait and none are done
    completed_per_min: tuple[int, ...] = ()  # the last 60 minutes, oldest first, the current one last
    failed_per_min: tuple[int, ...] = ()
    rate_limit: int | None = None  # the limiter's most jobs per window (None: no rate limit)
    rate_window_s: float | None = None  # its window
    rate_used: int | None = None  # jobs started in the current window (per-job scope: the busiest job)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for `--json`."""
        return asdict(self)


@dataclass(frozen=True)
class PoolStats:
    """One live worker pool as the workers panel shows it."""

    name: str
    host: str
    pid: int
    queues: tuple[str, ...]
    state: str
    running: int  # jobs its runners hold now
    concurrency: int  # its slots, all queues together
    heartbeat_age_s: float | None  # seconds since its last heartbeat
    processes: int = 0

    def to_json(self) -> dict[str, Any]:
        """Plain dict for `--json`."""
        return asdict(self)


@dataclass(frozen=True)
class JobDurations:
    """The cumulative duration histogram of one job name on one queue (never resets, see `keys.durations`)."""

    queue: str
    job: str
    buckets: tuple[int, ...]  # non-cumulative counts: bucket i = (2^(i-1), 2^i] ms; the last is open (+Inf)
    sum_ms: float

    @property
    def count(self) -> int:
        """Jobs counted."""
        return sum(self.buckets)


@dataclass(frozen=True)
class Snapshot:
    """Every requested queue at one instant (Redis server time)."""

    generated_at: str
    now_s: float
    queues: tuple[QueueStats, ...]
    scheduler_alive: bool
    dead_letters_error: str | None = None
    rq_suspended: bool = False  # `rq suspend` is in force: jobctl's pools take no jobs
    foreign_workers: dict[str, list[str]] = field(default_factory=dict)  # non-jobctl RQ worker -> our levels
    pools: tuple[PoolStats, ...] = ()  # live worker pools
    durations: tuple[JobDurations, ...] = ()  # only when asked for (`snapshot(..., durations=True)`)
    broken_keys: dict[str, str] = field(default_factory=dict)  # key of the wrong type -> what it holds

    def to_json(self) -> dict[str, Any]:
        """`{"generated_at", "queues": [...], "rq_suspended", "foreign_workers", "pools", "database_error",
        "broken_keys"}` as `stats --json` prints it (`database_error`: why dead letters could not be counted,
        else null; `broken_keys`: Redis keys that hold another type than jobctl and RQ keep there, and what
        they hold, e.g. `{"rq:queue:email": "string"}`; their figures count as 0)."""
        return {"generated_at": self.generated_at, "queues": [q.to_json() for q in self.queues],
                "rq_suspended": self.rq_suspended, "foreign_workers": self.foreign_workers,
                "pools": [p.to_json() for p in self.pools], "database_error": self.dead_letters_error,
                "broken_keys": self.broken_keys}


@dataclass(frozen=True)
class DeadLetterCounts:
    """Open dead letters per queue (all, and failed in the last hour); `error` when unreadable."""

    open: dict[str, int]
    recent: dict[str, int]
    error: str | None = None
    available: bool = True


def _int(v: bytes | None) -> int:
    return int(float(v)) if v else 0


def _age_s(stamp: bytes | None, now_s: float) -> float | None:
    if not stamp:
        return None
    try:
        t = datetime.strptime(stamp.decode(), RQ_TIME).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    return round(max(0.0, now_s - t), 1)


def _live_workers(infos: Sequence[dict[bytes, bytes]]) -> tuple[dict[str, int], dict[str, int]]:
    """(queue -> runner processes, queue -> slots) of live pools (a pool's hash expires when it stops
    heart-beating)."""
    procs: dict[str, int] = {}
    slots: dict[str, int] = {}
    for info in infos:
        if not info:
            continue
        runners = max(1, _int(info.get(b"processes")))
        shares = pool_slots(info.get(b"slots"))
        for q in info.get(b"queues", b"").decode(errors="replace").split(","):
            if q:
                procs[q] = procs.get(q, 0) + runners
                slots[q] = slots.get(q, 0) + shares.get(q, 0)
    return procs, slots


def dead_letter_counts(database_url: str, since: datetime) -> DeadLetterCounts:
    """Open dead letters per queue; never raises (an absent store is `available=False`)."""
    from jobctl import quickread

    quick = quickread.dead_letter_counts(database_url, since)  # a SQLite file: no SQLAlchemy import
    if quick is not None:
        return DeadLetterCounts(quick[0], quick[1], available=quick[2])
    from sqlalchemy import case, func, make_url, select
    from sqlalchemy.exc import SQLAlchemyError

    from jobctl import db

    try:
        url = make_url(database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
                and not url.database.startswith("file:") and not Path(url.database).expanduser().is_file():
            return DeadLetterCounts({}, {}, available=False)  # never create a database just to read it
        t = db.dead_letters
        query = (select(t.c.queue, func.count(), func.sum(case((t.c.failed_at >= since, 1), else_=0)))
                 .where(t.c.status == "open").group_by(t.c.queue))
        with db.engine_for(database_url).connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        text = str(getattr(exc, "orig", None) or exc).lower()
        if "no such table" in text or "does not exist" in text:
            return DeadLetterCounts({}, {}, available=False)
        return DeadLetterCounts({}, {}, error=db.unavailable(database_url, exc).args[0])
    except Exception as exc:  # noqa: BLE001 - the dead-letter figure is optional; stats must still print
        return DeadLetterCounts({}, {}, error=f"dead-letter store unreadable ({type(exc).__name__})")
    return DeadLetterCounts({r[0]: int(r[1]) for r in rows}, {r[0]: int(r[2] or 0) for r in rows})


def _rate_scopes(policies: Sequence[QueuePolicy]) -> list[tuple[str, int, int, str]]:
    """(limiter key, window µs, limit, queue) of every rate-limited queue (per job name where scoped so)."""
    out = []
    for p in policies:
        if p.rate_limit is None:
            continue
        window_us = int(p.rate_limit.per_s * 1e6) + ratelimit.GUARD_US
        names = p.jobs if p.rate_limit.scope == "job" else ("",)
        out += [(keys.rate(ratelimit.scope_for(p.name, p.rate_limit, n)), window_us, p.rate_limit.limit, p.name)
                for n in names]
    return out


def snapshot(rt: Runtime, queues: Sequence[str] | None = None, now: float | None = None,
             dead_letters: bool = True, durations: bool = False) -> Snapshot:
    """Figures of `queues` (default: all, in priority order) in two or three pipelined round trips;
    `durations` adds each queue's cumulative duration histograms (one HGETALL per queue)."""
    registry = rt.settings.queues
    policies = [registry.get(q) for q in queues] if queues else list(registry.policies)
    r = rt.redis
    broken: dict[str, str] = {}
    with r.pipeline(transaction=False) as pipe:
        reads = _Reads(pipe, broken)
        pipe.time()
        reads.add(set(), "smembers", keys.paused())
        pipe.exists(keys.scheduler_heartbeat())
        reads.add([], "zrange", keys.workers(), 0, -1, withscores=True)
        pipe.exists(keys.rq_suspended())
        reads.add(set(), "smembers", keys.rq_workers())
        for p in policies:
            pipe.exists(keys.throttle(p.name))
            for _prio, level in p.levels():
                reads.add(0, "llen", keys.queue_list(level))
                reads.add(0, "zcard", keys.wip(level))
                reads.add(0, "zcard", keys.scheduled(level))
                reads.add(None, "lindex", keys.queue_list(level), 0)
        first = reads.execute()
    server_s, micros = first[0]
    now_s = float(now) if now is not None else server_s + micros / 1e6
    paused = {m.decode() for m in first[1]}
    scheduler_alive = bool(first[2])
    pool_index: list[tuple[bytes, float]] = first[3]
    pool_names = [name for name, _score in pool_index]
    suspended = bool(first[4])
    rq_worker_keys = sorted(k.decode() for k in first[5])
    minute = int(now_s // 60)
    per_queue: list[tuple[bool, int, int, int, list[bytes]]] = []
    i = 6
    for p in policies:
        throttled = bool(first[i])
        i += 1
        waiting = active = delayed = 0
        heads: list[bytes] = []
        for _level in p.levels():
            n, a, d, head = first[i:i + 4]
            i += 4
            waiting, active, delayed = waiting + n, active + a, delayed + d
            if head:
                heads.append(head)
        per_queue.append((throttled, waiting, active, delayed, heads))
    scopes = _rate_scopes(policies)
    with r.pipeline(transaction=False) as pipe:
        reads = _Reads(pipe, broken)
        for name in pool_names:
            reads.add({}, "hgetall", keys.worker(name.decode(errors="replace")))
        for p, (*_x, heads) in zip(policies, per_queue, strict=True):
            for m in range(minute - WINDOW_MIN + 1, minute + 1):
                reads.add({}, "hgetall", keys.metrics(p.name, m))
            for head in heads:
                reads.add(None, "hget", keys.job(head.decode(errors="replace")), "enqueued_at")
            if durations:
                reads.add({}, "hgetall", keys.durations(p.name))
        for key in rq_worker_keys:
            reads.add([None, None], "hmget", key, ["version", "queues"])
        for key, window_us, _limit, _queue in scopes:
            reads.add(0, "zcount", key, f"({now_s * 1e6 - window_us:.0f}", "+inf")
        second = reads.execute()
    if broken:  # what those keys hold instead (only when there are some: one more round trip)
        with r.pipeline(transaction=False) as pipe:
            for key in broken:
                pipe.type(key)
            broken = {k: _text(t) for k, t in zip(broken, pipe.execute(), strict=True)}
    rq_infos = second[len(second) - len(scopes) - len(rq_worker_keys):len(second) - len(scopes)]
    used: dict[str, int] = {}
    for (_k, _w, _limit, queue), n in zip(scopes, second[len(second) - len(scopes):], strict=True):
        used[queue] = max(used.get(queue, 0), int(n))
    pool_infos = second[:len(pool_names)]
    workers, slots = _live_workers(pool_infos)
    pools = _pools(r, pool_index, pool_infos, now_s)
    j = len(pool_names)
    since = datetime.fromtimestamp(now_s - 3600, UTC)
    dl = dead_letter_counts(rt.settings.database_url, since) if dead_letters else None
    out = []
    histograms: list[JobDurations] = []
    for p, (throttled, waiting, active, delayed, heads) in zip(policies, per_queue, strict=True):
        totals, buckets, completed_per_min, failed_per_min = _minutes(second[j:j + WINDOW_MIN])
        j += WINDOW_MIN
        ages = [a for a in (_age_s(s, now_s) for s in second[j:j + len(heads)]) if a is not None]
        j += len(heads)
        if durations:
            histograms += _job_durations(p.name, second[j])
            j += 1
        completed = int(totals[0])
        usable = dl is not None and dl.error is None  # no store yet: nothing recorded, so 0
        rate = current_rate([c + f for c, f in zip(completed_per_min, failed_per_min, strict=True)], now_s)
        limit = p.rate_limit
        out.append(QueueStats(
            name=p.name, waiting=waiting, active=active, delayed=delayed, completed_1h=completed,
            failed_1h=int(totals[1]),
            avg_ms_1h=round(totals[3] / completed, 1) if completed else None,
            oldest_waiting_s=max(ages) if ages else None, workers=workers.get(p.name, 0),
            slots=slots.get(p.name, 0), global_concurrency=p.global_concurrency or None,
            paused=p.name in paused, dead_letters=dl.open.get(p.name, 0) if usable and dl else None,
            retried_1h=int(totals[2]),
            rate_limited=throttled or (limit is not None and used.get(p.name, 0) >= limit.limit),
            dead_letters_1h=dl.recent.get(p.name, 0) if usable and dl else None,
            p50_ms_1h=percentile_ms(buckets, 0.5), p95_ms_1h=percentile_ms(buckets, 0.95),
            rate_per_s=rate, drain_s=drain_s(waiting, rate),
            completed_per_min=tuple(completed_per_min), failed_per_min=tuple(failed_per_min),
            rate_limit=limit.limit if limit else None, rate_window_s=limit.per_s if limit else None,
            rate_used=used.get(p.name, 0) if limit else None))
    levels = {level for p in policies for _p, level in p.levels()}
    return Snapshot(iso(datetime.fromtimestamp(now_s, UTC)), now_s, tuple(out), scheduler_alive,
                    dl.error if dl else None, suspended, _foreign(rq_worker_keys, rq_infos, levels),
                    pools, tuple(histograms), broken)


class _Reads:
    """Pipelined reads where a key of the wrong type (foreign data, SPEC §9) reads as `default` and is
    noted in `broken` (key -> ""), so one such key never fails a whole snapshot; other errors raise."""

    def __init__(self, pipe: Any, broken: dict[str, str]) -> None:
        self.pipe, self.broken = pipe, broken
        self.slots: list[tuple[int, Any, str]] = []  # (reply index, default, key)

    def add(self, default: Any, method: str, key: str, *args: Any, **kwargs: Any) -> None:
        self.slots.append((len(self.pipe.command_stack), default, key))
        getattr(self.pipe, method)(key, *args, **kwargs)

    def execute(self) -> list[Any]:
        replies = self.pipe.execute(raise_on_error=False)
        for index, default, key in self.slots:
            if isinstance(replies[index], redis.ResponseError) and "WRONGTYPE" in str(replies[index]):
                replies[index] = default
                self.broken[key] = ""
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return list(replies)


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _minutes(hashes: Sequence[dict[bytes, bytes]]) -> tuple[list[float], list[float], list[int], list[int]]:
    """(totals [completed, failed, retried, ms], duration bucket counts, completed per minute, failed per
    minute) of a queue's per-minute hashes, oldest first; one pass over each hash's fields."""
    totals = [0.0] * len(_TOTALS)
    buckets = [0.0] * (DURATION_BUCKETS + 1)
    completed, failed = [], []
    get = _BUCKET_INDEX.get
    for h in hashes:
        if not h:  # a quiet minute
            completed.append(0)
            failed.append(0)
            continue
        try:
            counts = [float(h.get(name) or 0) for name in _TOTALS]
            found = [(b, float(v)) for b, v in ((get(k), v) for k, v in h.items()) if b is not None]
        except ValueError:  # a counter someone overwrote by hand: count it as nothing, never fail the read
            counts = [_num(h.get(name)) for name in _TOTALS]
            found = [(b, _num(v)) for b, v in ((get(k), v) for k, v in h.items()) if b is not None]
        for b, x in found:
            buckets[b] += x
        for t, x in enumerate(counts):
            totals[t] += x
        completed.append(int(counts[0]))
        failed.append(int(counts[1]))
    return totals, buckets, completed, failed


def _num(v: bytes | None) -> float:
    try:
        return float(v) if v else 0.0
    except ValueError:  # a counter someone overwrote by hand: count it as nothing, never fail the read
        return 0.0


def _pools(r: Any, index: Sequence[tuple[bytes, float]], infos: Sequence[dict[bytes, bytes]],
           now_s: float) -> tuple[PoolStats, ...]:
    """Live pools (their hash still there), with the jobs their runners hold (one HLEN per runner)."""
    live = [(name.decode(errors="replace"), score, info) for (name, score), info in zip(index, infos, strict=True)
            if info]
    runners = [[x for x in info.get(b"runners", b"").decode(errors="replace").split(",") if x]
               for _n, _s, info in live]
    held: list[int] = []
    if any(runners):
        with r.pipeline(transaction=False) as pipe:
            for names in runners:
                for runner in names:
                    pipe.hlen(keys.active(runner))
            held = [n if isinstance(n, int) else 0 for n in pipe.execute(raise_on_error=False)]  # not a hash: 0
    out, k = [], 0
    for (name, score, info), names in zip(live, runners, strict=True):
        running = sum(held[k:k + len(names)])
        k += len(names)
        beat = _num(info.get(b"heartbeat")) or score
        out.append(PoolStats(
            name=name, host=info.get(b"host", b"?").decode(errors="replace"), pid=_int(info.get(b"pid")),
            queues=tuple(q for q in info.get(b"queues", b"").decode(errors="replace").split(",") if q),
            state=info.get(b"state", b"?").decode(errors="replace"), running=running,
            concurrency=_int(info.get(b"concurrency")),
            heartbeat_age_s=round(max(0.0, now_s - beat), 1) if beat else None,
            processes=_int(info.get(b"processes"))))
    return tuple(out)


def _job_durations(queue: str, h: dict[bytes, bytes]) -> list[JobDurations]:
    """A queue's `keys.durations` hash as one histogram per job name."""
    per_job: dict[str, tuple[list[int], list[float]]] = {}
    for raw, value in h.items():
        job, _, name = raw.decode(errors="replace").rpartition("|")
        counts, total = per_job.setdefault(job, ([0] * (DURATION_BUCKETS + 1), [0.0]))
        if name == "ms":
            total[0] = _num(value)
        elif name[:1] == "d" and name[1:].isdigit() and int(name[1:]) <= DURATION_BUCKETS:
            counts[int(name[1:])] = int(_num(value))
    return [JobDurations(queue, job, tuple(c), t[0]) for job, (c, t) in sorted(per_job.items()) if any(c)]


def _foreign(worker_keys: Sequence[str], infos: Sequence[list[bytes | None]], levels: set[str]) -> dict[str, list[str]]:
    """RQ workers that are not jobctl pools but serve jobctl's levels (they fail its jobs at once)."""
    out = {}
    for key, (version, queues) in zip(worker_keys, infos, strict=True):
        if queues is None or version == b"jobctl":
            continue
        served = sorted(set(queues.decode(errors="replace").split(",")) & levels)
        if served:
            out[key.removeprefix(keys.rq_worker(""))] = served
    return out


def flags(q: QueueStats, backlog_threshold: int, failed_threshold: int) -> tuple[str, ...]:
    """Why a queue row needs attention: `backlog`, `failures`, `no workers` (paused queues excepted)."""
    out = []
    if q.waiting > backlog_threshold:
        out.append("backlog")
    if q.failed_1h > failed_threshold:
        out.append("failures")
    if q.waiting > 0 and q.workers == 0 and not q.paused:
        out.append("no workers")
    return tuple(out)


def breaches(q: QueueStats, backlog_threshold: int, failed_threshold: int) -> dict[str, str]:
    """The figures of a queue over a health threshold, as `jobctl health` judges them: field -> 'warning'
    (backlog, failures, new dead letters in the last hour) or 'critical' (jobs wait and no worker serves)."""
    out = {}
    if q.waiting > backlog_threshold:
        out["waiting"] = "warning"
    if q.failed_1h > failed_threshold:
        out["failed_1h"] = "warning"
    if q.waiting > 0 and q.workers == 0 and not q.paused:
        out["workers"] = "critical"
    if q.dead_letters_1h:
        out["dead_letters"] = "warning"
    return out


_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("waiting", "jobctl_queue_waiting", "Jobs waiting (all priority levels)."),
    ("active", "jobctl_queue_active", "Jobs running."),
    ("delayed", "jobctl_queue_delayed", "Jobs delayed or waiting for a retry."),
    ("completed_1h", "jobctl_queue_completed_1h", "Jobs completed in the last hour."),
    ("failed_1h", "jobctl_queue_failed_1h", "Jobs failed permanently in the last hour."),
    ("retried_1h", "jobctl_queue_retried_1h", "Failed attempts scheduled for a retry in the last hour."),
    ("avg_ms_1h", "jobctl_queue_avg_ms_1h", "Mean processing time of last hour's completed jobs (ms)."),
    ("p50_ms_1h", "jobctl_queue_p50_ms_1h", "Median processing time of last hour's completed jobs (ms, estimated)."),
    ("p95_ms_1h", "jobctl_queue_p95_ms_1h", "95th percentile processing time of the last hour (ms, estimated)."),
    ("oldest_waiting_s", "jobctl_queue_oldest_waiting_seconds", "Age of the oldest waiting job."),
    ("workers", "jobctl_queue_workers", "Runner processes of live worker pools serving the queue."),
    ("slots", "jobctl_queue_slots", "Slots of live worker pools for the queue (their cap of its running jobs)."),
    ("paused", "jobctl_queue_paused", "1 when the queue is paused."),
    ("rate_limited", "jobctl_queue_rate_limited", "1 while the queue is at its rate limit or throttled by a 429."),
    ("dead_letters", "jobctl_queue_dead_letters", "Open dead letters."),
)


class Collector:
    """A Prometheus collector taking one snapshot per scrape."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def describe(self) -> list[Metric]:
        """Nothing up front, so registering does not scrape Redis."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One gauge family per figure; only `jobctl_up 0` when Redis does not answer."""
        import redis
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        from jobctl.errors import JobctlError

        snap: Snapshot | None = None
        try:
            snap = snapshot(self.rt, durations=True)
        except (JobctlError, redis.RedisError) as exc:  # expose the outage, keep serving
            log.warning("scrape failed: %s", exc)
        yield GaugeMetricFamily("jobctl_up", "1 when Redis answered this scrape.", value=1 if snap else 0)
        if snap is None:
            return
        yield GaugeMetricFamily("jobctl_scheduler_up", "1 when a delayed-job mover heart-beat in the last 30 s.",
                                value=int(snap.scheduler_alive))
        for attr, name, doc in _GAUGES:
            family = GaugeMetricFamily(name, doc, labels=["queue"])
            for q in snap.queues:
                value = getattr(q, attr)
                if attr == "oldest_waiting_s" and value is None:
                    value = 0
                if value is not None:
                    family.add_metric([q.name], float(value))
            yield family
        hist = HistogramMetricFamily("jobctl_job_duration_seconds", "Processing time of completed jobs (cumulative).",
                                     labels=["queue", "job"])
        bounds = [floatToGoString(ms / 1000) for ms in BUCKET_BOUNDS_MS] + ["+Inf"]
        for d in snap.durations:
            running = 0
            cumulative = []
            for le, n in zip(bounds, d.buckets, strict=True):
                running += n
                cumulative.append((le, float(running)))
            hist.add_metric([d.queue, d.job], cumulative, sum_value=d.sum_ms / 1000)
        yield hist


def _registry(rt: Runtime) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(rt))  # type: ignore[arg-type]
    return registry


def exposition(rt: Runtime) -> bytes:
    """The Prometheus text exposition of one snapshot."""
    from prometheus_client import generate_latest

    return bytes(generate_latest(_registry(rt)))


def serve(rt: Runtime, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics on host:port in a daemon thread (a snapshot per scrape)."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host, registry=_registry(rt))
    return server, thread
