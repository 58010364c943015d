"""Job types declared once: the built-in records, a team's own jobs from an installed package (entry
point `jobctl.jobs`) and from jobctl.toml, refusals of bad declarations, and declared jobs run end to
end through `jobctl enqueue` and `jobctl work` (real subprocesses, real Redis, SQLite, storage).

The example plugin `tests/plugins/reports` is installed once per session with pip into a directory
of its own (`pip install --target`); the tests that use it put that directory on the path
(PYTHONPATH for subprocesses, `monkeypatch.syspath_prepend` in-process), so the rest of the suite
never sees its queue.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import func, insert, select

from jobctl import config, db, jobtypes, schedules
from jobctl.context import JobContext
from jobctl.errors import ConfigError, UsageError
from jobctl.jobtypes import JobType
from jobctl.processors import BUILTINS
from jobctl.producer import enqueue
from jobctl.queues import DEFAULT_POLICIES, Registry
from jobctl.runtime import Runtime
from jobctl.services import Services

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugins" / "reports"
JOBCTL = str(Path(sys.executable).parent / "jobctl")
REPORT = {"reportId": "weekly-48", "title": "Weekly activity", "days": 7}
HEAVY = ("pydantic", "PIL", "sqlalchemy", "jobctl_reports.jobs", "jobctl.processors.email", "teamjobs")


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where pip installed the example plugin (its dist-info registers the entry point)."""
    work = tmp_path_factory.mktemp("plugin")
    src = shutil.copytree(PLUGIN, work / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = work / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                          "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (site / "jobctl_reports-0.1.0.dist-info" / "entry_points.txt").read_text().count("[jobctl.jobs]") == 1
    return site


@pytest.fixture
def with_plugin(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The plugin visible to this process for the test's duration."""
    monkeypatch.syspath_prepend(str(plugin_site))
    return plugin_site


def env_with(cli_env: dict[str, str], *paths: Path, **extra: str) -> dict[str, str]:
    return cli_env | {"PYTHONPATH": os.pathsep.join([*map(str, paths), str(ROOT)])} | extra


def run(env: dict[str, str], *args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobctl", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


def team_module(folder: Path, body: str = "") -> Path:
    """A team's own module `teamjobs` (outside jobctl's package) with a model and processors."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "teamjobs.py").write_text(textwrap.dedent('''
        from pathlib import Path
        from pydantic import BaseModel, ConfigDict
        from jobctl.api import JobContext, RetryLater, PermanentFailure

        class SyncJob(BaseModel):
            model_config = ConfigDict(extra="forbid")
            account: str

        def sync(payload, ctx: JobContext):
            ctx.progress(50)
            return {"synced": payload["account"], "attempt": ctx.attempt}

        def flaky(payload, ctx: JobContext):
            Path(ctx.settings.data_dir).mkdir(parents=True, exist_ok=True)
            with Path(ctx.settings.data_dir, "attempts.log").open("a") as fh:
                fh.write(f"{ctx.attempt}/{ctx.max_attempts}\\n")
            raise RuntimeError(f"upstream down for {payload['account']}")

        NOT_A_MODEL = {"account": "str"}
    ''') + textwrap.dedent(body))
    return folder


TEAM_TOML = '''
[queues.team]
attempts = 3
backoff = "none"
concurrency = 2
timeout_s = 20

[jobs.team-sync]
queue = "team"
processor = "teamjobs:sync"
model = "teamjobs:SyncJob"
attempts = 2

[jobs.team-flaky]
queue = "team"
processor = "teamjobs:flaky"
model = "teamjobs:SyncJob"
'''


# -- one record per job type --------------------------------------------------------------------

def test_every_registry_is_derived_from_the_records() -> None:
    reg = Registry(DEFAULT_POLICIES)
    names = {t.name for t in BUILTINS}
    assert {j for p in reg.policies for j in p.jobs} == names == set(reg.types)
    assert set(reg.processors()) == names
    for t in BUILTINS:
        assert reg.for_job(t.name).name == t.queue
        assert issubclass(reg.model(t.name), BaseModel)
        assert t.function().__module__ == t.processor.split(":")[0]  # type: ignore[union-attr]
    extra = JobType("ping", "push", "teamless:Model", "teamless:fn")
    grown = Registry(DEFAULT_POLICIES, [*BUILTINS, extra])
    assert "ping" in grown.get("push").jobs and grown.check_job("push", "ping").name == "push"
    assert "ping" not in reg.get("push").jobs  # nothing global: each registry from its own records


def test_no_name_can_be_half_declared(tmp_path: Path) -> None:
    # a type without a queue, a queue named but missing, a processor or model that is not there:
    with pytest.raises(ConfigError, match="unknown queue 'nowhere'"):
        Registry(DEFAULT_POLICIES, [*BUILTINS, JobType("ping", "nowhere", "x:M", "x:f")])
    half = JobType("ping", "push", "jobctl.payloads:SendPush", "jobctl.processors.push:no_such_fn")
    reg = Registry(DEFAULT_POLICIES, [*BUILTINS, half])
    with pytest.raises(ConfigError, match=r"\[jobs.ping\]: processor 'jobctl.processors.push:no_such_fn' cannot be "
                                          r"imported \(AttributeError"):
        reg.processors(["push"])  # what `jobctl work push` resolves before it starts
    no_model = JobType("ping", "push", "jobctl.payloads:Nope", "jobctl.processors.push:send_push")
    with pytest.raises(ConfigError, match="model 'jobctl.payloads:Nope' cannot be imported"):
        Registry(DEFAULT_POLICIES, [*BUILTINS, no_model]).validate("ping", {})
    # and a queue declared in jobctl.toml that no job type runs on is refused (a typo, most likely)
    (tmp_path / "jobctl.toml").write_text('[queues.emial]\nattempts = 2\n')
    with pytest.raises(ConfigError, match=r"unknown queue \[queues.emial\]: no job type runs on it"):
        config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path)


def test_listing_names_imports_no_model_and_no_processor(cli_env: dict[str, str], plugin_site: Path,
                                                          tmp_path: Path) -> None:
    team_module(tmp_path / "code")
    (tmp_path / "jobctl.toml").write_text(TEAM_TOML)
    env = env_with(cli_env, plugin_site, tmp_path / "code")
    code = ("import sys; from jobctl import config; q = config.load().queues; "
            "print(','.join(q.names())); print(','.join(q.get('team').jobs)); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path,
                         timeout=60)
    assert out.stdout.splitlines() == ["email,push,webhook-retry,image-processing,reports,team,data-cleanup",
                                       "team-sync,team-flaky", "[]"], out.stderr
    # shell completion offers the declared queue and job names, importing none of them either
    comp = env | {"_JOBCTL_COMPLETE": "complete_bash", "COMP_CWORD": "3", "PYTHONPROFILEIMPORTTIME": "1",
                  "COMP_WORDS": "jobctl enqueue reports "}
    out = subprocess.run([JOBCTL], env=comp, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.stdout.split() == ["generate-report"], out.stderr[-2000:]
    # (-X importtime logs `import` statements, not importlib.import_module: the plugin's own line is
    # missing, but what it imports shows, so jobctl.api proves its declarations were read)
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()}
    assert "jobctl.api" in imported and not imported & set(HEAVY)
    comp |= {"COMP_CWORD": "2", "COMP_WORDS": "jobctl enqueue te"}
    out = subprocess.run([JOBCTL], env=comp, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.stdout.split() == ["team"]


# -- the two ways to declare ----------------------------------------------------------------------

def test_entry_point_declares_jobs_and_a_queue(with_plugin: Path, tmp_path: Path) -> None:
    reg = config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path).queues
    reports = reg.get("reports")
    assert reports.jobs == ("generate-report",) and "send-welcome-email" in reg.get("email").jobs
    assert (reports.attempts, reports.backoff.kind, reports.backoff.delay_s, reports.concurrency,
            reports.timeout_s, reports.priority, reports.keep_completed_s) == (3, "exponential", 2.0, 2, 120, 5, 3600)
    t = reg.job_type("generate-report")
    assert t.source == "entry point reports = jobctl_reports:JOBS (jobctl.jobs, jobctl-reports)"
    assert reg.validate("generate-report", {"reportId": "r1", "title": "T"}) == {"reportId": "r1", "title": "T"}
    with pytest.raises(UsageError, match="invalid payload for generate-report: reportId: String should match"):
        reg.validate("generate-report", {"reportId": "../x", "title": "T"})


def test_toml_declares_jobs_and_queues_with_defaults(rt: Runtime, tmp_path: Path) -> None:
    team_module(tmp_path / "code")
    sys.path.insert(0, str(tmp_path / "code"))
    try:
        (tmp_path / "jobctl.toml").write_text(TEAM_TOML + '\n[queues.push]\nattempts = 7\n')
        settings = config.load(env={"JOBCTL_REDIS_URL": rt.settings.redis_url, "HOME": str(tmp_path)}, cwd=tmp_path)
        reg = settings.queues
        team = reg.get("team")
        assert (team.attempts, team.backoff.kind, team.concurrency, team.timeout_s, team.priority,
                team.rate_limit, team.home_priority) == (3, "none", 2, 20, 5, None, 5)
        assert reg.get("push").attempts == 7 and reg.get("push").jobs == ("send-push",)
        assert reg.check_job("team", "team-sync").attempts == 2  # the job type's own default
        assert reg.check_job("team", "team-flaky").attempts == 3  # the queue's
        rt2 = Runtime(settings)
        out = enqueue(rt2, "team", "team-sync", {"account": "a1"})
        assert rt2.redis.hget(f"rq:job:{out.id}", "jc_max") == b"2"
        assert rt2.redis.hget(f"rq:job:{out.id}", "origin") == b"team"
        # schedules take declared jobs like built-in ones
        nightly = schedules.Schedule("team-nightly", cron="0 3 * * *", queue="team", job="team-sync",
                                     payload={"account": "a2"})
        assert schedules.install(rt2, [nightly], datetime(2026, 1, 1, 2, tzinfo=UTC)) == [("team-nightly", "installed")]
        fired = schedules.tick(rt2, datetime(2026, 1, 1, 3, 0, 1, tzinfo=UTC))
        assert [(f.action, f.job_id) for f in fired] == [("enqueued", "team-nightly-20260101T030000Z")]
        assert rt2.redis.hget("rq:job:team-nightly-20260101T030000Z", "jc_job") == b"team-sync"
        with pytest.raises(UsageError, match="unknown job 'team-syncs' for queue 'team'"):
            schedules.install(rt2, [dataclasses.replace(nightly, job="team-syncs")], datetime.now(UTC))
    finally:
        sys.path.remove(str(tmp_path / "code"))


def test_jobs_types_and_schema(cli_env: dict[str, str], plugin_site: Path, tmp_path: Path) -> None:
    team_module(tmp_path / "code")
    (tmp_path / "jobctl.toml").write_text(TEAM_TOML)
    env = env_with(cli_env, plugin_site, tmp_path / "code")
    out = run(env, "jobs", "types", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    docs = {d["name"]: d for d in json.loads(out.stdout)["jobs"]}
    assert len(docs) == len(BUILTINS) + 4
    assert docs["team-sync"] | {"schema": None} == {"name": "team-sync", "queue": "team", "schema": None,
                                                    "declared_by": str(tmp_path / "jobctl.toml"),
                                                    "defaults": {"attempts": 2}}
    assert docs["generate-report"]["queue"] == "reports"
    assert docs["generate-report"]["schema"]["required"] == ["reportId", "title"]
    assert docs["send-email"]["schema"]["properties"]["to"]["format"] == "email"
    out = run(env, "jobs", "types", cwd=tmp_path)
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.stdout.splitlines() if "│" in line]
    assert out.returncode == 0 and ["generate-report", "reports", docs["generate-report"]["declared_by"],
                                    "reportId*, title*, days"] in rows
    out = run(env, "schema", "generate-report", cwd=tmp_path)
    schema = json.loads(out.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False and schema["properties"]["days"]["maximum"] == 366
    out = run(env, "schema", "generate-reports", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: unknown job 'generate-reports'; known jobs: ")


# -- refusals: exit 2, one line naming the file (or entry point), the entry and the reason ----------

REFUSALS = [
    ("cannot be imported", '[jobs.report]\nqueue = "team"\nprocessor = "nosuch.jobs:run"\nmodel = "teamjobs:SyncJob"\n',
     "jobctl.toml: [jobs.report]: processor 'nosuch.jobs:run' cannot be imported (ModuleNotFoundError: No module "
     "named 'nosuch')"),
    ("model cannot be imported", '[jobs.report]\nqueue = "team"\nprocessor = "teamjobs:sync"\n'
     'model = "teamjobs:Missing"\n',
     "jobctl.toml: [jobs.report]: model 'teamjobs:Missing' cannot be imported (AttributeError: module 'teamjobs' "
     "has no attribute 'Missing')"),
    ("duplicate of a built-in", '[jobs.send-email]\nqueue = "team"\nprocessor = "teamjobs:sync"\n'
     'model = "teamjobs:SyncJob"\n',
     "jobctl.toml: [jobs.send-email]: duplicate job name 'send-email': a built-in job"),
    ("duplicate of a plugin's", '[jobs.generate-report]\nqueue = "team"\nprocessor = "teamjobs:sync"\n'
     'model = "teamjobs:SyncJob"\n',
     "jobctl.toml: [jobs.generate-report]: duplicate job name 'generate-report': already declared by entry point "
     "reports = jobctl_reports:JOBS (jobctl.jobs, jobctl-reports)"),
    ("unknown queue", '[jobs.report]\nqueue = "reprots"\nprocessor = "teamjobs:sync"\nmodel = "teamjobs:SyncJob"\n',
     "jobctl.toml: [jobs.report]: unknown queue 'reprots'; known queues: data-cleanup, email, image-processing, "
     "push, reports, team, webhook-retry"),
    ("not a model", '[jobs.report]\nqueue = "team"\nprocessor = "teamjobs:sync"\nmodel = "teamjobs:NOT_A_MODEL"\n',
     "jobctl.toml: [jobs.report]: model 'teamjobs:NOT_A_MODEL' is not a pydantic model (got dict)"),
    ("a function as model", '[jobs.report]\nqueue = "team"\nprocessor = "teamjobs:sync"\nmodel = "teamjobs:sync"\n',
     "jobctl.toml: [jobs.report]: model 'teamjobs:sync' is not a pydantic model (got function)"),
    ("missing processor", '[jobs.report]\nqueue = "team"\nmodel = "teamjobs:SyncJob"\n',
     "jobctl.toml: [jobs.report]: processor is required (a string)"),
    ("unknown field", '[jobs.report]\nqueue = "team"\nprocessor = "teamjobs:sync"\nmodel = "teamjobs:SyncJob"\n'
     'retries = 3\n',
     "jobctl.toml: [jobs.report]: unknown field 'retries'; known: attempts, model, priority, processor, queue, "
     "timeout_s"),
]


@pytest.mark.parametrize(("case", "toml", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_bad_declarations_are_refused(cli_env: dict[str, str], plugin_site: Path, tmp_path: Path, case: str,
                                      toml: str, message: str) -> None:
    team_module(tmp_path / "code")
    body = '[queues.team]\n[jobs.team-sync]\nqueue = "team"\nprocessor = "teamjobs:sync"\nmodel = "teamjobs:SyncJob"\n'
    (tmp_path / "jobctl.toml").write_text(body + toml)
    env = env_with(cli_env, plugin_site, tmp_path / "code")
    for args in (["enqueue", "team", "report", "--data", '{"account": "a"}'], ["work", "team", "--burst"],
                 ["jobs", "types"]):
        out = run(env, *args, cwd=tmp_path)
        assert (out.returncode, out.stdout) == (2, ""), (args, out.stderr)
        assert out.stderr == f"error: {tmp_path}/{message}\n", args
    assert case


def test_a_plugins_queue_can_be_tuned_but_not_redeclared(with_plugin: Path, tmp_path: Path) -> None:
    (tmp_path / "jobctl.toml").write_text('[queues.reports]\nattempts = 9\n')
    assert config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path).queues.get("reports").attempts == 9
    reg = jobtypes.Declarations()
    reg.add_queue("reports", {}, "entry point a")
    with pytest.raises(ConfigError, match=r"entry point b: \[queues.reports\]: 'reports' is a queue declared by "
                                          "entry point a"):
        reg.add_queue("reports", {}, "entry point b")
    with pytest.raises(ConfigError, match=r"\[queues.email\]: 'email' is a built-in queue"):
        reg.add_queue("email", {}, "entry point b")
    with pytest.raises(ConfigError, match="invalid queue name"):
        reg.add_queue("reports.p3", {}, "entry point b")


def test_an_entry_point_that_cannot_be_imported(cli_env: dict[str, str], tmp_path: Path) -> None:
    # an installed distribution's metadata, as pip writes it, naming a module that is not there
    meta = tmp_path / "site" / "broken_jobs-1.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-jobs\nVersion: 1.0\n")
    (meta / "entry_points.txt").write_text("[jobctl.jobs]\nbroken = broken_jobs.declare:JOBS\n")
    env = env_with(cli_env, tmp_path / "site")
    out = run(env, "queues", cwd=tmp_path)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == ("error: entry point broken = broken_jobs.declare:JOBS (jobctl.jobs, broken-jobs): cannot "
                          "be imported (ModuleNotFoundError: No module named 'broken_jobs')\n")
    (meta / "entry_points.txt").write_text("[jobctl.jobs]\nbroken = json:dumps\n")
    out = run(env, "queues", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.endswith("expected JobType or QueueSpec records, got function\n")


# -- declared jobs are first-class: run, progress, stats, retries, dead letters, replay ---------------

@pytest.fixture
def app_env(cli_env: dict[str, str], plugin_site: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    team_module(tmp_path / "code")
    (tmp_path / "jobctl.toml").write_text(TEAM_TOML)
    env = env_with(cli_env, plugin_site, tmp_path / "code", JOBCTL_DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}")
    assert run(env, "db", "init", cwd=tmp_path).returncode == 0
    yield env
    db.dispose_engines()


def test_generate_report_reports_progress_and_writes_a_pdf(with_plugin: Path, settings: config.Settings,
                                                           tmp_path: Path) -> None:
    from jobctl_reports.jobs import generate_report

    services = Services(settings)
    with services.engine.begin() as conn:
        conn.execute(insert(db.audit_logs), [{"action": "login"}] * 3 + [{"action": "logout"}])
    seen: list[int] = []
    ctx = JobContext("j1", "generate-report", "reports", settings, services, progress=seen.append)
    result = generate_report(REPORT, ctx)
    assert seen == [0, 30, 60, 90, 100]
    pdf = services.storage.read("reports/weekly-48.pdf")
    assert result == {"key": "reports/weekly-48.pdf", "bytes": len(pdf), "entries": 4}
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF") and b"/Type /Page" in pdf
    services.close()


def test_plugin_jobs_end_to_end(app_env: dict[str, str], tmp_path: Path) -> None:
    engine = db.engine_for(app_env["JOBCTL_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(insert(db.users).values(id="u7", email="lea@example.com", lang="fr"))
        conn.execute(insert(db.audit_logs), [{"action": "login"}] * 2)
    report = run(app_env, "enqueue", "reports", "generate-report", "--data", json.dumps(REPORT), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    welcome = [run(app_env, "enqueue", "email", "send-welcome-email", "--set", "userId=u7", cwd=tmp_path)]
    work = run(app_env, "work", "reports", "email", "--burst", cwd=tmp_path)
    assert work.returncode == 0, work.stderr
    # the same welcome again once the first was sent (a re-run, a replay): the e-mail log says it was sent
    welcome.append(run(app_env, "enqueue", "email", "send-welcome-email", "--set", "userId=u7", cwd=tmp_path))
    assert [w.returncode for w in welcome] == [0, 0]
    assert run(app_env, "work", "email", "--burst", cwd=tmp_path).returncode == 0
    shown = json.loads(run(app_env, "jobs", "show", report.stdout.strip(), "--json", cwd=tmp_path).stdout)
    assert (shown["queue"], shown["job"], shown["status"], shown["progress"], shown["attempts"]) == (
        "reports", "generate-report", "finished", 100, 1), (shown, work.stderr[-3000:])
    assert shown["result"]["key"] == "reports/weekly-48.pdf" and shown["result"]["entries"] == 2
    pdf = (tmp_path / "data" / "storage" / "reports" / "weekly-48.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) == shown["result"]["bytes"]
    results = [json.loads(run(app_env, "jobs", "show", w.stdout.strip(), "--json", cwd=tmp_path).stdout)["result"]
               for w in welcome]
    assert "outbox" in results[0] and results[1] == {"skipped": "already sent", "idempotencyKey": "welcome:u7"}
    assert len(list((tmp_path / "data" / "outbox" / "email").glob("*.eml"))) == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.email_log)).scalar() == 1
    stats = {q["name"]: q for q in json.loads(run(app_env, "stats", "--json", cwd=tmp_path).stdout)["queues"]}
    assert stats["reports"]["completed_1h"] == 1 and stats["email"]["completed_1h"] == 2
    assert stats["team"]["waiting"] == 0
    metrics = run(app_env, "metrics", cwd=tmp_path).stdout
    assert 'jobctl_queue_completed_1h{queue="reports"} 1.0' in metrics
    health = json.loads(run(app_env, "health", "--json", cwd=tmp_path).stdout)
    backlog = next(c for c in health["checks"] if c["name"] == "backlog")
    assert backlog["thresholds"]["reports"] == 1000 and backlog["thresholds"]["team"] == 1000


def test_a_failing_declared_job_retries_then_is_dead_lettered_and_replayed(app_env: dict[str, str],
                                                                           tmp_path: Path) -> None:
    out = run(app_env, "enqueue", "team", "team-flaky", "--set", "account=acme", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    work = run(app_env, "work", "team", "--max-jobs", "3", cwd=tmp_path)
    assert work.returncode == 0, work.stderr
    assert (tmp_path / "data" / "attempts.log").read_text().split() == ["1/3", "2/3", "3/3"]
    shown = json.loads(run(app_env, "jobs", "show", job_id, "--json", cwd=tmp_path).stdout)
    assert (shown["status"], shown["attempts"], shown["max_attempts"]) == ("failed", 3, 3)
    dead = json.loads(run(app_env, "dlq", "list", "--queue", "team", "--json", cwd=tmp_path).stdout)
    assert [(d["job"], d["job_id"], d["attempts"], d["data"]) for d in dead] == [
        ("team-flaky", job_id, 3, {"account": "acme"})]
    assert dead[0]["error"].startswith("RuntimeError: upstream down for acme")
    replay = run(app_env, "dlq", "replay", str(dead[0]["id"]), cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    again = json.loads(run(app_env, "jobs", "show", f"dlq-{dead[0]['id']}", "--json", cwd=tmp_path).stdout)
    assert (again["job"], again["status"], again["attempts"]) == ("team-flaky", "queued", 0)


def test_python_producer_enqueues_a_declared_job(app_env: dict[str, str], tmp_path: Path) -> None:
    code = ("import jobctl; e = jobctl.enqueue('team', 'team-sync', {'account': 'a9'}); print(e.status);"
            "jobctl.enqueue('team', 'team-sync', {'account': 9})")
    out = subprocess.run([sys.executable, "-c", code], env=app_env, capture_output=True, text=True, cwd=tmp_path,
                         timeout=60)
    assert out.stdout == "queued\n" and "invalid payload for team-sync: account: Input should be a valid string" in \
        out.stderr
    work = run(app_env, "work", "team", "--burst", cwd=tmp_path)
    assert work.returncode == 0, work.stderr
    stats = {q["name"]: q for q in json.loads(run(app_env, "stats", "--json", cwd=tmp_path).stdout)["queues"]}
    assert stats["team"]["completed_1h"] == 1


def test_a_dotted_path_in_redis_is_never_imported(rt: Runtime, tmp_path: Path) -> None:
    from jobctl.jobs import job_fields, new_id
    from jobctl.worker import Runner

    marker = tmp_path / "imported"
    module = f"evil_{uuid.uuid4().hex[:8]}"  # never imported before: importing it would run its code
    (tmp_path / f"{module}.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
                                           "def run(payload, ctx):\n    return 'ran'\n")
    policy = rt.settings.queues.get("push")
    jid = new_id()
    fields: dict[str, Any] = job_fields(policy, f"{module}:run", {}, policy.priority, datetime.now(UTC))
    rt.redis.hset(f"rq:job:{jid}", mapping=fields)
    rt.redis.rpush("rq:queue:push", jid)
    sys.path.insert(0, str(tmp_path))
    try:
        Runner(rt, ["push"], services=object(), total_slots=1).work(burst=True)
    finally:
        sys.path.remove(str(tmp_path))
    assert not marker.exists() and module not in sys.modules
    assert rt.redis.hget(f"rq:job:{jid}", "status") == b"failed"
    assert f"job '{module}:run' is not registered for queue 'push'".encode() in (
        rt.redis.hget(f"rq:job:{jid}", "jc_error") or b"")


# -- the README's "Write your own job", run as written ---------------------------------------------

def readme_blocks() -> tuple[str, str, list[str]]:
    """(myapp/jobs.py, jobctl.toml, the jobctl command lines) of the README section."""
    section = (ROOT / "README.md").read_text().split("## Write your own job\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\w+\n(.*?)```", section, re.S)
    code = next(b for b in blocks if b.startswith("# myapp/jobs.py\n"))
    toml = next(b for b in blocks if b.startswith("# jobctl.toml\n"))
    shell = next(b for b in blocks if b.startswith("export PYTHONPATH=.\n"))
    return code, toml, [ln for ln in shell.splitlines() if ln.startswith("jobctl ")]


@pytest.fixture
def rows_server(tmp_path: Path) -> Iterator[int]:
    """`python -m http.server` of the README, serving tmp_path (rows.json) on a free port."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_readme_walk_through(cli_env: dict[str, str], tmp_path: Path, rows_server: int) -> None:
    code, toml, lines = readme_blocks()
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "jobs.py").write_text(code)
    (tmp_path / "jobctl.toml").write_text(toml)
    (tmp_path / "rows.json").write_text('[{"id": 1}, {"id": 2}]')
    env = cli_env | {"PYTHONPATH": ".", "JOBCTL_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}"}
    outputs: list[tuple[list[str], subprocess.CompletedProcess[str]]] = []
    last_id = ""
    for line in lines:
        args = [a.replace(":8765/", f":{rows_server}/") for a in shlex.split(line, comments=True)[1:]]
        if args[:2] == ["dlq", "replay"]:
            last_id = str(json.loads(run(env, "dlq", "list", "--queue", "exports", "--json", cwd=tmp_path).stdout)
                          [0]["id"])
        args = [last_id if a == "ID" else a for a in args]
        out = run(env, *args, cwd=tmp_path)
        assert out.returncode == 0, (line, out.stderr)
        outputs.append((args, out))
        if args[0] == "enqueue":
            last_id = out.stdout.strip()
        if args[:2] == ["jobs", "show"]:
            shown = json.loads(run(env, "jobs", "show", last_id, "--json", cwd=tmp_path).stdout)
            assert (shown["status"], shown["progress"], shown["result"]) == (
                "finished", 100, {"key": "exports/acme.json", "rows": 2})
    by_cmd = {tuple(a[:2]): o.stdout for a, o in outputs}
    assert "export-account" in by_cmd[("jobs", "types")] and "account*, url*" in by_cmd[("jobs", "types")]
    assert json.loads(by_cmd[("schema", "export-account")])["required"] == ["account", "url"]
    assert json.loads((tmp_path / "data" / "storage" / "exports" / "acme.json").read_text()) == [{"id": 1}, {"id": 2}]
    dead = json.loads(run(env, "dlq", "list", "--queue", "exports", "--json", cwd=tmp_path).stdout)
    assert [(d["job"], d["attempts"], d["status"]) for d in dead] == [("export-account", 3, "replayed")]
    assert dead[0]["error"].startswith("URLError: <urlopen error [Errno 111] Connection refused>")
    replayed = json.loads(run(env, "jobs", "show", dead[0]["replay_job_id"], "--json", cwd=tmp_path).stdout)
    assert (replayed["job"], replayed["status"]) == ("export-account", "queued")


def test_declared_jobs_get_timeouts_priorities_and_bulk_enqueue(cli_env: dict[str, str], tmp_path: Path) -> None:
    team_module(tmp_path / "code", '''
        import time

        def slow(payload, ctx):
            time.sleep(30)
    ''')
    (tmp_path / "jobctl.toml").write_text(TEAM_TOML + '''
[queues.slowq]
timeout_s = 1

[jobs.team-slow]
queue = "slowq"
processor = "teamjobs:slow"
model = "teamjobs:SyncJob"

[jobs.team-urgent]
queue = "team"
processor = "teamjobs:sync"
model = "teamjobs:SyncJob"
priority = 1
''')
    env = env_with(cli_env, tmp_path / "code", JOBCTL_DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}")
    lines = tmp_path / "accounts.jsonl"
    lines.write_text('{"account": "a1"}\n{"account": "a2"}\n')
    out = run(env, "enqueue", "team", "team-sync", "--file", str(lines), "--json", cwd=tmp_path)
    assert out.returncode == 0 and json.loads(out.stdout)["count"] == 2, out.stderr
    lines.write_text('{"account": "a1"}\n{"acount": "a2"}\n')
    out = run(env, "enqueue", "team", "team-sync", "--file", str(lines), cwd=tmp_path)
    assert (out.returncode, out.stderr) == (2, "error: 1 invalid line(s), nothing enqueued: line 2: account: "
                                               "required field is missing\n")
    urgent = run(env, "enqueue", "team", "team-urgent", "--set", "account=vip", "--json", cwd=tmp_path)
    assert json.loads(urgent.stdout)["status"] == "queued"
    slow = run(env, "enqueue", "slowq", "team-slow", "--set", "account=s", cwd=tmp_path).stdout.strip()
    assert run(env, "work", "team", "slowq", "--burst", cwd=tmp_path).returncode == 0
    shown = json.loads(run(env, "jobs", "show", json.loads(urgent.stdout)["id"], "--json", cwd=tmp_path).stdout)
    assert (shown["priority"], shown["status"]) == (1, "finished")  # its own default, not the queue's 5
    shown = json.loads(run(env, "jobs", "show", slow, "--json", cwd=tmp_path).stdout)
    assert (shown["status"], shown["attempts"]) == ("failed", 1)
    assert shown["error"].startswith("JobTimeout: job exceeded its 1s timeout")  # the queue's declared timeout_s
