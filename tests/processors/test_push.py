"""send-push against a local http.server standing in for OneSignal, on both databases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from localservices import Ctx, HttpServer, free_port, json_body
from sqlalchemy import insert

from jobctl.config import Settings
from jobctl.db import users
from jobctl.errors import PermanentFailure, RetryLater
from jobctl.processors._common import HttpDeferred
from jobctl.processors.push import send_push
from jobctl.services import Services

PUSH = {"userId": "u1", "title": "Hi", "message": "You have mail", "data": {"k": 1}, "priority": "HIGH"}
API_KEY = "os-rest-key-123"


def seed(settings: Settings, **user: Any) -> None:
    row = {"id": "u1", "email": "u1@example.com", "lang": "en", "push_enabled": True,
           "onesignal_player_id": "player-1", **user}
    with Services(settings).engine.begin() as conn:
        conn.execute(insert(users).values(**row))


@pytest.fixture
def onesignal(
    database_url: str, make_settings: Callable[..., Settings], http_server: HttpServer
) -> Settings:
    return make_settings(JOBCTL_DATABASE_URL=database_url, JOBCTL_ONESIGNAL_URL=http_server.url,
                         JOBCTL_ONESIGNAL_APP_ID="app-1", JOBCTL_ONESIGNAL_API_KEY=API_KEY)


def test_posts_notification_with_key_header_and_stable_idempotency_key(
    onesignal: Settings, make_ctx: Ctx, http_server: HttpServer
) -> None:
    seed(onesignal)
    first = send_push(PUSH, make_ctx(onesignal, "send-push", job_id="job-7"))
    second = send_push(PUSH, make_ctx(onesignal, "send-push", job_id="job-7"))
    assert first == {"sent": True, "id": "n-1", "idempotencyKey": first["idempotencyKey"]}
    assert second["idempotencyKey"] == first["idempotencyKey"]
    assert uuid.UUID(first["idempotencyKey"]).version == 3
    req = http_server.requests[0]
    assert req["path"] == "/notifications"
    assert req["headers"]["Authorization"] == f"Key {API_KEY}"
    body = json_body(req)
    assert body == {
        "app_id": "app-1", "target_channel": "push", "include_subscription_ids": ["player-1"],
        "headings": {"en": "Hi"}, "contents": {"en": "You have mail"}, "data": {"k": 1},
        "priority": 10, "idempotency_key": first["idempotencyKey"],
    }
    other = send_push(PUSH, make_ctx(onesignal, "send-push", job_id="job-8"))
    assert other["idempotencyKey"] != first["idempotencyKey"]


@pytest.mark.parametrize(
    ("user", "reason"),
    [({"push_enabled": False}, "push disabled"), ({"onesignal_player_id": None}, "no device")],
)
def test_skips_with_a_reason(
    user: dict[str, Any], reason: str, onesignal: Settings, make_ctx: Ctx, http_server: HttpServer
) -> None:
    seed(onesignal, **user)
    assert reason in send_push(PUSH, make_ctx(onesignal, "send-push"))["skipped"]
    assert http_server.requests == []


def test_unknown_user_is_permanent(onesignal: Settings, make_ctx: Ctx) -> None:
    with pytest.raises(PermanentFailure, match="user 'u1' does not exist"):
        send_push(PUSH, make_ctx(onesignal, "send-push"))


@pytest.mark.parametrize(("headers", "delay"), [({"Retry-After": "7"}, 7.0), ({}, 5.0)])
def test_429_honours_retry_after(
    headers: dict[str, str], delay: float, onesignal: Settings, make_ctx: Ctx, http_server: HttpServer
) -> None:
    seed(onesignal)
    http_server.replies.append((429, headers, b'{"errors": ["rate limited"]}'))
    with pytest.raises(RetryLater) as info:
        send_push(PUSH, make_ctx(onesignal, "send-push"))
    assert info.value.delay_s == delay


@pytest.mark.parametrize(("status", "error"), [(400, PermanentFailure), (404, PermanentFailure),
                                               (500, HttpDeferred), (503, HttpDeferred)])
def test_status_policy_and_no_key_in_errors(
    status: int, error: type[Exception], onesignal: Settings, make_ctx: Ctx, http_server: HttpServer
) -> None:
    seed(onesignal)
    http_server.replies.append((status, {}, b'{"errors": ["nope"]}'))
    with pytest.raises(error, match=f"HTTP {status}") as info:
        send_push(PUSH, make_ctx(onesignal, "send-push"))
    assert API_KEY not in str(info.value)


def test_network_error_is_retried(
    database_url: str, make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    settings = make_settings(JOBCTL_DATABASE_URL=database_url, JOBCTL_ONESIGNAL_APP_ID="a",
                             JOBCTL_ONESIGNAL_API_KEY=API_KEY,
                             JOBCTL_ONESIGNAL_URL=f"http://127.0.0.1:{free_port()}")
    seed(settings)
    with pytest.raises(HttpDeferred, match="unreachable") as info:
        send_push(PUSH, make_ctx(settings, "send-push"))
    assert API_KEY not in str(info.value)


def test_outbox_without_credentials(
    database_url: str, make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    settings = make_settings(JOBCTL_DATABASE_URL=database_url)
    seed(settings)
    send_push(PUSH, make_ctx(settings, "send-push", job_id="a"))
    result = send_push({**PUSH, "priority": "LOW"}, make_ctx(settings, "send-push", job_id="b"))
    lines = [json.loads(line) for line in Path(result["outbox"]).read_text().splitlines()]
    assert [line["priority"] for line in lines] == [10, 1]
    assert lines[1]["include_subscription_ids"] == ["player-1"] and lines[1]["contents"] == {"en": "You have mail"}
    assert lines[1]["idempotency_key"] == result["idempotencyKey"]
