"""`jobctl stats`, `health` and `metrics` through the CLI: exit codes and output."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from typer.testing import CliRunner

from jobctl import keys
from jobctl.cli import app
from jobctl.producer import enqueue
from jobctl.runtime import Runtime

EMAIL = {"to": "a@example.com", "subject": "Hi", "template": "welcome", "data": {"name": "A"}, "lang": "en"}
FIELDS = ["name", "waiting", "active", "delayed", "completed_1h", "failed_1h", "avg_ms_1h", "oldest_waiting_s",
          "workers", "paused", "dead_letters"]


def invoke(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def test_stats_json(rt: Runtime, cli_env: dict[str, str]) -> None:
    enqueue(rt, "email", "send-email", EMAIL)
    res = invoke(cli_env, "stats", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["generated_at"].endswith("Z")
    assert [q["name"] for q in doc["queues"]] == rt.settings.queues.names()
    email = doc["queues"][0]
    assert list(email)[:len(FIELDS)] == FIELDS
    assert (email["waiting"], email["workers"], email["paused"], email["avg_ms_1h"]) == (1, 0, False, None)
    assert 0 <= email["oldest_waiting_s"] < 60


def test_stats_named_queues_and_unknown_queue(cli_env: dict[str, str]) -> None:
    res = invoke(cli_env, "stats", "--json", "push", "email")
    assert [q["name"] for q in json.loads(res.stdout)["queues"]] == ["push", "email"]
    out = subprocess.run([".venv/bin/jobctl", "stats", "nope"], env=cli_env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2 and "unknown queue 'nope'; known queues: email" in out.stderr


def test_stats_table_flags_rows(rt: Runtime, cli_env: dict[str, str]) -> None:
    enqueue(rt, "email", "send-email", EMAIL)
    rt.redis.hset(keys.worker("p"), mapping={"queues": "push", "concurrency": 5, "processes": 2})
    rt.redis.zadd(keys.workers(), {"p": 1})
    res = invoke(cli_env, "stats")
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    email = next(line for line in lines if "│ email" in line)
    push = next(line for line in lines if "│ push" in line)
    assert "no workers" in email and "\x1b[" not in res.stdout
    assert [c.strip() for c in push.split("│")[1:-1]] == ["push", "0", "0", "0", "0", "0", "—", "—", "—", "—", "2",
                                                          "no", "0", ""]


def test_stats_watch_ends_on_ctrl_c(rt: Runtime, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def sleep(_s: float) -> None:
        calls.append(_s)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("jobctl.commands.stats.time.sleep", sleep)
    res = invoke(cli_env, "stats", "--watch", "--interval", "0.5")
    assert res.exit_code == 0 and calls == [0.5, 0.5]
    assert "email" in res.stdout


def test_stats_redis_down(cli_env: dict[str, str]) -> None:
    env = cli_env | {"JOBCTL_REDIS_URL": "redis://127.0.0.1:1/0"}
    out = subprocess.run([".venv/bin/jobctl", "stats"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 4 and "unreachable" in out.stderr and "Traceback" not in out.stderr


def test_metrics_once(rt: Runtime, cli_env: dict[str, str]) -> None:
    enqueue(rt, "email", "send-email", EMAIL)
    res = invoke(cli_env, "metrics")
    assert res.exit_code == 0
    assert 'jobctl_queue_waiting{queue="email"} 1.0' in res.stdout.splitlines()


def test_metrics_bad_listen(cli_env: dict[str, str]) -> None:
    out = subprocess.run([".venv/bin/jobctl", "metrics", "--listen", "nohost"], env=cli_env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and "HOST:PORT" in out.stderr


def test_health_human_output(rt: Runtime, cli_env: dict[str, str]) -> None:
    res = invoke(cli_env, "health")
    assert res.exit_code in (0, 1)
    assert "Health:" in res.stdout and "redis" in res.stdout
