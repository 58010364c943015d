"""The CLI as a user runs it: exit codes, exact messages, no tracebacks, completions."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EMAIL = '{"to":"ana@example.com","subject":"Hi","template":"welcome","data":{"name":"Ana"}}'


def run(env: dict[str, str], *args: str, stdin: str | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobctl", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_help_and_version_need_no_redis(cli_env: dict[str, str]) -> None:
    env = cli_env | {"JOBCTL_REDIS_URL": "redis://127.0.0.1:1/0"}
    assert run(env, "--version").stdout == "jobctl 0.1.0\n"
    out = run(env, "--help")
    assert out.returncode == 0 and "enqueue" in out.stdout and "dlq" in out.stdout


def test_enqueue_prints_id_and_json(cli_env: dict[str, str]) -> None:
    out = run(cli_env, "enqueue", "email", "send-email", "--data", EMAIL)
    assert out.returncode == 0 and len(out.stdout.strip()) == 36 and out.stderr == ""
    out = run(cli_env, "enqueue", "email", "send-email", "--data", EMAIL, "--job-id", "welcome-ana", "--json")
    assert json.loads(out.stdout) == {"id": "welcome-ana", "queue": "email", "job": "send-email", "status": "queued"}
    again = run(cli_env, "enqueue", "email", "send-email", "--data", EMAIL, "--job-id", "welcome-ana", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "duplicate"
    later = run(cli_env, "enqueue", "push", "send-push", "--set", "userId=u1", "--set", "title=T",
                "--set", "message=M", "--delay", "5m", "--json")
    assert json.loads(later.stdout)["status"] == "scheduled"


def test_enqueue_from_stdin_and_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert run(cli_env, "enqueue", "email", "send-email", "--data", "-", stdin=EMAIL).returncode == 0
    good = tmp_path / "jobs.jsonl"
    good.write_text("\n".join([EMAIL] * 3) + "\n")
    out = run(cli_env, "enqueue", "email", "send-email", "--file", str(good), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["count"] == 3


@pytest.mark.parametrize(("args", "code", "message"), [
    (["enqueue", "mail", "send-email", "--data", EMAIL], 2,
     "error: unknown queue 'mail'; known queues: email, push, webhook-retry, image-processing, data-cleanup"),
    (["enqueue", "email", "send-fax", "--data", EMAIL], 2,
     "error: unknown job 'send-fax' for queue 'email'; known jobs: send-email"),
    (["enqueue", "email", "send-email", "--data", "{not json"], 2,
     "error: invalid JSON in --data: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    (["enqueue", "email", "send-email", "--data", '{"to":"x","subject":"s","template":"welcome"}'], 2,
     "error: invalid payload for send-email: to: value is not a valid email address: An email address must have "
     "an @-sign."),
    (["enqueue", "email", "send-email", "--data", EMAIL, "--delay", "soon"], 2,
     "error: invalid --delay 'soon': use a number with s, m, h or d (e.g. 30s, 5m, 2h)"),
    (["enqueue", "email", "send-email", "--data", EMAIL, "--at", "tomorrow"], 2,
     "error: invalid time 'tomorrow': use ISO-8601, e.g. 2026-01-31T02:00:00Z"),
    (["enqueue", "email", "send-email", "--data", "@/nonexistent.json"], 2,
     "error: cannot read /nonexistent.json: No such file or directory"),
    (["jobs", "show", "nope"], 3, "error: no job 'nope' (finished jobs are kept 1 hour)"),
    (["work"], 2, "error: name at least one queue or use --all; known queues: email, push, webhook-retry, "
     "image-processing, data-cleanup"),
    (["queues", "empty", "push"], 2, "error: emptying push deletes its waiting jobs; add --yes to confirm"),
])
def test_bad_input_is_one_line_and_an_exit_code(cli_env: dict[str, str], args: list[str], code: int,
                                                message: str) -> None:
    out = run(cli_env, *args)
    assert (out.returncode, out.stderr.strip()) == (code, message)
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_priority_out_of_range_is_usage_error(cli_env: dict[str, str]) -> None:
    out = run(cli_env, "enqueue", "email", "send-email", "--data", EMAIL, "--priority", "11")
    assert out.returncode == 2
    assert out.stderr == "error: Invalid value for '--priority': Input should be less than or equal to 10 " \
                         "(see: python -m jobctl enqueue --help)\n"


def test_bulk_file_with_bad_lines_writes_nothing(cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "jobs.jsonl"
    bad.write_text(f'{EMAIL}\n{{"to":"nope","subject":"s","template":"welcome"}}\n{EMAIL}\n{{oops\n')
    out = run(cli_env, "enqueue", "email", "send-email", "--file", str(bad))
    assert out.returncode == 2
    assert out.stderr.strip() == "error: 1 invalid line(s), nothing enqueued: line 4: invalid JSON (Expecting " \
                                 "property name enclosed in double quotes)"
    bad.write_text(f'{EMAIL}\n{{"to":"nope","subject":"s","template":"welcome"}}\n')
    out = run(cli_env, "enqueue", "email", "send-email", "--file", str(bad))
    assert out.returncode == 2 and out.stderr.startswith("error: 1 invalid line(s), nothing enqueued: line 2: to:")
    stats = json.loads(run(cli_env, "stats", "email", "--json").stdout)
    assert stats["queues"][0]["waiting"] == 0


def test_invalid_config_file_is_exit_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "jobctl.toml"
    cfg.write_text("[queues.push]\nconcurrency = -1\n")
    out = run(cli_env, "--config", str(cfg), "queues")
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {cfg}: [queues.push]: concurrency must be an integer from 1 to 1000, got -1"


def test_redis_down_is_exit_4_fast_with_password_masked(cli_env: dict[str, str]) -> None:
    env = cli_env | {"JOBCTL_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}
    t0 = time.time()
    out = run(env, "enqueue", "email", "send-email", "--data", EMAIL)
    assert time.time() - t0 < 5
    assert out.returncode == 4 and "hunter2" not in out.stderr + out.stdout
    assert out.stderr.startswith("error: Redis at redis://:****@127.0.0.1:1/0 is unreachable")
    assert "Traceback" not in out.stderr


def test_queues_list_json_and_config_show_masks(cli_env: dict[str, str]) -> None:
    env = cli_env | {"JOBCTL_ONESIGNAL_API_KEY": "os-secret-key", "JOBCTL_SMTP_URL": "smtp://u:pw@mail:587"}
    queues = json.loads(run(env, "queues", "list", "--json").stdout)
    assert [q["name"] for q in queues][:2] == ["email", "push"] and queues[1]["rate_limit"] == "30/s"
    shown = run(env, "config", "show", "--json")
    doc = json.loads(shown.stdout)
    assert doc["onesignal_api_key"] == "****" and doc["smtp_url"] == "smtp://u:****@mail:587"
    assert "os-secret-key" not in shown.stdout and ":pw@" not in shown.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completions_are_current(cli_env: dict[str, str], shell: str) -> None:
    script = Path(sys.executable).parent / "jobctl"  # the installed console script, as users run it
    env = cli_env | {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}  # else Typer prints the current shell's
    out = subprocess.run([str(script), "--show-completion", shell], env=env, capture_output=True, text=True)
    assert out.returncode == 0
    assert (ROOT / "completions" / f"jobctl.{shell}").read_text() == out.stdout, \
        f"stale: regenerate completions/jobctl.{shell} as the README says"


def test_completion_offers_the_commands(cli_env: dict[str, str]) -> None:
    env = cli_env | {"_JOBCTL_COMPLETE": "complete_bash", "COMP_WORDS": "jobctl dl", "COMP_CWORD": "1"}
    out = subprocess.run([str(Path(sys.executable).parent / "jobctl")], env=env, capture_output=True, text=True)
    assert "dlq" in out.stdout.split()


def test_demo_runs_every_job_kind_to_completion(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = run(cli_env, "demo", timeout=120)
    assert out.returncode == 0, out.stderr
    for job in ("send-email", "send-push", "process-image", "retry-webhook", "cleanup-audit-logs",
                "cleanup-notifications", "cleanup-temp-files"):
        assert f"{job} (finished)" in out.stdout
    assert "1 delivery(ies), 1 signature(s) verified" in out.stdout
    data = Path(cli_env["JOBCTL_DATA_DIR"])
    assert len(list((data / "outbox" / "email").glob("*.eml"))) == 1
    assert (data / "storage" / "thumbs" / "demo" / "photo.jpg").is_file()


def test_bulk_enqueue_refused_midway_says_how_many_landed(rt: Any, tmp_path: Path) -> None:
    from jobctl import keys
    from jobctl.errors import OperationFailed
    from jobctl.producer import BATCH, enqueue_many

    rt.redis.set(keys.marker("push"), "not a sorted set")  # the second command of every batch now fails
    payload = {"userId": "u", "title": "t", "message": "m"}
    expected = r"^Redis refused a batch .*WRONGTYPE.*; 0 of 3 job\(s\) were enqueued before that batch$"
    with pytest.raises(OperationFailed, match=expected):
        enqueue_many(rt, "push", "send-push", [payload] * 3)
    assert BATCH >= 3
