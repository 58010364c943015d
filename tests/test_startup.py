"""Start-up in proportion to the command (issue 13), held on the import graph, never on timing.

Each probe runs `jobctl.cli.main()` in a fresh interpreter (as the console script does) and reports
the top-level packages in `sys.modules` afterwards. Speed itself is measured by `python -m bench.startup`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer.core
import typer.main
from sqlalchemy import insert

from jobctl import cli, db, metrics, quickread

ROOT = Path(__file__).resolve().parent.parent
JOBCTL = str(Path(sys.executable).parent / "jobctl")  # the console script, as a shell runs it
HEAVY = {"sqlalchemy", "pydantic", "jinja2", "boto3", "PIL", "requests", "psycopg"}
PROBE = """
import json, os, sys
sys.argv = ["jobctl", *json.loads(os.environ["PROBE_ARGS"])]
from jobctl.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
models = sys.modules.get("jobctl.payloads")
built = sorted(n for n, v in vars(models).items() if getattr(v, "__pydantic_complete__", False)) if models else []
print("\\nPROBE " + json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules}),
                               "built": built}), file=sys.stderr)
"""


def probe(env: dict[str, str], *args: str, words: str | None = None) -> tuple[str, int, set[str]]:
    """(stdout, exit code, top-level modules loaded) of `jobctl ARGS`, or of a bash completion request
    for the command line `words` (as completions/jobctl.bash sends it)."""
    env = env | {"PROBE_ARGS": json.dumps(list(args))}
    if words is not None:
        cword = len(words.split()) - (0 if words.endswith(" ") else 1)
        env |= {"_JOBCTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=env["JOBCTL_DATA_DIR"], capture_output=True,
                          text=True, timeout=60, check=False)
    tail = done.stderr.rsplit("PROBE ", 1)
    assert len(tail) == 2, done.stderr[-2000:]
    report = json.loads(tail[1])
    BUILT[:] = report["built"]
    return done.stdout, report["code"], set(report["modules"])


BUILT: list[str] = []  # the built-in payload models the last probe's process built (pydantic defer_build)


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    Path(cli_env["JOBCTL_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    return cli_env


def test_help_and_version_load_no_heavy_library(env: dict[str, str]) -> None:
    out, code, mods = probe(env, "--help")
    assert code == 0 and "enqueue" in out and "dlq" in out
    assert not mods & HEAVY, mods & HEAVY
    assert not {"jobctl.commands", "redis", "rq"} & mods  # no command module, no Redis client
    assert "markdown_it" not in mods  # the root's help is click's: Typer's Rich formatter imports rich.markdown
    out, code, mods = probe(env, "--version")
    assert code == 0 and out.startswith("jobctl ")
    assert not mods & HEAVY, mods & HEAVY


def test_completion_of_names_loads_no_heavy_library(env: dict[str, str]) -> None:
    cases = {
        "jobctl ": set(cli.COMMANDS),
        "jobctl d": {"demo", "dashboard", "dlq", "db"},
        "jobctl enqueue ": {"email", "push", "image-processing", "webhook-retry", "data-cleanup"},
        "jobctl enqueue im": {"image-processing"},
        "jobctl enqueue email ": {"send-email"},
        "jobctl enqueue data-cleanup cleanup-a": {"cleanup-audit-logs"},
        "jobctl stats email p": {"push"},
        "jobctl work w": {"webhook-retry"},
        "jobctl queues pause p": {"push"},
        "jobctl queues empty da": {"data-cleanup"},
        "jobctl dlq list --queue w": {"webhook-retry"},
        "jobctl dlq replay --queue email --job ": {"send-email"},
    }
    for words, expected in cases.items():
        out, code, mods = probe(env, words=words)
        assert code == 0, words
        assert set(out.split()) == expected, (words, out)
        assert not mods & HEAVY, (words, mods & HEAVY)


def test_completion_inside_every_command_loads_no_heavy_library(env: dict[str, str]) -> None:
    """Completing a command's options (or a group's subcommands) imports that command's module: none of
    them may import a heavy library at module level."""
    for name in cli.COMMANDS:
        out, code, mods = probe(env, words=f"jobctl {name} --")
        assert code == 0 and "--help" in out.split(), (name, out)
        assert not mods & HEAVY, (name, mods & HEAVY)


def test_completion_with_a_broken_config_completes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[settings\n", encoding="utf-8")
    out, code, _mods = probe(env, words=f"jobctl --config {bad} enqueue ")
    assert (code, out.strip()) == (0, "")


def test_stats_json_reads_dead_letters_without_sqlalchemy(env: dict[str, str]) -> None:
    assert subprocess.run([JOBCTL, "db", "init"], env=env, capture_output=True,
                          timeout=60).returncode == 0
    out, code, mods = probe(env, "stats", "--json")
    assert code == 0
    doc = json.loads(out)
    assert [q["dead_letters"] for q in doc["queues"]] == [0] * len(doc["queues"])  # read, not unavailable
    assert not mods & (HEAVY | {"rich"}), mods & (HEAVY | {"rich"})  # JSON needs no console


def test_enqueue_loads_only_what_it_uses(env: dict[str, str]) -> None:
    payload = json.dumps({"to": "a@example.com", "subject": "Hi", "template": "welcome"})
    out, code, mods = probe(env, "enqueue", "email", "send-email", "--data", payload)
    assert code == 0 and len(out.strip()) == 36  # the new job's id
    assert "pydantic" in mods  # the payload is validated
    assert BUILT == ["SendEmail"]  # by its own model's validator only: the others stay unbuilt
    assert not mods & (HEAVY - {"pydantic"} | {"rich"}), mods & (HEAVY | {"rich"})


def test_command_table_matches_the_commands() -> None:
    """The root help and completion are drawn from `COMMANDS`: each entry's help is its command's, and
    every command module is listed."""
    for name, (_module, _attr, help_text) in cli.COMMANDS.items():
        real = cli.load_command(name)
        first = (real.help or "").split("\n\n")[0]
        assert first == help_text, f"jobctl/cli.py COMMANDS[{name!r}]: the help is now {first!r}"
        stub = cli.LazyGroup(name="x").commands[name]
        assert stub.get_short_help_str() == real.get_short_help_str(), name
        assert (real.hidden, real.deprecated) == (False, False), name
    modules = {p.stem for p in (ROOT / "jobctl" / "commands").glob("*.py")} - {"__init__"}
    assert modules == {m.rsplit(".", 1)[1] for m, _a, _h in cli.COMMANDS.values()}


def test_root_help_is_the_same_as_with_every_command_loaded(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")
    helps = []
    for load in (False, True):
        group = typer.main.get_command(cli.app)
        assert isinstance(group, cli.LazyGroup)
        if load:
            for name in cli.COMMANDS:
                group.commands[name] = cli.load_command(name)
        assert group.main(["--help"], prog_name="jobctl", standalone_mode=False) == 0
        helps.append(capsys.readouterr().out)
    assert "Commands" in helps[0] and "schedule" in helps[0]
    assert helps[0] == helps[1]


def _param(command: Any, name: str) -> Any:
    return next(p for p in command.params if p.name == name)


@pytest.mark.parametrize(("command", "param", "values"), [
    ("stats", "interval", ["0.5", "2", 2.0, 0.2, "1e1", "0.1", "-1", "abc", ""]),
    ("enqueue", "priority", ["1", "10", 5, "11", "0", "-3", "3.0", "x", None]),
    ("enqueue", "queue", ["email", "", "é"]),
    ("stats", "queues", [("email", "push"), [], None]),
    ("dlq", "ids", None),
])
def test_plain_coercion_agrees_with_typer(command: str, param: str, values: list[Any] | None) -> None:
    """`_Plain` returns what Typer's own (pydantic) coercion returns, and refuses what it refuses."""
    cmd = cli.load_command(command)
    if values is None:  # dlq show IDS…: list[int]
        cmd, values = cmd.commands["purge"], [("1", "2"), ("1", "x"), ()]
    p = _param(cmd, param)
    ctx = typer.core.TyperCommand(name="x").make_context("x", [], resilient_parsing=True)
    fast = cli._Plain(p)
    slow = typer.core.build_runtime_param(p.type_descriptor)  # type: ignore[attr-defined]
    for value in values:
        try:
            want: Any = ("ok", slow.coerce(value, param=p, ctx=ctx))
        except Exception as exc:  # noqa: BLE001 - compare whichever error Typer raises
            want = ("error", type(exc), str(exc))
        try:
            got: Any = ("ok", fast.coerce(value, param=p, ctx=ctx))
        except Exception as exc:  # noqa: BLE001
            got = ("error", type(exc), str(exc))
        assert got == want, (command, param, value)
        if want[0] == "ok":
            assert type(got[1]) is type(want[1]), (command, param, value)


