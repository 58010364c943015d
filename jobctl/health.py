"""Health checks over one metrics snapshot (Nagios exit codes), and alert notifications.

Checks only read. With `--notify`, alert state is kept under `keys.alert(...)` so several cron
hosts share one cool-down: `{name}.{status}` is the cool-down lock (SET NX EX, per severity, so
an escalation is sent at once) and `{name}.firing` remembers that an alert was sent, so exactly
one "resolved" message follows when it clears.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from jobctl import keys, metrics
from jobctl.config import Settings, mask_url
from jobctl.durations import iso
from jobctl.errors import ServiceUnavailable, printable
from jobctl.runtime import Runtime, memory_state, out_of_memory

log = logging.getLogger("jobctl.health")
CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
_RANK = {"OK": 0, "UNKNOWN": 1, "WARNING": 2, "CRITICAL": 3}
CHECKS = ("redis", "persistence", "backlog", "failures", "workers", "scheduler", "dead_letters", "rq", "keys")
FIRING_TTL_S = 7 * 86400


@dataclass(frozen=True)
class Check:
    """One check's outcome; `details` adds fields to its JSON object."""

    name: str
    status: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """`{"name", "status", "message", ...details}`."""
        return {"name": self.name, "status": self.status, "message": self.message, **self.details}


@dataclass(frozen=True)
class Report:
    """All checks and the overall status (the worst one)."""

    generated_at: str
    checks: tuple[Check, ...]

    @property
    def status(self) -> str:
        """Worst status: CRITICAL > WARNING > UNKNOWN > OK."""
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default="OK")

    @property
    def exit_code(self) -> int:
        """Nagios plugin exit code."""
        return CODES[self.status]

    def to_json(self) -> dict[str, Any]:
        """`{"status", "checks": [...], "generated_at"}`."""
        return {"status": self.status, "checks": [c.to_json() for c in self.checks],
                "generated_at": self.generated_at}


def _queues_over(snap: metrics.Snapshot, attr: str, settings: Settings, limit: str) -> dict[str, int]:
    """Queues whose `attr` exceeds their own policy's `limit` field."""
    return {q.name: getattr(q, attr) for q in snap.queues
            if getattr(q, attr) > getattr(settings.queues.get(q.name), limit)}


def _list(d: dict[str, int], unit: str) -> str:
    return ", ".join(f"{k}: {v} {unit}" for k, v in d.items())


def queue_checks(snap: metrics.Snapshot, settings: Settings) -> list[Check]:
    """Backlog, failures, workers, scheduler, dead-letter, RQ and key checks of one snapshot (pure)."""
    out = []
    limits = {q.name: settings.queues.get(q.name) for q in snap.queues}
    backlog = _queues_over(snap, "waiting", settings, "backlog_alert")
    out.append(Check("backlog", "WARNING" if backlog else "OK",
                     f"over the backlog threshold: {_list(backlog, 'waiting')}" if backlog
                     else "no queue over its backlog threshold",
                     {"queues": backlog, "thresholds": {n: p.backlog_alert for n, p in limits.items()}}))
    failed = _queues_over(snap, "failed_1h", settings, "failed_alert")
    out.append(Check("failures", "WARNING" if failed else "OK",
                     f"over the failure threshold in the last hour: {_list(failed, 'failed')}"
                     if failed else "no queue over its failure threshold in the last hour",
                     {"queues": failed, "thresholds": {n: p.failed_alert for n, p in limits.items()}}))
    orphans = {q.name: q.waiting for q in snap.queues if q.waiting and not q.workers and not q.paused}
    out.append(Check("workers", "CRITICAL" if orphans else "OK",
                     f"waiting jobs but no live worker: {_list(orphans, 'waiting')}" if orphans
                     else "every queue with waiting jobs has a live worker", {"queues": orphans}))
    delayed = sum(q.delayed for q in snap.queues)
    stuck = delayed > 0 and not snap.scheduler_alive
    out.append(Check("scheduler", "CRITICAL" if stuck else "OK",
                     f"{delayed} delayed job(s) but no scheduler heartbeat in 30 s (no `jobctl work` running)"
                     if stuck else ("scheduler running" if snap.scheduler_alive else "no delayed jobs"),
                     {"delayed": delayed, "scheduler_alive": snap.scheduler_alive}))
    out.append(_dead_letter_check(snap))
    out.append(_rq_check(snap))
    out.append(_keys_check(snap))
    return out


