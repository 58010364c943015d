"""Job types: one record per job, declared once, from which every registry is derived.

A `JobType` names a job, its queue, its payload model and its processor. The built-ins are listed in
`jobctl.processors`; a team declares its own without editing jobctl, in two ways:

- an installed package registers an entry point in the group `jobctl.jobs` whose object is a
  `JobType`, a `QueueSpec`, or a list of them (see `jobctl.job`, the public module for plugin authors);
- `jobctl.toml` holds `[jobs.NAME]` tables (`queue`, `processor = "module:function"`,
  `model = "module:Model"`) and new queues as `[queues.NAME]` with a full policy, defaults filled in.

Records are light: the model and processor may be given as "module:attr" strings, imported on first
use, so listing names and queues (`--help`, shell completion) imports neither pydantic nor any
processor. Names, queues and clashes are checked when the configuration loads; imports are checked
when a type is first resolved (enqueue, `jobctl work` before it starts, `jobs types`, `schema`). Every
refusal is a ConfigError (exit 2) naming the file or entry point, the entry and the reason. Only
declared types ever run: nothing read from Redis is imported.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from jobctl.errors import ConfigError
from jobctl.queues import DEFAULT_POLICIES, QueuePolicy, Registry, override

if TYPE_CHECKING:
    from pydantic import BaseModel

    from jobctl.context import JobContext

GROUP = "jobctl.jobs"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # no '.': a queue's levels are NAME.pN
DEFAULT_FIELDS = ("attempts", "priority", "timeout_s")  # what a job type may set apart from its queue
_JOB_FIELDS = {"queue", "processor", "model", *DEFAULT_FIELDS}
Ref = str | Callable[..., Any]


@dataclass(frozen=True)
class JobType:
    """One job type: `name` on `queue`, its payload `model` and its `processor` (objects or "module:attr").

    `defaults` may set `attempts`, `priority` and `timeout_s` (at most the queue's) for this job apart
    from its queue's policy. `source` says where it was declared (for messages)."""

    name: str
    queue: str
    model: Ref
    processor: Ref
    defaults: Mapping[str, int] = field(default_factory=dict)
    source: str = "jobctl"

    @property
    def where(self) -> str:
        """The declaration, as messages name it."""
        return f"{self.source}: [jobs.{self.name}]"

    def payload_model(self) -> type[BaseModel]:
        """The pydantic model of the payload (imported on first use), or a ConfigError."""
        from pydantic import BaseModel

        model = _resolve(self.model, self.where, "model")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigError(f"{self.where}: model {_ref_text(self.model)} is not a pydantic model "
                              f"(got {type(model).__name__})")
        if not model.__pydantic_complete__:  # a deferred schema (`defer_build`, as the built-ins'): built once,
            try:                             # here, e.g. in a pool's warm-up before it forks
                model.model_rebuild()
            except Exception as exc:  # noqa: BLE001 - an unresolvable annotation is the declaration's fault
                raise ConfigError(f"{self.where}: model {_ref_text(self.model)} cannot be built "
                                  f"({type(exc).__name__}: {_one_line(str(exc))})") from None
        return model

    def function(self) -> Callable[[dict[str, Any], JobContext], Any]:
        """The processor (imported on first use), or a ConfigError."""
        fn = _resolve(self.processor, self.where, "processor")
        if not callable(fn) or isinstance(fn, type):
            raise ConfigError(f"{self.where}: processor {_ref_text(self.processor)} is not a function")
        return fn  # type: ignore[no-any-return]

    def schema(self) -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of the payload, what a producer in another language validates
        against (pydantic's validation mode: the payload as sent)."""
        return {"$schema": SCHEMA_DIALECT, **self.payload_model().model_json_schema()}

    def to_json(self, with_schema: bool = True) -> dict[str, Any]:
        """Plain dict for `jobs types --json`."""
        doc: dict[str, Any] = {"name": self.name, "queue": self.queue, "declared_by": self.source}
        if self.defaults:
            doc["defaults"] = dict(self.defaults)
        if with_schema:
            doc["schema"] = self.schema()
        return doc


@dataclass(frozen=True)
class QueueSpec:
    """A new queue declared by a package: its name and its policy fields (the `[queues.NAME]` keys)."""

    name: str
    policy: Mapping[str, object] = field(default_factory=dict)


def _ref_text(ref: Ref) -> str:
    return repr(ref) if isinstance(ref, str) else getattr(ref, "__qualname__", repr(ref))


def _resolve(ref: Ref, where: str, what: str) -> Any:
    if not isinstance(ref, str):
        return ref
    try:
        return _import(ref)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {what} {ref!r} {exc}") from None


@cache
def _import(ref: str) -> Any:
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ConfigError("is not \"module:attribute\"")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # noqa: BLE001 - whatever the import raises, it is the declaration's fault
        raise ConfigError(f"cannot be imported ({type(exc).__name__}: {_one_line(str(exc))})") from None
    return obj


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def builtin_types() -> tuple[JobType, ...]:
    """The built-in job types (declared in `jobctl.processors`)."""
    from jobctl.processors import BUILTINS

    return BUILTINS


def new_policy(name: str, fields: Mapping[str, object], source: str) -> QueuePolicy:
    """A new queue from its declared policy fields, defaults filled in.

    Its home level (the RQ queue named after it) is priority 5 whatever `priority` says, so a changed
    declaration never moves where existing jobs live (as for the built-in queues)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{source}: [queues.{name}]: invalid queue name: 1-64 lower-case letters, digits, "
                          "'-' or '_'")
    if not isinstance(fields, Mapping):
        raise ConfigError(f"{source}: [queues.{name}] must be a table")
    return override(QueuePolicy(name, ()), dict(fields), source)


class Declarations:
    """Collects queues and job types from every source, refusing clashes as it goes."""

    def __init__(self) -> None:
        self.policies: dict[str, QueuePolicy] = {p.name: p for p in DEFAULT_POLICIES}
        self.queue_source: dict[str, str] = dict.fromkeys(self.policies, "jobctl")
        self.types: dict[str, JobType] = {t.name: t for t in builtin_types()}

    def add_queue(self, name: str, fields: Mapping[str, object], source: str) -> None:
        """A new queue; a name that exists already is refused."""
        where = f"{source}: [queues.{name}]"
        if name in self.policies:
            owner = self.queue_source[name]
            what = "a built-in queue" if owner == "jobctl" else f"a queue declared by {owner}"
            raise ConfigError(f"{where}: {name!r} is {what}")
        self.policies[name] = new_policy(name, fields, source)
        self.queue_source[name] = source

    def tune_queue(self, name: str, fields: Mapping[str, object], source: str) -> None:
        """`[queues.NAME]` in jobctl.toml: tunes a known queue, or declares a new one."""
        if name in self.policies:
            self.policies[name] = override(self.policies[name], dict(fields), source)
        else:
            self.add_queue(name, fields, source)

    def add_type(self, t: JobType) -> None:
        """A job type; a clash with a built-in or another declaration is refused."""
        if not NAME.match(t.name):
            raise ConfigError(f"{t.where}: invalid job name: 1-64 lower-case letters, digits, '-' or '_'")
        if t.name in self.types:
            other = self.types[t.name].source
            what = "a built-in job" if other == "jobctl" else f"already declared by {other}"
            raise ConfigError(f"{t.where}: duplicate job name {t.name!r}: {what}")
        if not isinstance(t.queue, str) or not t.queue:
            raise ConfigError(f"{t.where}: queue must be a queue name")
        for ref, what in ((t.model, "model"), (t.processor, "processor")):
            if isinstance(ref, str) and ref.count(":") != 1:
                raise ConfigError(f"{t.where}: {what} must be \"module:attribute\", got {ref!r}")
        unknown = sorted(set(t.defaults) - set(DEFAULT_FIELDS))
        if unknown:
            raise ConfigError(f"{t.where}: unknown default {unknown[0]!r}; known: {', '.join(DEFAULT_FIELDS)}")
        self.types[t.name] = t

    def registry(self) -> Registry:
        """The registry of every queue and job type, after checking each type's queue and defaults."""
        for t in self.types.values():
            policy = self.policies.get(t.queue)
            if policy is None:
                known = ", ".join(sorted(self.policies))
                raise ConfigError(f"{t.where}: unknown queue {t.queue!r}; known queues: {known}")
            _check_defaults(t, policy)
        used = {t.queue for t in self.types.values()}
        for name, source in self.queue_source.items():
            if source != "jobctl" and name not in used:  # most likely a typo of a known queue's name
                known = ", ".join(n for n, s in self.queue_source.items() if s == "jobctl" or n in used)
                raise ConfigError(f"{source}: unknown queue [queues.{name}]: no job type runs on it (declare "
                                  f"one with [jobs.NAME] queue = \"{name}\"); known queues: {known}")
        return Registry(self.policies.values(), self.types.values())


def _check_defaults(t: JobType, policy: QueuePolicy) -> None:
    limits = {"attempts": (1, 1000), "priority": (1, 10), "timeout_s": (1, policy.timeout_s)}
    for key, value in t.defaults.items():
        low, high = limits[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{t.where}: {key} must be an integer from {low} to {high}, got {value!r}")


def _may_declare() -> bool:
    """Whether any installed distribution registers the group: a scan of the metadata files on
    sys.path, far cheaper than importing importlib.metadata (~20 ms) on every command."""
    marker = f"[{GROUP}]"
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as it:
                metas = [d.path for d in it if d.name.endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue
        for meta in metas:
            try:
                with open(os.path.join(meta, "entry_points.txt"), encoding="utf-8") as fh:
                    if marker in fh.read():
                        return True
            except OSError:
                continue
    return False


def _from_entry_points(decl: Declarations) -> None:
    if not _may_declare():
        return
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        dist = getattr(ep.dist, "name", None)
        source = f"entry point {ep.name} = {ep.value} ({GROUP}{f', {dist}' if dist else ''})"
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - an installed plugin that fails to import
            raise ConfigError(f"{source}: cannot be imported ({type(exc).__name__}: {_one_line(str(exc))})") from None
        items = list(obj) if isinstance(obj, list | tuple) else [obj]
        for item in sorted(items, key=lambda i: not isinstance(i, QueueSpec)):  # queues first
            if isinstance(item, QueueSpec):
                decl.add_queue(item.name, item.policy, source)
            elif isinstance(item, JobType):
                decl.add_type(JobType(item.name, item.queue, item.model, item.processor, dict(item.defaults),
                                      source))
            else:
                raise ConfigError(f"{source}: expected JobType or QueueSpec records, got {type(item).__name__}")


def _from_toml(decl: Declarations, doc: Mapping[str, object], src: str) -> None:
    queues = doc.get("queues", {})
    if not isinstance(queues, dict):
        raise ConfigError(f"{src}: [queues] must be a table of queue tables")
    for name, fields in queues.items():
        if not isinstance(fields, dict):
            raise ConfigError(f"{src}: [queues.{name}] must be a table")
        decl.tune_queue(name, fields, src)
    jobs = doc.get("jobs", {})
    if not isinstance(jobs, dict):
        raise ConfigError(f"{src}: [jobs] must be a table of job tables")
    for name, fields in jobs.items():
        where = f"{src}: [jobs.{name}]"
        if not isinstance(fields, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = sorted(set(fields) - _JOB_FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r}; known: {', '.join(sorted(_JOB_FIELDS))}")
        for key in ("queue", "processor", "model"):
            if not isinstance(fields.get(key), str) or not fields[key]:
                raise ConfigError(f"{where}: {key} is required (a string)")
        defaults = {k: v for k, v in fields.items() if k in DEFAULT_FIELDS}
        decl.add_type(JobType(name, fields["queue"], fields["model"], fields["processor"], defaults, src))


def load(doc: Mapping[str, object], src: str) -> Registry:
    """Every queue and job type: built-ins, then installed packages' entry points, then jobctl.toml."""
    decl = Declarations()
    _from_entry_points(decl)
    _from_toml(decl, doc, src)
    return decl.registry()


def fields(schema: dict[str, Any]) -> str:
    """A schema's top-level fields on one line, required ones marked `*` (the `jobs types` table)."""
    required = set(schema.get("required", ()))
    return ", ".join(f"{name}{'*' if name in required else ''}" for name in schema.get("properties", {}))


def iter_types(registry: Registry, queues: Iterable[str] | None = None) -> list[JobType]:
    """The job types of some queues (all by default), in queue-priority order."""
    wanted = None if queues is None else set(queues)
    return [registry.types[j] for p in registry.policies if wanted is None or p.name in wanted for j in p.jobs]
