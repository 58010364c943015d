"""Values from Redis and the dead-letter store reach the terminal escaped (`printable`), never as raw
control characters or Rich markup; `--json` keeps them exact. Garbage in a job hash never crashes
`jobs show`, and its `--json` fields keep their documented types. Data is written by a real Redis client."""

from __future__ import annotations

import json

import redis

from jobctl import keys
from tests.support.cli import jobctl

ESC_JOB = "j\x1b[31m"
BEL_QUEUE = "q\x07[bold]x[/]"  # BEL, and Rich markup that must not be interpreted
ERROR = "boom\x1b]0;pwned\x07\x1b[2J\rforged line"
CONTROL = ("\x1b", "\x07", "\r", "\x9b")


run = jobctl  # the installed script, output captured


def rows(table: str) -> dict[str, str]:
    """field -> value of a two-column Rich table."""
    out = {}
    for line in table.splitlines():
        cells = line.split("│")
        if len(cells) == 4:
            out[cells[1].strip()] = cells[2].strip()
    return out


def test_jobs_show_escapes_control_characters_and_json_keeps_them(cli_env: dict[str, str],
                                                                 client: redis.Redis) -> None:
    client.hset(keys.job("X"), mapping={"jc_job": ESC_JOB, "jc_queue": BEL_QUEUE, "status": "queued\x9b",
                                        "jc_error": ERROR, "data": '["send-email",null,[{"to":"a\\u001bb"}],{}]'})
    shown = run(cli_env, "jobs", "show", "X")
    assert shown.returncode == 0 and shown.stderr == ""
    assert not any(c in shown.stdout for c in CONTROL), repr(shown.stdout)
    fields = rows(shown.stdout)
    assert fields["job"] == "j\\x1b[31m"
    assert fields["queue"] == "q\\x07[bold]x[/]"
    assert fields["status"] == "queued\\x9b"
    assert fields["error"] == "boom\\x1b]0;pwned\\x07\\x1b[2J\\rforged line"
    assert fields["data"] == '{"to": "a\\u001bb"}'  # JSON text already escapes it
    doc = json.loads(run(cli_env, "jobs", "show", "X", "--json").stdout)
    assert (doc["job"], doc["queue"], doc["status"], doc["error"]) == (ESC_JOB, BEL_QUEUE, "queued\x9b", ERROR)
    assert doc["data"] == {"to": "a\x1bb"}


def test_a_traceback_keeps_its_lines_inside_the_table(cli_env: dict[str, str], client: redis.Redis) -> None:
    client.hset(keys.job("T"), mapping={"jc_job": "send-email", "status": "failed",
                                        "jc_error": "Traceback\n  File \x1b[1mx\nValueError: bad"})
    shown = run(cli_env, "jobs", "show", "T").stdout
    assert "\x1b" not in shown
    lines = [line for line in shown.splitlines() if "Traceback" in line or "File" in line or "ValueError" in line]
    assert [line.split("│")[2].strip() for line in lines] == ["Traceback", "File \\x1b[1mx", "ValueError: bad"]


def test_jobs_show_garbage_fields_never_crash_and_keep_their_types(cli_env: dict[str, str],
                                                                  client: redis.Redis) -> None:
    client.hset(keys.job("G"), mapping={
        "jc_job": "send-email", "jc_queue": "email", "status": "weird", "enqueued_at": "not a date",
        "started_at": b"\xff\xfe", "ended_at": "2026-12-01T10:00:00+02:00", "jc_priority": "urgent",
        "jc_attempt": "-3", "jc_max": "x", "jc_progress": "150", "result": "{not json", "data": "garbage"})
    doc = json.loads(run(cli_env, "jobs", "show", "G", "--json").stdout)
    assert doc["status"] == "weird"  # a string, shown as stored
    assert (doc["enqueued_at"], doc["started_at"]) == (None, None)  # a time field is ISO-8601 UTC or null
    assert doc["ended_at"] == "2026-12-01T08:00:00Z"
    assert (doc["priority"], doc["attempts"], doc["max_attempts"], doc["progress"]) == (None, 0, 1, None)
    assert (doc["result"], doc["data"]) == ("{not json", {})
    assert doc["unparsed"] == {"enqueued_at": "not a date", "started_at": "\ufffd\ufffd", "priority": "urgent",
                               "attempts": "-3", "max_attempts": "x", "progress": "150"}
    shown = run(cli_env, "jobs", "show", "G")
    assert shown.returncode == 0 and shown.stderr == ""
    fields = rows(shown.stdout)
    assert fields["enqueued_at"] == "not a date (stored value, not a time)"
    assert fields["progress"] == "150 (stored value, not a percentage 0-100)"
    assert fields["priority"] == "urgent (stored value, not a priority 1-10)"
    assert fields["status"] == "weird" and fields["ended_at"] == "2026-12-01T08:00:00Z"


def test_dead_letter_tables_escape_what_the_store_holds(cli_env: dict[str, str], client: redis.Redis) -> None:
    client.hset(keys.job("F"), mapping={"jc_queue": "email", "jc_job": "send-email", "status": "failed",
                                        "jc_error": ERROR, "origin": "email", "ended_at": "2026-12-01T10:00:00.000000Z",
                                        "data": '["send-email",null,[{"to":"a@b.c"}],{}]',
                                        "jc_traceback": 'Traceback (most recent call last):\n  File "x\x1b[2J"\n'
                                                        'RuntimeError: bad\x07'})
    client.zadd("rq:failed:email", {"F": 9999999999})  # RQ's failed registry, as RQ writes it
    assert run(cli_env, "dlq", "sync").returncode == 0
    shown = run(cli_env, "dlq", "show", "1").stdout.splitlines()  # the traceback below the table: its own lines
    assert shown[-3:] == ["Traceback (most recent call last):", '  File "x\\x1b[2J"', "RuntimeError: bad\\x07"]
    for args in (["dlq", "list"], ["dlq", "show", "1"]):
        out = run(cli_env, *args)
        assert out.returncode == 0, out.stderr
        assert not any(c in out.stdout for c in CONTROL), (args, repr(out.stdout))
        assert "boom\\x1b]0;pwned\\x07\\x1b[2J\\rforged line" in out.stdout.replace("│", "")
    assert json.loads(run(cli_env, "dlq", "list", "--json").stdout)[0]["error"] == ERROR


def test_rich_markup_and_controls_in_a_schedule_name(cli_env: dict[str, str], client: redis.Redis) -> None:
    client.hset(keys.schedules(), "[red]x[/red]\x07", "not json")
    out = run(cli_env, "schedule", "list")
    assert out.returncode == 0, out.stderr
    assert "[red]x[/red]\\x07" in out.stdout and "\x07" not in out.stdout
    removed = run(cli_env, "schedule", "remove", "--all")
    assert removed.stdout == "removed 1 schedule(s): [red]x[/red]\\x07\n"
