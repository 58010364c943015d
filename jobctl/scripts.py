"""Lua scripts: each one atomic step on RQ's data model, kept in `jobctl/lua/NAME.lua`.

A file's header names its arguments (`-- KEYS[n] name:`, `-- ARGV[n] name:`, `-- ARGV[n..] name:`
for a variadic tail) and the library chunks it needs (`-- LIBS: lib_time, lib_rate`). Python passes
arguments through one frozen record per script whose fields are the header's names in order
(`tests/test_scripts.py` checks every builder against its header), never a hand-ordered list. A record
is a `Call` subclass: `typing.dataclass_transform` makes mypy check every call's arguments as it would a
dataclass's, without dataclasses' per-class code generation (about 1.5 ms a class, 15 ms of the start-up
of every command that loads this module).
`Scripts` registers each script once per client. Times inside scripts are Redis server time, so hosts
with skewed clocks agree; key prefixes come from `jobctl.keys`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from functools import cache
from importlib.resources import files
from operator import itemgetter
from typing import Any, ClassVar, dataclass_transform

import redis

from jobctl import keys

DURATION_BUCKETS = 24  # finite bounds of the duration histograms: 2^0 .. 2^23 ms (1 ms .. ~2.3 h), then +Inf
DURATIONS_TTL_S = 30 * 86400  # a histogram nobody wrote to for 30 days goes (Prometheus sees a counter reset)

_ARG = re.compile(r"^-- (KEYS|ARGV)\[(\d+)(\.\.)?\] (\w+):", re.M)
_LIBS = re.compile(r"^-- LIBS: (.+)$", re.M)


@cache
def source(name: str) -> str:
    """The text of `jobctl/lua/NAME.lua`."""
    return files("jobctl").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def header(name: str) -> tuple[list[str], list[str]]:
    """(KEYS names, ARGV names) declared in a script's header, in order."""
    found: dict[str, list[tuple[int, str]]] = {"KEYS": [], "ARGV": []}
    for kind, index, _tail, arg in _ARG.findall(source(name)):
        found[kind].append((int(index), arg))
    for kind, items in found.items():
        if [i for i, _ in items] != list(range(1, len(items) + 1)):
            raise ValueError(f"{name}.lua: {kind} header is not numbered 1..n")
    return [n for _, n in found["KEYS"]], [n for _, n in found["ARGV"]]


@cache
def program(name: str) -> str:
    """A script with its libraries prepended."""
    libs = _LIBS.search(source(name))
    parts = [source(lib.strip()) for lib in libs.group(1).split(",")] if libs else []
    return "\n".join([*parts, source(name)])


