"""retry-webhook against a local endpoint that verifies signatures the way Stripe's library does."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from localservices import Ctx, HttpServer, Reply, free_port, json_body, start_holding_claim

from jobctl.config import Settings
from jobctl.errors import PermanentFailure, RetryLater
from jobctl.processors._common import HttpDeferred
from jobctl.processors.webhook import retry_webhook, stripe_signature

SECRET = "whsec_test_secret"
EVENT = {"eventId": "evt_1", "eventType": "invoice.paid", "eventData": {"object": {"id": "in_1"}},
         "attemptNumber": 2}
TOLERANCE_S = 300


def verify(body: bytes, header: str, secret: str, now: float) -> bool:
    """Stripe's check: v1 = HMAC-SHA256(secret, "<t>.<payload>"), timestamp within tolerance."""
    items = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [int(v) for k, v in items if k == "t"]
    signatures = [v for k, v in items if k == "v1"]
    if not timestamps or not signatures:
        return False
    expected = hmac.new(secret.encode(), f"{timestamps[0]}.{body.decode()}".encode(), hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        return False
    return timestamps[0] >= now - TOLERANCE_S


def stripe_endpoint(req: dict[str, Any]) -> Reply:
    if not verify(req["body"], req["headers"].get("Stripe-Signature", ""), SECRET, time.time()):
        return 400, {}, b'{"error": "bad signature"}'
    return 200, {}, b'{"received": true}'


@pytest.fixture
def settings(database_url: str, make_settings: Callable[..., Settings], http_server: HttpServer) -> Settings:
    return make_settings(JOBCTL_DATABASE_URL=database_url, JOBCTL_WEBHOOK_TARGET_URL=f"{http_server.url}/hooks/stripe",
                         JOBCTL_WEBHOOK_SECRET=SECRET)


def test_delivers_signed_event_once(settings: Settings, make_ctx: Ctx, http_server: HttpServer) -> None:
    http_server.default = (400, {}, b"")
    http_server.replies.append(stripe_endpoint)
    result = retry_webhook(EVENT, make_ctx(settings, "retry-webhook"))
    assert result == {"delivered": True, "eventId": "evt_1", "status": 200}
    req = http_server.requests[0]
    assert req["path"] == "/hooks/stripe"
    assert json_body(req) == {"id": "evt_1", "object": "event", "type": "invoice.paid",
                              "data": {"object": {"id": "in_1"}}}
    again = retry_webhook(EVENT, make_ctx(settings, "retry-webhook"))
    assert again == {"skipped": "event already processed", "eventId": "evt_1"}
    assert len(http_server.requests) == 1


def test_two_runs_of_one_event_at_once_deliver_it_once(settings: Settings, make_ctx: Ctx,
                                                        http_server: HttpServer) -> None:
    """The first run is inside its POST (a slow endpoint) when a second job with the same event id
    starts: the second retries later, and its retry finds the event processed."""
    def slow(req: dict[str, Any]) -> Reply:
        time.sleep(1.0)
        return stripe_endpoint(req)

    http_server.replies.append(slow)
    t, first = start_holding_claim(settings, lambda: retry_webhook(EVENT, make_ctx(settings, "retry-webhook",
                                                                                    job_id="job-a")))
    with pytest.raises(RetryLater, match="another run is doing webhook event evt_1"):
        retry_webhook(EVENT, make_ctx(settings, "retry-webhook", job_id="job-b"))
    t.join(15)
    assert first == [{"delivered": True, "eventId": "evt_1", "status": 200}]
    again = retry_webhook(EVENT, make_ctx(settings, "retry-webhook", job_id="job-b"))
    assert again == {"skipped": "event already processed", "eventId": "evt_1"}
    assert len(http_server.requests) == 1


def test_wrong_secret_is_rejected_by_the_endpoint_and_permanent(
    settings: Settings, make_ctx: Ctx, http_server: HttpServer
) -> None:
    import dataclasses

    http_server.replies.append(stripe_endpoint)
    wrong = dataclasses.replace(settings, webhook_secret="whsec_other")
    with pytest.raises(PermanentFailure, match="HTTP 400"):
        retry_webhook(EVENT, make_ctx(wrong, "retry-webhook"))


def test_stale_signature_fails_stripe_tolerance() -> None:
    body = json.dumps({"id": "evt"})
    old = int(time.time()) - TOLERANCE_S - 5
    assert not verify(body.encode(), stripe_signature(SECRET, body, old), SECRET, time.time())
    assert verify(body.encode(), stripe_signature(SECRET, body, int(time.time())), SECRET, time.time())


def test_server_error_is_retried_and_not_recorded(
    settings: Settings, make_ctx: Ctx, http_server: HttpServer
) -> None:
    http_server.replies.extend([(500, {}, b"boom"), stripe_endpoint])
    with pytest.raises(HttpDeferred, match="HTTP 500"):
        retry_webhook(EVENT, make_ctx(settings, "retry-webhook"))
    assert retry_webhook(EVENT, make_ctx(settings, "retry-webhook"))["delivered"] is True
    assert len(http_server.requests) == 2


@pytest.mark.parametrize(
    ("reply", "error"),
    [((408, {}, b""), HttpDeferred), ((502, {}, b""), HttpDeferred), ((429, {"Retry-After": "30"}, b""), RetryLater),
     ((400, {}, b""), PermanentFailure), ((410, {}, b""), PermanentFailure)],
)
def test_status_policy(
    reply: Reply, error: type[Exception], settings: Settings, make_ctx: Ctx, http_server: HttpServer
) -> None:
    http_server.replies.append(reply)
    with pytest.raises(error) as info:
        retry_webhook(EVENT, make_ctx(settings, "retry-webhook"))
    if isinstance(info.value, RetryLater):
        assert info.value.delay_s == 30


def test_not_configured_is_permanent(make_settings: Callable[..., Settings], make_ctx: Ctx) -> None:
    with pytest.raises(PermanentFailure, match="JOBCTL_WEBHOOK_TARGET_URL"):
        retry_webhook(EVENT, make_ctx(make_settings(), "retry-webhook"))


def test_unreachable_endpoint_is_retried_without_the_secret(
    make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    settings = make_settings(JOBCTL_WEBHOOK_TARGET_URL=f"http://127.0.0.1:{free_port()}/hooks/x?token=abc",
                             JOBCTL_WEBHOOK_SECRET=SECRET)
    with pytest.raises(HttpDeferred, match="unreachable") as info:
        retry_webhook(EVENT, make_ctx(settings, "retry-webhook"))
    assert SECRET not in str(info.value) and "token=abc" not in str(info.value)