def test_quick_dead_letter_counts_agree_with_sqlalchemy(tmp_path: Path) -> None:
    path = tmp_path / "dl.db"
    url = f"sqlite:///{path}"
    assert quickread.dead_letter_counts(url, datetime.now(UTC)) == ({}, {}, False)  # absent: not created
    assert not path.exists()
    engine = db.engine_for(url)
    import jobctl.deadletter  # noqa: F401 - registers the dead-letter tables

    db.init_db(engine)
    now = datetime.now(UTC).replace(microsecond=123456)
    since = now - timedelta(hours=1)
    rows = [("email", "open", now), ("email", "open", now - timedelta(hours=2)), ("email", "replayed", now),
            ("push", "open", since), ("push", "open", since - timedelta(microseconds=1)),
            ("image-processing", "purged", now)]
    with engine.begin() as conn:
        for i, (queue, status, at) in enumerate(rows):
            conn.execute(insert(db.dead_letters).values(queue=queue, job="j", job_id=f"id{i}", data="{}",
                                                        failed_at=at, status=status))
    quick = quickread.dead_letter_counts(url, since)
    assert quick == ({"email": 2, "push": 2}, {"email": 1, "push": 1}, True)
    # the SQLAlchemy reader (which a URL naming the driver goes to) agrees
    full = metrics.dead_letter_counts(f"sqlite+pysqlite:///{path}", since)
    assert (full.open, full.recent, full.available, full.error) == (quick[0], quick[1], True, None)
    assert metrics.dead_letter_counts(url, since) == full
    db.dispose_engines()