def _js(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Call:
    """Arguments of one script call; subclasses list the header's KEYS then ARGV as annotated fields
    (keyword-only, immutable; a field with a value has that default)."""

    SCRIPT: ClassVar[str] = ""
    NKEYS: ClassVar[int] = 0
    VARIADIC: ClassVar[bool] = False  # the last field is a sequence spread over the tail of ARGV
    FIELDS: ClassVar[tuple[str, ...]] = ()  # the fields, in order
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    _NAMES: ClassVar[frozenset[str]] = frozenset()
    _REQUIRED: ClassVar[frozenset[str]] = frozenset()
    _GET: ClassVar[Callable[[dict[str, Any]], tuple[Any, ...]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = [n for n, ann in cls.__dict__.get("__annotations__", {}).items() if not str(ann).startswith("ClassVar")]
        cls.FIELDS = (*cls.FIELDS, *own)
        cls.DEFAULTS = {**cls.DEFAULTS, **{n: cls.__dict__[n] for n in own if n in cls.__dict__}}
        cls._NAMES = frozenset(cls.FIELDS)
        cls._REQUIRED = cls._NAMES - cls.DEFAULTS.keys()
        get = itemgetter(*cls.FIELDS)
        cls._GET = staticmethod(get if len(cls.FIELDS) > 1 else lambda d: (get(d),))  # type: ignore[assignment]

    def __init__(self, **values: Any) -> None:
        if not self._REQUIRED <= values.keys() <= self._NAMES:
            missing = [n for n in self.FIELDS if n in self._REQUIRED and n not in values]
            raise TypeError(f"{type(self).__name__}(): unknown fields {sorted(values.keys() - self._NAMES)}, "
                            f"missing fields {missing}")
        self.__dict__.update(self.DEFAULTS)
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    __delattr__ = __setattr__  # type: ignore[assignment]

    def _values(self) -> tuple[Any, ...]:
        return type(self)._GET(self.__dict__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={v!r}" for n, v in zip(self.FIELDS, self._values(), strict=True))
        return f"{type(self).__name__}({args})"

    def split(self) -> tuple[list[Any], list[Any]]:
        """(KEYS, ARGV) in header order."""
        values = list(self._values())
        if self.VARIADIC:
            values = [*values[:-1], *values[-1]]
        return values[:self.NKEYS], values[self.NKEYS:]


class Step(Call):
    """step.lua: finish a batch, take a batch."""

    SCRIPT = "step"
    job_prefix: str = keys.job("")
    queue_prefix: str = keys.queue_list("")
    wip_prefix: str = keys.wip("")
    finished_prefix: str = keys.finished("")
    failed_prefix: str = keys.failed("")
    active_key: str
    step_key: str
    paused_key: str = keys.paused()
    suspended_key: str = keys.rq_suspended()
    metrics_prefix: str = keys.METRICS_PREFIX
    marker_prefix: str = keys.marker("")
    rate_prefix: str = keys.rate("")
    throttle_prefix: str = keys.throttle("")
    worker: str
    token: str
    lease_s: int
    rq_margin_s: int
    metrics_ttl_s: int
    finishes: str = "[]"
    takes: str = ""
    failure_ttl_s: int
    results_prefix: str = keys.rq_results("")
    rq_worker_key: str = ""
    requeued_key: str = keys.requeued()
    durations_prefix: str = keys.durations("")
    durations_ttl_s: int = DURATIONS_TTL_S
    duration_buckets: int = DURATION_BUCKETS

    @staticmethod
    def finishes_json(items: Sequence[Sequence[Any]]) -> str:
        """[[id, execution, level, queue, result, duration_ms, keep_s, keep_count, return_value, job], ...] as
        JSON."""
        return _js(list(items))

    @staticmethod
    def takes_json(n: int, per_queue: dict[str, list[Any]], levels: Sequence[tuple[str, str]]) -> str:
        """The take specification (see step.lua's header)."""
        return _js({"n": n, "q": per_queue, "levels": [list(p) for p in levels]})


class Fail(Call):
    """fail.lua: apply a failure decision."""

    SCRIPT = "fail"
    job_prefix: str = keys.job("")
    queue_prefix: str = keys.queue_list("")
    wip_prefix: str = keys.wip("")
    scheduled_prefix: str = keys.scheduled("")
    failed_prefix: str = keys.failed("")
    active_key: str
    metrics_prefix: str = keys.METRICS_PREFIX
    marker_prefix: str = keys.marker("")
    job_id: str
    member: str
    level: str
    queue: str
    action: str
    delay_s: str
    consumes_attempt: str
    error: str
    traceback: str
    owner: str
    rq_margin_s: int
    failure_ttl_s: int
    metrics_ttl_s: int
    retry_later_streak: str
    results_prefix: str = keys.rq_results("")
    exc_string: str = ""
    rq_worker_key: str = ""


class Promote(Call):
    """promote.lua: move due delayed jobs."""

    SCRIPT = "promote"
    job_prefix: str = keys.job("")
    queue_prefix: str = keys.queue_list("")
    scheduled_prefix: str = keys.scheduled("")
    marker_prefix: str = keys.marker("")
    heartbeat_key: str = keys.scheduler_heartbeat()
    batch: int
    levels: str


class Heartbeat(Call):
    """heartbeat.lua: extend running jobs' leases."""

    SCRIPT = "heartbeat"
    wip_prefix: str = keys.wip("")
    lease_s: int
    rq_margin_s: int
    members: str


class Expired(Call):
    """expired.lua: members whose lease expired."""

    SCRIPT = "expired"
    wip_prefix: str = keys.wip("")
    rq_margin_s: int
    levels: str


class Enqueue(Call):
    """enqueue.lua: write and queue one job."""

    SCRIPT = "enqueue"
    NKEYS = 4
    VARIADIC = True
    job: str
    target: str
    queues: str = keys.queues_set()
    marker: str
    job_id: str
    mode: str
    seconds: str
    absolute: str
    queue_key: str
    fields: Sequence[Any] = ()


class Cancel(Call):
    """cancel.lua: cancel a waiting or delayed job."""

    SCRIPT = "cancel"
    NKEYS = 1
    job: str
    queue_prefix: str = keys.queue_list("")
    scheduled_prefix: str = keys.scheduled("")
    canceled_prefix: str = keys.canceled("")
    job_prefix: str = keys.job("")


class Trim(Call):
    """trim.lua: completed-job retention of one level."""

    SCRIPT = "trim"
    NKEYS = 1
    finished: str
    job_prefix: str = keys.job("")
    now: float
    keep_count: int


class Time(Call):
    """time.lua: the runtime's clock and timestamp format."""

    SCRIPT = "time"
    seconds: str = ""
    micros: str = "0"


BUILDERS: tuple[type[Call], ...] = (Step, Fail, Promote, Heartbeat, Expired, Enqueue, Cancel, Trim, Time)


def json_arg(value: Any) -> str:
    """A JSON argument for a script (compact)."""
    return _js(value)


class Scripts:
    """The Lua scripts registered on one client."""

    def __init__(self, client: redis.Redis) -> None:
        self._by_name = {b.SCRIPT: client.register_script(program(b.SCRIPT)) for b in BUILDERS}

    def run(self, call: Call, client: Any = None) -> Any:
        """Run one script call (on `client`, e.g. a pipeline, if given)."""
        keys_, argv = call.split()
        return self._by_name[call.SCRIPT](keys=keys_, args=argv, client=client)

    def run_direct(self, client: redis.Redis, call: Call) -> Any:
        """Run one call as a single EVALSHA written straight to a pooled connection, skipping redis-py's
        generic command path (most of a single enqueue's cost); a script Redis does not know yet is
        loaded by the ordinary path. Connection errors propagate: the caller decides about retrying."""
        keys_, argv = call.split()
        script = self._by_name[call.SCRIPT]
        parts = [b"EVALSHA", script.sha.encode(), b"%d" % len(keys_), *(_bytes(v) for v in (*keys_, *argv))]
        packed = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        pool = client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([packed])
            return conn.read_response()
        except redis.exceptions.NoScriptError:
            return self.run(call)
        except (redis.ConnectionError, redis.TimeoutError):
            conn.disconnect()
            raise
        finally:
            pool.release(conn)


def _bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    return (v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)).encode()