def _keys_check(snap: metrics.Snapshot) -> Check:
    """Keys of the wrong type where jobctl and RQ keep queues and registries (foreign data): pools skip
    them, so their jobs wait, uncounted, until an operator deletes or renames them."""
    if not snap.broken_keys:
        return Check("keys", "OK", "every queue and registry key holds its own type")
    listed = ", ".join(f"{printable(k)} ({printable(t)})" for k, t in sorted(snap.broken_keys.items())[:5])
    more = f" and {len(snap.broken_keys) - 5} more" if len(snap.broken_keys) > 5 else ""
    return Check("keys", "CRITICAL", f"{len(snap.broken_keys)} Redis key(s) hold another type than jobctl and RQ "
                 f"keep there: {listed}{more}; pools skip them (delete or rename them)",
                 {"broken_keys": snap.broken_keys})


def _rq_check(snap: metrics.Snapshot) -> Check:
    """RQ's own state that changes what jobctl does: `rq suspend`, and plain RQ workers on jobctl's queues."""
    problems = []
    if snap.rq_suspended:
        problems.append("RQ workers are suspended (`rq suspend`): jobctl's pools take no jobs until `rq resume`")
    if snap.foreign_workers:
        names = ", ".join(f"{w} ({', '.join(q)})" for w, q in snap.foreign_workers.items())
        problems.append(f"non-jobctl RQ worker(s) serve jobctl queues and fail their jobs at once: {names}")
    return Check("rq", "WARNING" if problems else "OK", "; ".join(problems) or "no RQ suspension, no foreign workers",
                 {"suspended": snap.rq_suspended, "foreign_workers": snap.foreign_workers})


def _dead_letter_check(snap: metrics.Snapshot) -> Check:
    if snap.dead_letters_error:  # a required service: dead letters can be neither recorded nor counted
        return Check("dead_letters", "CRITICAL", f"{snap.dead_letters_error} (dead letters cannot be recorded)",
                     {"database_error": snap.dead_letters_error})
    recent = {q.name: q.dead_letters_1h for q in snap.queues if q.dead_letters_1h}
    opened = sum(q.dead_letters or 0 for q in snap.queues)
    if any(q.dead_letters is None for q in snap.queues):
        return Check("dead_letters", "OK", "dead-letter store not initialised (`jobctl db init`)")
    if recent:
        return Check("dead_letters", "WARNING",
                     f"new dead letters in the last hour: {_list(recent, 'new')} ({opened} open in all)",
                     {"queues": recent, "open": opened})
    return Check("dead_letters", "OK", f"no new dead letters in the last hour ({opened} open)",
                 {"queues": {}, "open": opened})


def redis_check(r: redis.Redis, version: str, where: str) -> Check:
    """OK, or CRITICAL when Redis refuses writes for want of memory (maxmemory reached under noeviction:
    no job can be enqueued, retried or heart-beaten); INFO memory not permitted: OK."""
    try:
        limit, policy, full = memory_state(r)
    except redis.ResponseError:
        full = False
    if full:
        return Check("redis", "CRITICAL", f"{out_of_memory(r)} (Redis {version} at {where})",
                     {"version": version, "maxmemory": limit, "maxmemory_policy": policy, "out_of_memory": True})
    return Check("redis", "OK", f"Redis {version} at {where}", {"version": version})