def test_quick_reader_leaves_other_urls_to_sqlalchemy(tmp_path: Path) -> None:
    since = datetime.now(UTC)
    for url in ("postgresql://u@h/db", "sqlite://", "sqlite:///:memory:", "sqlite+pysqlite:////x.db",
                "sqlite:////x.db?timeout=3", "sqlite:///file:x.db?uri=true", "sqlite:///~/x.db"):
        assert quickread.dead_letter_counts(url, since) is None, url
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")  # a file without the table: no store yet
    assert quickread.dead_letter_counts(f"sqlite:///{empty}", since) == ({}, {}, False)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    assert quickread.dead_letter_counts(f"sqlite:///{junk}", since) is None  # SQLAlchemy words the error


def test_a_pool_builds_the_models_it_serves_before_forking() -> None:
    """Deferred models (`defer_build`) are built by the warm-up, not by a runner's first job (which would
    start it late, past the rate limiter's guard band)."""
    code = ("import json; from jobctl.config import load; from jobctl import payloads; "
            "load({}).queues.processors(['email', 'image-processing']); "
            "print(json.dumps({n: v.__pydantic_complete__ for n, v in vars(payloads).items() "
            "if isinstance(v, type) and issubclass(v, payloads.BaseModel) and v.__module__ == payloads.__name__ "
            "and not n.startswith('_')}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    built = json.loads(done.stdout)
    assert built.pop("SendEmail") is built.pop("ProcessImage") is True
    assert built and not any(built.values()), built  # push, webhook and cleanup models: not served, not built
