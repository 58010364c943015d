"""Bad entries in `jobctl:schedules`, written by a real Redis client, against the real CLI and the real
`jobctl scheduler` process: each is skipped with one log line and listed as invalid; the others fire."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from jobctl import keys
from tests.support.cli import jobctl

ROOT = Path(__file__).resolve().parents[1]
# every second, so the real scheduler fires it within the test
GOOD = {"name": "good", "every_s": 1, "queue": "data-cleanup", "job": "cleanup-temp-files"}
BAD = {
    "notjson": "not json",
    "shape": '{"x": 1}',
    "alist": "[1, 2]",
    "badtype": json.dumps({"name": "badtype", "every_s": "300", "command": "health"}),
    "unknowncmd": json.dumps({"name": "unknowncmd", "every_s": 60, "command": "rm -rf"}),
    "zero": json.dumps({"name": "zero", "every_s": 0, "command": "health"}),
    "negative": json.dumps({"name": "negative", "every_s": -5, "command": "health"}),
    "badcron": json.dumps({"name": "badcron", "cron": "61 * * * *", "command": "health"}),
    "never": json.dumps({"name": "never", "cron": "0 0 31 2 *", "command": "health"}),
    "badtemplate": json.dumps({"name": "badtemplate", "every_s": 60, "queue": "data-cleanup",
                               "job": "cleanup-temp-files", "job_id": "{nope}"}),
    "badpayload": json.dumps({"name": "badpayload", "every_s": 60, "queue": "data-cleanup",
                              "job": "cleanup-temp-files", "payload": []}),
    "esc\x1b[2J": "not json either",
}
REASONS = {
    "notjson": "not JSON (Expecting value: line 1 column 1 (char 0))",
    "shape": "no 'name' field",
    "alist": "not a JSON object but list",
    "badtype": "field 'every_s' is str, not an integer or null",
    "unknowncmd": "command must be one of health, without a job",
    "zero": "interval must be a whole number of seconds >= 1",
    "negative": "interval must be a whole number of seconds >= 1",
    "badcron": "invalid cron string '61 * * * *' (five fields, UTC)",
    "never": "cron string '0 0 31 2 *' never falls due (or not within this calendar)",
    "badtemplate": "invalid job_id template '{nope}' (fields: {name}, {date}, {stamp})",
    "badpayload": "field 'payload' is list, not an object",
    "esc\x1b[2J": "not JSON (Expecting value: line 1 column 1 (char 0))",
}


run = jobctl  # the installed script, output captured


def write_garbage(client: redis.Redis) -> None:
    client.hset(keys.schedules(), mapping={"good": json.dumps(GOOD), **BAD})


def test_list_marks_each_bad_entry_invalid_with_its_reason(cli_env: dict[str, str], client: redis.Redis) -> None:
    write_garbage(client)
    out = run(cli_env, "schedule", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert sorted(rows) == sorted(["good", *BAD])
    good = rows["good"]
    assert good["valid"] is True and good["every_s"] == 1 and good["next_run"].endswith("Z")
    assert "error" not in good
    for name, reason in REASONS.items():
        assert rows[name]["valid"] is False and rows[name]["error"] == reason, name
        assert rows[name]["next_run"] is None and rows[name]["raw"] == BAD[name]
        assert set(rows[name]) >= set(good) - {"valid"}  # the same field names as a valid row

    table = run(cli_env, "schedule", "list")
    assert table.returncode == 0 and table.stderr == ""
    assert "\x1b" not in table.stdout and "esc\\x1b[2J" in table.stdout
    lines = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if line.startswith("│")}
    assert "invalid, skipped" in lines["zero"] and "interval must be a whole number" in lines["zero"]
    assert "every 1s" in lines["good"] and "cleanup-temp-files on data-cleanup" in lines["good"]


def test_install_repairs_a_bad_default_entry_and_keeps_the_others(cli_env: dict[str, str],
                                                                    client: redis.Redis) -> None:
    client.hset(keys.schedules(), mapping={"health": "not json", "shape": '{"x": 1}'})
    out = run(cli_env, "schedule", "install")
    assert out.returncode == 0, out.stderr
    assert "health: updated" in out.stdout.splitlines()
    assert json.loads(client.hget(keys.schedules(), "health") or b"")["every_s"] == 300
    assert client.hget(keys.schedules(), "shape") == b'{"x": 1}'  # not ours to delete: still listed invalid


def test_real_scheduler_keeps_firing_the_good_schedule_and_logs_each_bad_entry_once(
        cli_env: dict[str, str], client: redis.Redis) -> None:
    write_garbage(client)
    proc = subprocess.Popen([sys.executable, "-m", "jobctl", "scheduler"], env=cli_env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while client.llen(keys.queue_list("data-cleanup")) < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert client.llen(keys.queue_list("data-cleanup")) >= 3  # three ticks, one run each
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "\x1b" not in stderr
    ids = [i.decode() for i in client.lrange(keys.queue_list("data-cleanup"), 0, -1)]
    assert all(i.startswith("good-") for i in ids) and len(set(ids)) == len(ids)
    for name, reason in REASONS.items():
        shown = name.replace("\x1b", "\\x1b")
        assert stderr.count(f"schedule {shown} skipped: {reason}\n") == 1, (name, stderr)


def test_schedules_key_of_the_wrong_type(cli_env: dict[str, str], client: redis.Redis) -> None:
    client.set(keys.schedules(), "oops")
    listed = run(cli_env, "schedule", "list")
    assert (listed.returncode, listed.stdout) == (1, "")
    assert listed.stderr == (f"error: {keys.schedules()} is a string, not a hash: no schedule can be read; "
                             "delete it and run `jobctl schedule install`\n")
    for args in (["schedule", "install"], ["schedule", "remove", "--all"]):
        out = run(cli_env, *args)
        assert (out.returncode, out.stderr) == (1, listed.stderr), args
    proc = subprocess.Popen([sys.executable, "-m", "jobctl", "scheduler"], env=cli_env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert proc.poll() is None
        client.delete(keys.schedules())
        client.hset(keys.schedules(), "good", json.dumps(GOOD))  # repaired: picked up within its 5 s retry
        deadline = time.monotonic() + 20
        while not client.llen(keys.queue_list("data-cleanup")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.llen(keys.queue_list("data-cleanup")) >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in stderr
    assert stderr.count("is a string, not a hash: no schedule can be read") == 1, stderr
