"""health checks per condition, exit codes, and notifications against a local webhook."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jobctl import control, health, keys, metrics
from jobctl.producer import When, enqueue
from jobctl.runtime import Runtime

EMAIL = {"to": "a@example.com", "subject": "Hi", "template": "welcome", "data": {"name": "A"}, "lang": "en"}


def q(name: str = "email", **kw: Any) -> metrics.QueueStats:
    base: dict[str, Any] = dict(waiting=0, active=0, delayed=0, completed_1h=0, failed_1h=0, avg_ms_1h=None,
                                oldest_waiting_s=None, workers=1, paused=False, dead_letters=0,
                                dead_letters_1h=0)
    return metrics.QueueStats(name=name, **(base | kw))


def statuses(rt: Runtime, *queues: metrics.QueueStats, scheduler: bool = True) -> dict[str, str]:
    snap = metrics.Snapshot("t", 0.0, queues, scheduler)
    return {c.name: c.status for c in health.queue_checks(snap, rt.settings)}


@pytest.mark.parametrize(("stats", "check", "status"), [
    ({"waiting": 1000}, "backlog", "OK"),
    ({"waiting": 1001}, "backlog", "WARNING"),
    ({"failed_1h": 100}, "failures", "OK"),
    ({"failed_1h": 101}, "failures", "WARNING"),
    ({"waiting": 1, "workers": 0}, "workers", "CRITICAL"),
    ({"waiting": 1, "workers": 0, "paused": True}, "workers", "OK"),
    ({"waiting": 0, "workers": 0}, "workers", "OK"),
    ({"dead_letters": 3, "dead_letters_1h": 1}, "dead_letters", "WARNING"),
    ({"dead_letters": 3, "dead_letters_1h": 0}, "dead_letters", "OK"),
    ({"dead_letters": None, "dead_letters_1h": None}, "dead_letters", "OK"),
])
def test_queue_checks(rt: Runtime, stats: dict[str, Any], check: str, status: str) -> None:
    assert statuses(rt, q(**stats))[check] == status


def test_scheduler_check(rt: Runtime) -> None:
    assert statuses(rt, q(delayed=2), scheduler=False)["scheduler"] == "CRITICAL"
    assert statuses(rt, q(delayed=2), scheduler=True)["scheduler"] == "OK"
    assert statuses(rt, q(delayed=0), scheduler=False)["scheduler"] == "OK"


def test_overall_status_is_the_worst() -> None:
    def report(*s: str) -> health.Report:
        return health.Report("t", tuple(health.Check(f"c{i}", x, "") for i, x in enumerate(s)))
    assert report("OK", "OK").exit_code == 0
    assert report("OK", "UNKNOWN").exit_code == 3
    assert report("UNKNOWN", "WARNING").exit_code == 1
    assert report("WARNING", "CRITICAL", "UNKNOWN").exit_code == 2


def base_code(rt: Runtime) -> int:
    """The exit code persistence alone gives on this test server (AOF may be off)."""
    return health.CODES[health.persistence_check(rt.redis).status]


def test_run_against_redis(rt: Runtime) -> None:
    assert health.run(rt).exit_code == base_code(rt)
    enqueue(rt, "email", "send-email", EMAIL)
    report = health.run(rt)
    assert report.exit_code == 2
    assert {c.name: c.status for c in report.checks}["workers"] == "CRITICAL"
    control.set_paused(rt, ["email"], True)
    assert health.run(rt).exit_code == base_code(rt)


def test_delayed_jobs_need_a_scheduler(rt: Runtime) -> None:
    enqueue(rt, "email", "send-email", EMAIL, when=When(delay_s=600))
    assert {c.name: c.status for c in health.run(rt).checks}["scheduler"] == "CRITICAL"
    rt.redis.set(keys.scheduler_heartbeat(), "1", ex=30)
    assert health.run(rt).exit_code == base_code(rt)


def test_failures_from_counters(rt: Runtime) -> None:
    minute = int(time.time() // 60)
    rt.redis.hset(keys.metrics("push", minute), "failed", 60)
    rt.redis.hset(keys.metrics("push", minute - 5), "failed", 41)
    checks = {c.name: c for c in health.run(rt).checks}
    assert checks["failures"].status == "WARNING"
    assert checks["failures"].to_json()["queues"] == {"push": 101}


def test_cli_exit_codes_and_json(rt: Runtime, cli_env: dict[str, str]) -> None:
    enqueue(rt, "email", "send-email", EMAIL)
    out = subprocess.run([".venv/bin/jobctl", "health", "--json"], env=cli_env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    doc = json.loads(out.stdout)
    assert doc["status"] == "CRITICAL" and doc["generated_at"].endswith("Z")
    assert {"name": "workers", "status": "CRITICAL", "message": "waiting jobs but no live worker: email: 1 waiting",
            "queues": {"email": 1}} in doc["checks"]


def test_cli_redis_unreachable(cli_env: dict[str, str]) -> None:
    env = cli_env | {"JOBCTL_REDIS_URL": "redis://:pw@127.0.0.1:1/0"}
    out = subprocess.run([".venv/bin/jobctl", "health"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stdout.startswith("CRITICAL: Redis at redis://:****@127.0.0.1:1/0 is unreachable")
    assert out.stdout.count("\n") == 1 and "Traceback" not in out.stderr and "pw@" not in out.stdout


def test_persistence_check_reads_config(rt: Runtime) -> None:
    c = health.persistence_check(rt.redis)
    assert c.status in ("OK", "WARNING")
    assert c.to_json()["maxmemory_policy"]


# --- notifications ---------------------------------------------------------------------------


@dataclass
class Hook:
    """A local Slack-compatible webhook that records posts."""

    port: int
    posts: list[str] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.posts.append(body["text"])
            self.send_response(state.status)
            self.end_headers()

        def log_message(self, *_a: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()


def _workers_posts(h: Hook) -> list[str]:
    return [p for p in h.posts if " workers " in p]


def test_notify_cooldown_and_resolve(rt: Runtime, hook: Hook) -> None:
    settings = replace(rt.settings, alert_webhook_url=f"http://127.0.0.1:{hook.port}/hook", alert_cooldown_s=60)
    host_a, host_b = Runtime(settings), Runtime(settings)
    health.notify(host_a, health.run(host_a))  # baseline: a persistence warning may fire here
    hook.posts.clear()
    job = enqueue(rt, "email", "send-email", EMAIL)
    for host in (host_a, host_b, host_a):
        health.notify(host, health.run(host))
    assert len(_workers_posts(hook)) == 1 and _workers_posts(hook)[0].startswith("[jobctl] CRITICAL workers")
    assert rt.redis.ttl(keys.alert("workers.critical")) <= 60
    control.cancel_job(rt, job.id)
    for host in (host_a, host_b):
        health.notify(host, health.run(host))
    assert len(_workers_posts(hook)) == 2 and _workers_posts(hook)[1].startswith("[jobctl] RESOLVED workers")
    enqueue(rt, "email", "send-email", EMAIL)  # a new occurrence after resolve alerts at once
    health.notify(host_a, health.run(host_a))
    assert len(_workers_posts(hook)) == 3


def test_failed_post_is_retried_next_run(rt: Runtime, hook: Hook) -> None:
    settings = replace(rt.settings, alert_webhook_url=f"http://127.0.0.1:{hook.port}/hook")
    host = Runtime(settings)
    enqueue(rt, "email", "send-email", EMAIL)
    hook.status = 500
    sent = [s for s in health.notify(host, health.run(host)) if s.name == "workers"]
    assert sent and sent[0].error == "alert webhook answered HTTP 500"
    hook.status = 200
    sent = [s for s in health.notify(host, health.run(host)) if s.name == "workers"]
    assert sent and sent[0].error is None
    assert len(_workers_posts(hook)) == 2


def test_no_resolved_without_a_fired_alert(rt: Runtime, hook: Hook) -> None:
    host = Runtime(replace(rt.settings, alert_webhook_url=f"http://127.0.0.1:{hook.port}/hook"))
    health.notify(host, health.run(host))
    assert not any("RESOLVED" in p for p in hook.posts)


def test_health_without_notify_writes_nothing(rt: Runtime) -> None:
    enqueue(rt, "email", "send-email", EMAIL)
    before = set(rt.redis.keys("*"))
    health.run(rt)
    assert set(rt.redis.keys("*")) == before


def test_thresholds_are_per_queue(rt: Runtime, tmp_path: Any) -> None:
    from jobctl import config

    (tmp_path / "jobctl.toml").write_text("[queues.email]\nbacklog_alert = 10\nfailed_alert = 0\n")
    tuned = Runtime(config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path, redis_url=rt.settings.redis_url))
    assert statuses(tuned, q("email", waiting=11))["backlog"] == "WARNING"
    assert statuses(tuned, q("push", waiting=11))["backlog"] == "OK"
    assert statuses(tuned, q("email", failed_1h=1))["failures"] == "WARNING"
