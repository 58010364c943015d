"""`jobctl dlq …` as a subprocess: exit codes and exact output."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

from jobctl import deadletter as dl
from jobctl import keys
from jobctl.runtime import Runtime
from tests.support.cli import jobctl

PAYLOAD = {"userId": "u1", "originalPath": "in/a.jpg", "targetPath": "out/a.jpg", "maxWidth": 100,
           "maxHeight": 100, "quality": 80}
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FIELDS = ["id", "queue", "job", "job_id", "data", "error", "attempts", "failed_at", "status", "replayed_at",
          "replay_job_id"]


def seed(rt: Runtime, queue: str = "image-processing", job: str = "process-image", at: datetime = AT) -> int:
    """One recorded dead letter."""
    f = dl.Failure(queue, job, f"job-{uuid.uuid4().hex[:6]}", PAYLOAD, "RuntimeError: boom", "Traceback …", 2, at)
    return dl.store_for(rt).record(f)[0]


def test_list_empty_and_json_fields(env: dict[str, str], rt: Runtime) -> None:
    r = jobctl(env, "dlq", "list")
    assert (r.returncode, r.stdout, r.stderr) == (0, "no dead letters\n", "")
    first = seed(rt, at=AT)
    second = seed(rt, at=AT + timedelta(minutes=1))
    r = jobctl(env, "dlq", "list", "--json")
    assert r.returncode == 0, r.stderr
    docs = json.loads(r.stdout)
    assert [d["id"] for d in docs] == [second, first]
    assert list(docs[1]) == FIELDS
    assert docs[1] | {"job_id": "x"} == {"id": first, "queue": "image-processing", "job": "process-image",
                                          "job_id": "x", "data": PAYLOAD, "error": "RuntimeError: boom",
                                          "attempts": 2, "failed_at": "2024-05-01T12:00:00Z", "status": "open",
                                          "replayed_at": None, "replay_job_id": None}
    r = jobctl(env, "dlq", "list", "--queue", "email", "--json")
    assert (r.returncode, r.stdout) == (0, "[]\n")
    r = jobctl(env, "dlq", "list")
    assert r.returncode == 0 and "RuntimeError: boom" in r.stdout and "2024-05-01T12:01:00Z" in r.stdout


def test_show_and_unknown_id(env: dict[str, str], rt: Runtime) -> None:
    eid = seed(rt)
    r = jobctl(env, "dlq", "show", str(eid), "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["traceback"] == "Traceback …" and doc["id"] == eid
    r = jobctl(env, "dlq", "show", str(eid))
    assert r.returncode == 0 and f"Dead letter {eid}" in r.stdout and "Traceback …" in r.stdout
    r = jobctl(env, "dlq", "show", "999")
    assert (r.returncode, r.stdout, r.stderr) == (3, "", "error: no dead letter with id 999\n")


def test_replay_needs_a_selector_and_knows_queues(env: dict[str, str]) -> None:
    r = jobctl(env, "dlq", "replay")
    usage = "error: choose entries: give ids, or --all, --queue, --job or --error\n"
    assert (r.returncode, r.stdout, r.stderr) == (2, "", usage)
    r = jobctl(env, "dlq", "replay", "--queue", "nope")
    assert r.returncode == 2
    assert r.stderr == ("error: unknown queue 'nope'; known queues: email, push, webhook-retry, image-processing, "
                        "data-cleanup\n")


def test_replay_dry_run_then_replay_once(env: dict[str, str], rt: Runtime) -> None:
    eid = seed(rt)
    r = jobctl(env, "dlq", "replay", "--all", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"dry_run": True, "replayed": 0, "skipped": 0, "failed": 0, "entries": [
        {"id": eid, "queue": "image-processing", "job": "process-image", "action": "would replay",
         "replay_job_id": f"dlq-{eid}", "reason": None}]}
    assert rt.redis.dbsize() == 0
    r = jobctl(env, "dlq", "replay", str(eid), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["replayed"] == 1
    assert rt.redis.lrange(keys.queue_list("image-processing"), 0, -1) == [f"dlq-{eid}".encode()]
    r = jobctl(env, "dlq", "replay", str(eid), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["entries"][0]["reason"] == "already replayed"
    r = jobctl(env, "dlq", "list", "--json")
    doc = json.loads(r.stdout)[0]
    assert (doc["status"], doc["replay_job_id"]) == ("replayed", f"dlq-{eid}") and doc["replayed_at"].endswith("Z")
    r = jobctl(env, "dlq", "replay", "--all")
    assert (r.returncode, r.stdout) == (0, "nothing to replay\n")
    r = jobctl(env, "dlq", "audit", "--json")
    assert [a["action"] for a in json.loads(r.stdout)] == ["replay"]


def test_replay_partial_failure_exits_1(env: dict[str, str], rt: Runtime) -> None:
    f = dl.Failure("image-processing", "process-image", "bad-1", {"userId": "u1"}, "e", None, 1, AT)
    bad = dl.store_for(rt).record(f)[0]
    r = jobctl(env, "dlq", "replay", str(bad))
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: 1 of 1 replay(s) failed: {bad}: invalid payload for process-image")


def test_purge_confirmation_and_yes(env: dict[str, str], rt: Runtime) -> None:
    old = seed(rt, at=datetime.now(UTC) - timedelta(days=30))
    new = seed(rt, at=datetime.now(UTC))
    r = jobctl(env, "dlq", "purge", "--all")
    assert (r.returncode, r.stderr) == (2, "error: purge asks for confirmation: pass --yes when not on a terminal\n")
    r = jobctl(env, "dlq", "purge")
    assert r.returncode == 2
    r = jobctl(env, "dlq", "purge", "--all", "--older-than", "7d", "--yes")
    assert (r.returncode, r.stdout) == (0, "purged 1 dead letter(s)\n")
    statuses = {d["id"]: d["status"] for d in json.loads(jobctl(env, "dlq", "list", "--json").stdout)}
    assert statuses == {old: "purged", new: "open"}


def test_export_jsonl_and_csv(env: dict[str, str], rt: Runtime) -> None:
    eid = seed(rt)
    r = jobctl(env, "dlq", "export", "--format", "jsonl")
    (doc,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and doc["id"] == eid and doc["traceback"] == "Traceback …"
    r = jobctl(env, "dlq", "export", "--format", "csv")
    (row,) = list(csv.DictReader(io.StringIO(r.stdout)))
    assert row["id"] == str(eid) and json.loads(row["data"]) == PAYLOAD and row["failed_at"] == "2024-05-01T12:00:00Z"
    r = jobctl(env, "dlq", "export", "--format", "xml")
    assert (r.returncode, r.stderr) == (2, "error: unknown format 'xml'; use jsonl or csv\n")


def test_sync_and_unreachable_database(env: dict[str, str]) -> None:
    r = jobctl(env, "dlq", "sync")
    assert (r.returncode, r.stdout) == (0, "recorded 0 new dead letter(s)\n")
    down = env | {"JOBCTL_DATABASE_URL": "postgresql://jobctl:s3cret@127.0.0.1:1/app"}
    for args in (("dlq", "list"), ("dlq", "sync")):
        r = jobctl(down, *args)
        assert r.returncode == 4 and "s3cret" not in r.stderr and "Traceback" not in r.stderr
        assert r.stderr.startswith("error: database unreachable at postgresql://jobctl:****@127.0.0.1:1/app")
