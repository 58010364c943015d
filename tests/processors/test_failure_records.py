"""What a failure leaves behind, through a real Runner, real processors and local HTTP endpoints:
the traceback of a permanent failure with the endpoint's status and answer, and never a configured
secret in the job hash, the dead-letter row, RQ's result stream or the log (issue 12)."""

from __future__ import annotations

import base64
import json
import logging
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from localservices import HttpServer
from sqlalchemy import insert

from jobctl import capture as cp
from jobctl import deadletter as dl
from jobctl import keys
from jobctl.config import Settings
from jobctl.db import users
from jobctl.hooks import Hooks
from jobctl.plugins import LogHook
from jobctl.producer import enqueue
from jobctl.runtime import Runtime
from jobctl.services import Services
from jobctl.worker import EXCERPT_CHARS, Runner

API_KEY = "os-rest-key-Zq7x9-secret"
WEBHOOK_SECRET = "whsec_failure_records"
PUSH = {"userId": "u1", "title": "Hi", "message": "You have mail"}
EVENT = {"eventId": "evt_9", "eventType": "invoice.paid", "eventData": {"object": {"id": "in_9"}}}


def echo_authorization(status: int) -> Callable[[dict[str, Any]], tuple[int, dict[str, str], bytes]]:
    """A proxy that echoes the request's Authorization header in its error body."""
    def reply(req: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        auth = req["headers"].get("Authorization", "")
        body = json.dumps({"error": "bad request", "echo": {"Authorization": auth}, "pad": "x" * 3000})
        return status, {"Content-Type": "application/json"}, body.encode()
    return reply


def run_queue(rt: Runtime, queue: str) -> None:
    """Run a queue's jobs with the production hooks (log + dead-letter store) until none is left."""
    Runner(rt, [queue], hooks=Hooks([LogHook(), cp.DeadLetterHook(rt)])).work(burst=True)


def stored_text(rt: Runtime, job_id: str) -> str:
    """Everything Redis keeps about a job's failure: its hash and RQ's result stream, decoded."""
    h: dict[bytes, bytes] = rt.redis.hgetall(keys.job(job_id))  # type: ignore[assignment]
    text = " ".join(v.decode(errors="replace") for k, v in h.items() if k != b"data")
    stream: list[tuple[bytes, dict[bytes, bytes]]] = rt.redis.xrange(keys.rq_results(job_id))  # type: ignore[assignment]
    for _id, fields in stream:
        if fields.get(b"exc_string"):
            text += zlib.decompress(base64.b64decode(fields[b"exc_string"])).decode()
    return text


@pytest.fixture
def push_settings(make_settings: Callable[..., Settings], redis_url: str, database_url: str,
                  http_server: HttpServer, tmp_path: Path) -> Settings:
    (tmp_path / "jobctl.toml").write_text('[queues.push]\nbackoff = "none"\n')  # the retry runs at once
    settings = make_settings(JOBCTL_REDIS_URL=redis_url, JOBCTL_DATABASE_URL=database_url,
                             JOBCTL_ONESIGNAL_URL=http_server.url, JOBCTL_ONESIGNAL_APP_ID="app-1",
                             JOBCTL_ONESIGNAL_API_KEY=API_KEY)
    with Services(settings).engine.begin() as conn:
        conn.execute(insert(users).values(id="u1", email="u1@example.com", lang="en", push_enabled=True,
                                          onesignal_player_id="player-1"))
    return settings


def test_an_echoed_api_key_is_in_no_stored_or_logged_error(
        push_settings: Settings, http_server: HttpServer, caplog: pytest.LogCaptureFixture) -> None:
    rt = Runtime(push_settings)
    http_server.replies = [echo_authorization(500), echo_authorization(400)]  # a retry, then a refusal
    caplog.set_level(logging.INFO)
    job = enqueue(rt, "push", "send-push", PUSH)
    run_queue(rt, "push")
    assert [r["headers"]["Authorization"] for r in http_server.requests] == [f"Key {API_KEY}"] * 2
    (entry,) = dl.store_for(rt).entries(dl.Filter())
    assert entry.job_id == job.id and "HTTP 400" in entry.error and "Key ****" in entry.error
    assert entry.traceback and "Key ****" in entry.traceback
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP 500" in logged and "HTTP 400" in logged  # the retry and the dead letter were both logged
    for where, text in (("dead-letter row", entry.error + entry.traceback), ("log", logged),
                        ("Redis", stored_text(rt, job.id))):
        assert API_KEY not in text, where


def test_credentials_of_a_webhook_url_sent_as_basic_auth_are_scrubbed(
        make_settings: Callable[..., Settings], redis_url: str, database_url: str, http_server: HttpServer) -> None:
    target = http_server.url.replace("http://", "http://hookuser:hook-pass-77@") + "/stripe"
    settings = make_settings(JOBCTL_REDIS_URL=redis_url, JOBCTL_DATABASE_URL=database_url,
                             JOBCTL_WEBHOOK_TARGET_URL=target, JOBCTL_WEBHOOK_SECRET=WEBHOOK_SECRET)
    rt = Runtime(settings)
    http_server.replies = [echo_authorization(403)]
    job = enqueue(rt, "webhook-retry", "retry-webhook", EVENT)
    run_queue(rt, "webhook-retry")
    basic = base64.b64encode(b"hookuser:hook-pass-77").decode()
    assert http_server.requests[0]["headers"]["Authorization"] == f"Basic {basic}"
    (entry,) = dl.store_for(rt).entries(dl.Filter())
    for text in (entry.error, entry.traceback or "", stored_text(rt, job.id)):
        assert basic not in text and "hook-pass-77" not in text
    assert "Basic ****" in entry.error


def test_a_permanent_http_failure_keeps_its_traceback_status_and_a_bounded_answer(
        make_settings: Callable[..., Settings], redis_url: str, database_url: str, http_server: HttpServer) -> None:
    settings = make_settings(JOBCTL_REDIS_URL=redis_url, JOBCTL_DATABASE_URL=database_url,
                             JOBCTL_WEBHOOK_TARGET_URL=http_server.url + "/stripe",
                             JOBCTL_WEBHOOK_SECRET=WEBHOOK_SECRET)
    rt = Runtime(settings)
    answer = "no such customer: cus_42 " + "y" * 5000
    http_server.replies = [(400, {"Content-Type": "text/plain"}, answer.encode())]
    enqueue(rt, "webhook-retry", "retry-webhook", EVENT)
    run_queue(rt, "webhook-retry")
    (entry,) = dl.store_for(rt).entries(dl.Filter())
    assert entry.attempts == 1 and entry.error.startswith("permanent failure: webhook endpoint answered HTTP 400")
    tb = entry.traceback or ""
    assert tb.startswith("Traceback (most recent call last):") and "retry_webhook" in tb
    assert f"HTTP status 400; answer (first {EXCERPT_CHARS} characters):\n{answer[:EXCERPT_CHARS]}" in tb
    assert answer[:EXCERPT_CHARS + 1] not in tb  # bounded
