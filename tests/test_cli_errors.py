"""Issue 12: errors a user or a hostile input hits first, through the installed `jobctl` script.

Each is one line on stderr with the documented exit code, no traceback, nothing written, and no
control character or credential reaching the terminal.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobctl import runtime
from tests.support.cli import JOBCTL, jobctl

EMAIL = {"to": "ana@example.com", "subject": "Hi", "template": "welcome"}
HOOK = '{"eventId":"e","eventType":"t","eventData":{}}'


class SilentRedis:
    """A TCP listener that accepts connections and never answers; it records how long each client
    waited before hanging up (accept to EOF), which is what the client's timeouts decide."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.waits: list[float] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(conn, time.monotonic()), daemon=True).start()

    def _hold(self, conn: socket.socket, since: float) -> None:
        with conn:
            try:
                while conn.recv(4096):  # read whatever is sent, answer nothing
                    pass
            except OSError:
                pass
            self.waits.append(time.monotonic() - since)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[SilentRedis]:
    server = SilentRedis()
    yield server
    server.close()


def written(redis_url: str) -> list[bytes]:
    """Every key in the test database (none may be written by a refused command)."""
    return list(redis.Redis.from_url(redis_url).scan_iter())


SILENT_COMMANDS = [
    ["enqueue", "webhook-retry", "retry-webhook", "--data", HOOK],
    ["enqueue", "webhook-retry", "retry-webhook", "--file", "JSONL"],
    ["stats"], ["stats", "--json"], ["workers"], ["jobs", "show", "x"], ["queues", "pause", "email"],
    ["schedule", "list"], ["work", "--burst", "email"], ["cleanup"],
]