def persistence_check(r: redis.Redis) -> Check:
    """AOF on and maxmemory-policy noeviction; skipped when CONFIG and INFO are not permitted."""
    try:
        conf = r.config_get("appendonly") | r.config_get("maxmemory-policy")
        aof, policy = conf.get("appendonly"), conf.get("maxmemory-policy")
    except redis.ResponseError:
        try:
            aof = "yes" if r.info("persistence").get("aof_enabled") else "no"
            policy = r.info("memory").get("maxmemory_policy")
        except redis.ResponseError:
            return Check("persistence", "OK", "skipped: CONFIG and INFO not permitted", {"skipped": True})
    problems = []
    if str(aof) != "yes":
        problems.append("AOF is off (appendonly no)")
    if policy and str(policy) != "noeviction":
        problems.append(f"maxmemory-policy is {policy}, not noeviction")
    detail = {"appendonly": aof, "maxmemory_policy": policy}
    if problems:
        return Check("persistence", "WARNING", "; ".join(problems) + ": jobs can be lost", detail)
    return Check("persistence", "OK", "AOF on, maxmemory-policy noeviction", detail)


def run(rt: Runtime, now: float | None = None) -> Report:
    """Every check; Redis unreachable is one CRITICAL check, an unexpected Redis error UNKNOWN."""
    stamp = iso(datetime.now(UTC))
    try:
        r = rt.redis
        info = r.info("server")
        snap = metrics.snapshot(rt, now=now)
    except ServiceUnavailable as exc:
        return Report(stamp, (Check("redis", "CRITICAL", str(exc)),))
    except redis.OutOfMemoryError:
        return Report(stamp, (Check("redis", "CRITICAL", str(out_of_memory(rt.redis))),))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return Report(stamp, (Check("redis", "CRITICAL",
                                    f"Redis at {mask_url(rt.settings.redis_url)} is unreachable ({exc})"),))
    except redis.RedisError as exc:
        return Report(stamp, (Check("redis", "UNKNOWN", f"Redis refused a read: {str(exc)[:200]}"),))
    version = info.get("valkey_version") or info.get("redis_version", "?")
    checks = [redis_check(r, version, mask_url(rt.settings.redis_url)), persistence_check(r),
              *queue_checks(snap, rt.settings)]
    return Report(snap.generated_at, tuple(checks))


@dataclass(frozen=True)
class Sent:
    """One notification attempt: the alert, whether it fired or resolved, and any error."""

    name: str
    kind: str
    error: str | None = None


def _post(url: str, text: str) -> str | None:
    import requests  # only when an alert is posted: `jobctl health` from cron stays quick

    try:
        resp = requests.post(url, json={"text": text}, timeout=10)
    except requests.RequestException as exc:
        return f"alert webhook unreachable ({type(exc).__name__})"
    return None if resp.ok else f"alert webhook answered HTTP {resp.status_code}"


def notify(rt: Runtime, report: Report) -> list[Sent]:
    """Post new or escalated alerts (once per cool-down across hosts) and "resolved" messages."""
    url = rt.settings.alert_webhook_url
    if not url or any(c.name == "redis" and c.status != "OK" for c in report.checks):
        return []  # without Redis there is no shared cool-down: cron would post every run
    r, host, out = rt.redis, socket.gethostname(), []
    for c in report.checks:
        firing = keys.alert(f"{c.name}.firing")
        if c.status == "OK":
            if r.delete(firing):  # exactly one host wins the delete, so one "resolved" message
                r.delete(*(keys.alert(f"{c.name}.{s.lower()}") for s in CODES))
                out.append(Sent(c.name, "resolved", _post(url, f"[jobctl] RESOLVED {c.name} on {host}: {c.message}")))
            continue
        lock = keys.alert(f"{c.name}.{c.status.lower()}")
        if not r.set(lock, report.generated_at, nx=True, ex=rt.settings.alert_cooldown_s):
            continue
        error = _post(url, f"[jobctl] {c.status} {c.name} on {host}: {c.message}")
        if error:
            r.delete(lock)  # let the next run try again
        else:
            r.set(firing, c.status, ex=FIRING_TTL_S)
        out.append(Sent(c.name, "fired", error))
    return out
