"""Every processor end to end as an operator runs them: `jobctl enqueue` -> `jobctl work --all --burst`,
against real services (Redis, aiosmtpd, local HTTP servers for OneSignal and the webhook endpoint,
moto's S3 server, SQLite)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
from localservices import HttpServer, SmtpServer, json_body
from PIL import Image
from sqlalchemy import insert

from jobctl import db

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_e2e"


def jobctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobctl", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_every_job_kind_through_the_cli(redis_url: str, tmp_path: Path, http_server: HttpServer,
                                        smtp_server: Callable[..., SmtpServer], moto_endpoint: str,
                                        s3_bucket: str) -> None:
    smtp = smtp_server()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCTL_", "REDIS_"))} | {
        "JOBCTL_REDIS_URL": redis_url, "JOBCTL_DATA_DIR": str(tmp_path / "data"),
        "JOBCTL_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}", "JOBCTL_SMTP_URL": smtp.url,
        "JOBCTL_MAIL_FROM": "noreply@example.com", "JOBCTL_ONESIGNAL_APP_ID": "app-1",
        "JOBCTL_ONESIGNAL_API_KEY": "os-key", "JOBCTL_ONESIGNAL_URL": http_server.url,
        "JOBCTL_STORAGE_URL": f"s3://{s3_bucket}/media", "JOBCTL_S3_ENDPOINT_URL": moto_endpoint,
        "JOBCTL_WEBHOOK_TARGET_URL": f"{http_server.url}/webhooks/stripe", "JOBCTL_WEBHOOK_SECRET": SECRET,
        "NO_COLOR": "1"}
    assert jobctl(env, "db", "init").returncode == 0
    engine = db.engine_for(env["JOBCTL_DATABASE_URL"])
    old = datetime.now(UTC) - timedelta(days=400)
    with engine.begin() as conn:
        conn.execute(insert(db.users).values(id="u1", email="ana@example.com", lang="fr", push_enabled=True,
                                             onesignal_player_id="player-1"))
        conn.execute(insert(db.audit_logs), [{"created_at": old, "action": "x"}] * 4)
        conn.execute(insert(db.notifications), [{"user_id": "u1", "created_at": old, "body": "x"}] * 2)
    png = io.BytesIO()
    Image.new("RGB", (800, 400), "red").save(png, "PNG")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="media/in/photo.png", Body=png.getvalue())

    jobs = [
        ("email", "send-email", {"to": "ana@example.com", "subject": "Réinitialisation", "template": "password-reset",
                                 "data": {"name": "Ana", "resetUrl": "https://app.example.com/r/1"}, "lang": "fr"}),
        ("push", "send-push", {"userId": "u1", "title": "Hi", "message": "Ready", "priority": "HIGH"}),
        ("image-processing", "process-image", {"userId": "u1", "originalPath": "in/photo.png",
                                               "targetPath": "out/photo.webp", "maxWidth": 200, "maxHeight": 200,
                                               "quality": 70}),
        ("webhook-retry", "retry-webhook", {"eventId": "evt_1", "eventType": "invoice.paid",
                                            "eventData": {"id": "in_1"}, "attemptNumber": 2}),
        ("data-cleanup", "cleanup-audit-logs", {}),
        ("data-cleanup", "cleanup-notifications", {"dryRun": True}),
    ]
    ids = []
    for queue, name, payload in jobs:
        out = jobctl(env, "enqueue", queue, name, "--data", json.dumps(payload), "--json")
        assert out.returncode == 0, out.stderr
        ids.append(json.loads(out.stdout)["id"])

    work = jobctl(env, "work", "--all", "--burst", "--concurrency", "2")
    assert work.returncode == 0, work.stderr
    views = [json.loads(jobctl(env, "jobs", "show", i, "--json").stdout) for i in ids]
    assert [v["status"] for v in views] == ["finished"] * len(jobs), [v["error"] for v in views]

    assert len(smtp.messages) == 1 and smtp.messages[0].rcpt_tos == ["ana@example.com"]
    assert b"https://app.example.com/r/1" in smtp.messages[0].content
    push = next(r for r in http_server.requests if r["path"] == "/notifications")
    assert push["headers"]["Authorization"] == "Key os-key" and json_body(push)["app_id"] == "app-1"
    hook = next(r for r in http_server.requests if r["path"] == "/webhooks/stripe")
    sig = dict(p.split("=", 1) for p in hook["headers"]["Stripe-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{sig['t']}.".encode() + hook["body"], hashlib.sha256).hexdigest()
    assert sig["v1"] == expected
    thumb = Image.open(io.BytesIO(s3.get_object(Bucket=s3_bucket, Key="media/out/photo.webp")["Body"].read()))
    assert (thumb.format, thumb.size) == ("WEBP", (200, 100))
    assert views[2]["progress"] == 100
    assert views[4]["result"]["deletedCount"] == 4 and views[5]["result"]["deletedCount"] == 2

    again = jobctl(env, "enqueue", "webhook-retry", "retry-webhook", "--data", json.dumps(jobs[3][2]))
    assert again.returncode == 0
    assert jobctl(env, "work", "webhook-retry", "--burst").returncode == 0
    assert sum(r["path"] == "/webhooks/stripe" for r in http_server.requests) == 1  # idempotent by eventId
