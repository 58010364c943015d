"""Progress bars of long commands (issue 13): drawn in a pseudo-terminal, absent when stdout is not a
terminal or with --json; the commands' output stays exactly what it was."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobctl import deadletter as dl
from jobctl import keys
from jobctl.errors import PermanentFailure
from jobctl.producer import enqueue, enqueue_many
from jobctl.runtime import Runtime
from jobctl.worker import Runner
from tests.support import cli
from tests.support.cli import jobctl

PAYLOAD = {"userId": "u1", "originalPath": "in/a.jpg", "targetPath": "out/a.jpg", "maxWidth": 100,
           "maxHeight": 100, "quality": 80}
EMAIL = {"to": "a@example.com", "subject": "Hi", "template": "welcome", "data": {"name": "A"}, "lang": "en"}


def refuse(_payload: object, _ctx: object) -> None:
    """Fails at once."""
    raise PermanentFailure("no")


def seed(rt: Runtime, n: int) -> list[int]:
    """n recorded dead letters, oldest first."""
    now = datetime.now(UTC)
    store = dl.store_for(rt)
    return [store.record(dl.Failure("image-processing", "process-image", f"j-{uuid.uuid4().hex[:8]}", PAYLOAD,
                                    "RuntimeError: boom", None, 1, now - timedelta(seconds=n - i)))[0]
            for i in range(n)]


def in_pty(env: dict[str, str], *args: str, stdout_is_tty: bool = True) -> tuple[int, str, str]:
    """jobctl on a 120x40 pseudo-terminal, its own size (no COLUMNS or LINES)."""
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")} | {"TERM": "xterm-256color"}
    return cli.in_pty(env, *args, stdout_is_tty=stdout_is_tty)


def test_long_commands_are_silent_when_stdout_is_not_a_terminal(env: dict[str, str], rt: Runtime) -> None:
    ids = seed(rt, 3)
    enqueue_many(rt, "email", "send-email", [EMAIL] * 3)
    r = jobctl(env, "dlq", "export")
    assert r.returncode == 0 and r.stderr == "" and [json.loads(x)["id"] for x in r.stdout.splitlines()] == ids
    r = jobctl(env, "dlq", "sync")
    assert (r.returncode, r.stdout, r.stderr) == (0, "recorded 0 new dead letter(s)\n", "")
    r = jobctl(env, "queues", "empty", "email", "--yes")
    assert (r.returncode, r.stdout, r.stderr) == (0, "removed 3 waiting job(s) from email\n", "")
    r = jobctl(env, "dlq", "replay", str(ids[0]))
    assert r.returncode == 0 and r.stderr == "" and "replaying" not in r.stdout and "replayed" in r.stdout
    r = jobctl(env, "dlq", "purge", "--all", "--yes")
    assert (r.returncode, r.stdout, r.stderr) == (0, "purged 2 dead letter(s)\n", "")


def test_no_bar_on_a_terminal_stderr_when_stdout_is_piped(env: dict[str, str], rt: Runtime) -> None:
    seed(rt, 5)
    rc, screen, piped = in_pty(env, "dlq", "replay", "--all", "--rate", "50/s", stdout_is_tty=False)
    assert rc == 0 and screen == "" and "replayed" in piped


def test_replay_draws_a_bar_on_a_terminal_and_none_with_json(env: dict[str, str], rt: Runtime) -> None:
    seed(rt, 12)
    rc, screen, _ = in_pty(env, "dlq", "replay", "--all", "--rate", "20/s")  # about 0.6 s: the bar redraws
    assert rc == 0, screen
    assert "replaying" in screen and "12/12" in screen
    assert "Replay" in screen  # the result table follows the (transient) bar
    seed(rt, 2)
    rc, screen, _ = in_pty(env, "dlq", "replay", "--all", "--json")
    assert rc == 0 and "replaying" not in screen
    assert json.loads(screen.replace("\r\n", "\n"))["replayed"] == 2


def test_queues_empty_export_and_sync_draw_bars_on_a_terminal(env: dict[str, str], rt: Runtime) -> None:
    enqueue_many(rt, "email", "send-email", [EMAIL] * 2500)
    rc, screen, _ = in_pty(env, "queues", "empty", "email", "--yes")
    assert rc == 0 and "emptying email" in screen and "2500/2500" in screen
    assert "removed 2500 waiting job(s) from email" in screen
    assert rt.redis.llen(keys.queue_list("email")) == 0
    seed(rt, 3)
    rc, screen, _ = in_pty(env, "dlq", "export")
    assert rc == 0 and "exporting" in screen and "3/3" in screen
    for _ in range(4):  # failures only in RQ's failed registry (no hook ran), for sync to record
        enqueue(rt, "image-processing", "process-image", PAYLOAD)
    Runner(rt, ["image-processing"], processors={"process-image": refuse}, services=object()).work(burst=True)
    rc, screen, _ = in_pty(env, "dlq", "sync")
    assert rc == 0 and "recording" in screen and "4/4" in screen and "recorded 4 new dead letter(s)" in screen


def test_enqueue_file_draws_the_same_bar_on_a_terminal_only(env: dict[str, str], rt: Runtime,
                                                            tmp_path: Path) -> None:
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("".join(json.dumps(EMAIL) + "\n" for _ in range(3000)))
    rc, screen, _ = in_pty(env, "enqueue", "email", "send-email", "--file", str(lines))
    assert rc == 0 and "enqueueing" in screen and "3000/3000" in screen, screen[-500:]
    assert "enqueued 3000 send-email job(s) on email" in screen
    rc, screen, piped = in_pty(env, "enqueue", "email", "send-email", "--file", str(lines), stdout_is_tty=False)
    assert rc == 0 and screen == "" and piped == "enqueued 3000 send-email job(s) on email\n"
    assert rt.redis.llen(keys.queue_list("email")) == 6000