@pytest.mark.parametrize("args", SILENT_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_redis_that_never_answers_is_exit_4_within_seconds(cli_env: dict[str, str], silent: SilentRedis,
                                                              args: list[str], tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{silent.port}/0"
    (tmp_path / "jobs.jsonl").write_text(HOOK + "\n")
    jsonl = str(tmp_path / "jobs.jsonl")
    out = jobctl(cli_env | {"JOBCTL_REDIS_URL": url}, *(jsonl if a == "JSONL" else a for a in args))
    assert (out.returncode, out.stderr) == (4, f"error: Redis at {url} is unreachable (Timeout reading from socket)\n")
    assert out.stdout == ""
    # the client hung up on its own after its first-answer timeout (10 s before the fix), not at exit
    assert silent.waits and max(silent.waits) < 4.0
    assert runtime.CONNECT_TIMEOUT_S + runtime.FIRST_ANSWER_S <= 5.0  # a black-holed host: connect, then answer


def test_health_on_a_redis_that_never_answers_is_critical_within_seconds(cli_env: dict[str, str],
                                                                         silent: SilentRedis) -> None:
    url = f"redis://127.0.0.1:{silent.port}/0"
    out = jobctl(cli_env | {"JOBCTL_REDIS_URL": url}, "health")
    assert out.returncode == 2
    assert out.stdout == f"CRITICAL: Redis at {url} is unreachable (Timeout reading from socket)\n"
    assert silent.waits and max(silent.waits) < 4.0
    doc = json.loads(jobctl(cli_env | {"JOBCTL_REDIS_URL": url}, "health", "--json").stdout)
    assert doc["status"] == "CRITICAL" and doc["checks"][0]["name"] == "redis"


class HttpServer(SilentRedis):
    """A listener that answers every connection as an HTTP server does (another service on the port)."""

    def _hold(self, conn: socket.socket, since: float) -> None:
        with conn:
            try:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/html\r\n\r\n<html></html>\r\n")
            except OSError:
                pass


@pytest.mark.parametrize("args", [["stats"], ["stats", "--json"], ["enqueue", "webhook-retry", "retry-webhook",
                                                                  "--data", HOOK], ["jobs", "show", "x"],
                                  ["work", "--burst", "email"]], ids=lambda a: " ".join(a[:2]))
def test_a_server_that_is_not_redis_is_exit_4_in_one_line(cli_env: dict[str, str], args: list[str]) -> None:
    server = HttpServer()
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        out = jobctl(cli_env | {"JOBCTL_REDIS_URL": url}, *args)
        assert (out.returncode, out.stdout) == (4, "")
        assert out.stderr == (f"error: the server at {url} does not speak the Redis protocol "
                              f"(Protocol error, got \"H\" as reply type byte)\n")
        health = jobctl(cli_env | {"JOBCTL_REDIS_URL": url}, "health")
        assert health.returncode == 2 and health.stdout.startswith("CRITICAL: the server at ")
    finally:
        server.close()


def test_a_database_the_server_does_not_have_is_an_input_error(cli_env: dict[str, str], redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/99"
    out = jobctl(cli_env | {"JOBCTL_REDIS_URL": url}, "stats")
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (f"error: invalid Redis URL {url}: the server has no such database "
                          "(DB index is out of range)\n")


@pytest.mark.parametrize("url", [
    "redis://user:RedisPw-Zq7x9#frag@127.0.0.1:6379/0",
    "redis://user:RedisPw/Zq7x9@127.0.0.1:6379/0",
    "redis://:RedisPw?Zq7x9@127.0.0.1:6379/0",
    "redis://user:1234/Zq7x9@127.0.0.1:6379/0",
])
def test_a_malformed_redis_url_prints_no_part_of_its_credentials(cli_env: dict[str, str], url: str) -> None:
    out = jobctl(cli_env | {"JOBCTL_REDIS_URL": url}, "stats")
    assert out.returncode == 2
    assert out.stderr == ("error: invalid Redis URL redis://****: it cannot be parsed; percent-encode the special "
                          "characters of the user name and password (# as %23, / as %2F, ? as %3F, @ as %40)\n")
    assert "Zq7x9" not in out.stderr + out.stdout and "RedisPw" not in out.stderr and "1234" not in out.stderr


def test_a_bad_port_with_a_clean_password_masks_the_password(cli_env: dict[str, str]) -> None:
    out = jobctl(cli_env | {"JOBCTL_REDIS_URL": "redis://user:RedisPw@127.0.0.1:99999/0"}, "stats")
    assert (out.returncode, out.stderr) == (
        2, "error: invalid Redis URL redis://user:****@127.0.0.1:99999/0: Port out of range 0-65535\n")


def _nested(levels: int, leaf: str = "1") -> str:
    return '{"a":' * levels + leaf + "}" * levels


def _email_with_data(data: str) -> str:
    return json.dumps(EMAIL)[:-1] + f', "data": {data}}}'


DEEP = 64  # jsontree.MAX_DEPTH
TOO_DEEP = f"nested deeper than {DEEP} levels"


def refusal_cases(tmp: Path) -> list[tuple[list[str], str | None, str]]:
    """(arguments, stdin, the one line on stderr) of inputs refused with exit 2."""
    (tmp / "deep.json").write_text(_nested(1000))
    (tmp / "deep.jsonl").write_text(HOOK + "\n" + _nested(1000) + "\n")
    latin1 = b'{"to":"ana@example.com","subject":"Caf\xe9","template":"welcome"}'
    (tmp / "latin1.json").write_bytes(latin1)
    lines = HOOK.encode() + b"\n" + b'{"eventId":"\xff"}\n'
    (tmp / "latin1.jsonl").write_bytes(lines)
    path_300 = "data" + ".a" * 300
    email = ["enqueue", "email", "send-email"]
    subject = "invalid payload for send-email: subject: must be one line of printable text (no CR, LF, VT, FF, " \
              "NEL, U+2028 or other control characters)"
    cases: list[tuple[list[str], str | None, str]] = [
        ([*email, "--data", _nested(1000)], None, "invalid JSON in --data: nested too deeply"),
        ([*email, "--data", f"@{tmp / 'deep.json'}"], None, "invalid JSON in --data: nested too deeply"),
        ([*email, "--data", "-"], _nested(5000), "invalid JSON in --data: nested too deeply"),
        (["enqueue", "webhook-retry", "retry-webhook", "--file", str(tmp / "deep.jsonl")], None,
         "1 invalid line(s), nothing enqueued: line 2: invalid JSON (nested too deeply)"),
        ([*email, "--data", _email_with_data(_nested(300))], None,
         "invalid payload for send-email: data" + ".a" * 28 + "…" + ".a" * 15 + f": {TOO_DEEP}"),
        ([*email, "--set", "to=ana@example.com", "--set", "subject=Hi", "--set", "template=welcome",
          "--set", f"{path_300}=1"], None,
         "invalid payload for send-email: data" + ".a" * 28 + "…" + ".a" * 15 + f": {TOO_DEEP}"),
        ([*email, "--data", f"@{tmp / 'latin1.json'}"], None,
         f"cannot read {tmp / 'latin1.json'}: not valid UTF-8 (byte 0xe9 at offset {latin1.index(0xE9)})"),
        (["enqueue", "webhook-retry", "retry-webhook", "--file", str(tmp / "latin1.jsonl")], None,
         f"cannot read {tmp / 'latin1.jsonl'}: not valid UTF-8 (byte 0xff at offset {lines.index(0xFF)})"),
        ([*email, "--data", _email_with_data('{"k":{"\\udcff":1}}')], None,
         "invalid payload for send-email: data.k: key '\\udcff' is not valid Unicode (lone surrogate \\udcff)"),
        ([*email, "--data", _email_with_data('{"k":"\\ud800x"}')], None,
         "invalid payload for send-email: data.k: not valid Unicode (lone surrogate \\ud800)"),
        ([*email, "--data", _email_with_data('{"x":NaN}')], None,
         "invalid JSON in --data: NaN is not valid JSON (NaN and Infinity are refused)"),
        ([*email, "--data", _email_with_data('{"x":-Infinity}')], None,
         "invalid JSON in --data: -Infinity is not valid JSON (NaN and Infinity are refused)"),
        ([*email, "--data", _email_with_data('{"x":1e999}')], None,
         "invalid payload for send-email: data.x: inf is not a JSON number (NaN and Infinity are refused)"),
        ([*email, "--data", json.dumps(EMAIL) + "\n", "--delay", "9" * 400], None,
         f"invalid --delay '{'9' * 40}': must be at most 365d"),
        ([*email, "--data", json.dumps(EMAIL), "--delay", "99999999999999999999d"], None,
         "invalid --delay '99999999999999999999d': must be at most 365d"),
        ([*email, "--data", json.dumps(EMAIL), "--delay", "366d"], None,
         "invalid --delay '366d': must be at most 365d"),
        ([*email, "--data", json.dumps(EMAIL), "--delay", ""], None,
         "--delay must not be empty: use a number with s, m, h or d (e.g. 30s, 5m, 2h)"),
        ([*email, "--data", json.dumps(EMAIL), "--at", ""], None,
         "--at must not be empty: use ISO-8601, e.g. 2026-01-31T02:00:00Z"),
        ([*email, "--data", json.dumps(EMAIL), "--at", "9999-01-01T00:00:00Z"], None,
         "the instant 9999-01-01T00:00:00Z is more than 365d ahead"),
    ]
    for char in ("\u2028", "\u0085", "\x0b", "\x0c", "\u2029", "\x1b"):
        cases.append(([*email, "--data", json.dumps(EMAIL | {"subject": f"Hi{char}there"})], None, subject))
    return cases


def test_inputs_that_can_never_succeed_are_refused_with_exit_2(cli_env: dict[str, str], redis_url: str,
                                                                tmp_path: Path) -> None:
    for args, stdin, message in refusal_cases(tmp_path):
        out = _run(cli_env, args, stdin)
        assert (out.returncode, out.stderr) == (2, f"error: {message}\n"), args[3:5]
        assert out.stdout == ""
    assert written(redis_url) == []


def _run(env: dict[str, str], args: list[str], stdin: str | bytes | None) -> subprocess.CompletedProcess[str]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run([JOBCTL, *args], env=env, input=data, capture_output=True, timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                       proc.stderr.decode(errors="replace"))


def test_non_utf8_stdin_is_refused_not_smuggled_in_as_surrogates(cli_env: dict[str, str], redis_url: str) -> None:
    body = b'{"eventId":"caf\xe9","eventType":"t","eventData":{}}'
    for args in (["--data", "-"], ["--file", "-"]):
        out = _run(cli_env | {"LC_ALL": "C"}, ["enqueue", "webhook-retry", "retry-webhook", *args], body)
        assert out.returncode == 2
        assert out.stderr == "error: cannot read stdin: not valid UTF-8 (byte 0xe9 at offset 15)\n"
    assert written(redis_url) == []


def test_file_lines_split_on_lf_only(cli_env: dict[str, str], redis_url: str, tmp_path: Path) -> None:
    """U+2028, NEL and FF inside strings are characters, not line breaks: line numbers match the file."""
    odd = json.dumps({"eventId": "a\u2028b\u0085c\x0cd", "eventType": "t", "eventData": {"s": "\u2029"}},
                     ensure_ascii=False)
    good = tmp_path / "good.jsonl"
    good.write_text(f"{odd}\r\n\n{HOOK}\n", encoding="utf-8")
    out = jobctl(cli_env, "enqueue", "webhook-retry", "retry-webhook", "--file", str(good), "--json")
    assert out.returncode == 0, out.stderr
    ids = json.loads(out.stdout)["ids"]
    client = redis.Redis.from_url(redis_url)
    stored = json.loads(client.hget(f"rq:job:{ids[0]}", "data") or b"")
    assert stored[2][0]["eventId"] == "a\u2028b\u0085c\x0cd"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(f"{odd}\n{HOOK}\n{{broken\n", encoding="utf-8")
    out = jobctl(cli_env, "enqueue", "webhook-retry", "retry-webhook", "--file", str(bad))
    assert (out.returncode, out.stderr) == (
        2, "error: 1 invalid line(s), nothing enqueued: line 3: invalid JSON (Expecting property name enclosed in "
           "double quotes)\n")


def test_control_characters_in_field_paths_are_escaped(cli_env: dict[str, str], redis_url: str) -> None:
    doc: dict[str, object] = EMAIL | {"x\x1b[2J\ninjected": 1}
    out = jobctl(cli_env, "enqueue", "email", "send-email", "--data", json.dumps(doc))
    assert (out.returncode, out.stderr) == (
        2, "error: invalid payload for send-email: x\\x1b[2J\\ninjected: unknown field\n")
    doc = EMAIL | {"data": {"k\r\nFAKE LOG": {"\x1b]0;title\x07": "\ud800"}}}
    out = jobctl(cli_env, "enqueue", "email", "send-email", "--data", json.dumps(doc))
    assert (out.returncode, out.stderr) == (
        2, "error: invalid payload for send-email: data.k\\r\\nFAKE LOG.\\x1b]0;title\\x07: not valid Unicode "
           "(lone surrogate \\ud800)\n")
    assert written(redis_url) == []


def test_a_command_redis_refuses_is_exit_1_not_unreachable(cli_env: dict[str, str], redis_url: str) -> None:
    """Exit 4 is for a service that cannot be reached (SPEC §7); a key holding the wrong type, or an ACL
    refusal, is an operation that failed."""
    client = redis.Redis.from_url(redis_url)
    client.set("jobctl:paused", "not a set")
    try:
        out = jobctl(cli_env | {"JOBCTL_REDIS_URL": redis_url}, "queues", "pause", "email")
    finally:
        client.delete("jobctl:paused")
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == ("error: Redis refused a command: WRONGTYPE Operation against a key holding the wrong "
                          "kind of value\n")
