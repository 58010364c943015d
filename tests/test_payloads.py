"""Validation of every payload field of SPEC §3."""

from __future__ import annotations

from typing import Any

import pytest

from jobctl.errors import UsageError
from jobctl.payloads import validate

EMAIL = {"to": "ana@example.com", "subject": "Hi", "template": "welcome", "data": {"name": "Ana"}, "lang": "fr"}
PUSH = {"userId": "u1", "title": "T", "message": "M", "priority": "HIGH"}
IMAGE = {"userId": "u1", "originalPath": "in/a.png", "targetPath": "out/a.jpg", "maxWidth": 800,
         "maxHeight": 600, "quality": 80}
HOOK = {"eventId": "evt_1", "eventType": "invoice.paid", "eventData": {"id": "in_1"}, "attemptNumber": 0}


@pytest.mark.parametrize(("job", "payload"), [
    ("send-email", EMAIL), ("send-email", EMAIL | {"idempotencyKey": "k1"}),
    ("send-push", PUSH), ("send-push", PUSH | {"data": {"a": 1}}),
    ("process-image", IMAGE), ("retry-webhook", HOOK),
    ("cleanup-audit-logs", {}), ("cleanup-notifications", {"retentionDays": 30, "dryRun": True}),
    ("cleanup-temp-files", {"dryRun": False}),
])
def test_valid_payloads_round_trip(job: str, payload: dict[str, Any]) -> None:
    assert validate(job, payload) == payload


@pytest.mark.parametrize(("job", "payload", "message"), [
    ("send-email", EMAIL | {"to": "not-an-address"}, "to: value is not a valid email address"),
    ("send-email", EMAIL | {"to": ["a@example.com"]}, "to: Input should be a valid string"),
    ("send-email", EMAIL | {"subject": "a\r\nBcc: x@evil.com"}, "subject: must not contain CR or LF"),
    ("send-email", EMAIL | {"subject": "x" * 999}, "subject: String should have at most 998 characters"),
    ("send-email", EMAIL | {"template": "promo"}, "template: Input should be 'welcome', 'password-reset'"),
    ("send-email", EMAIL | {"lang": "de"}, "lang: Input should be 'en' or 'fr'"),
    ("send-email", EMAIL | {"data": []}, "data: Input should be a valid dictionary"),
    ("send-email", {k: v for k, v in EMAIL.items() if k != "to"}, "to: required field is missing"),
    ("send-email", EMAIL | {"cc": "x"}, "cc: unknown field"),
    ("send-push", PUSH | {"priority": "URGENT"}, "priority: Input should be 'HIGH', 'MEDIUM' or 'LOW'"),
    ("send-push", PUSH | {"userId": ""}, "userId: String should have at least 1 character"),
    ("process-image", IMAGE | {"originalPath": "../etc/passwd"}, "originalPath: must be a relative storage key"),
    ("process-image", IMAGE | {"targetPath": "/abs.jpg"}, "targetPath: must be a relative storage key"),
    ("process-image", IMAGE | {"targetPath": "a/../../b.jpg"}, "targetPath: must be a relative storage key"),
    ("process-image", IMAGE | {"maxWidth": 0}, "maxWidth: Input should be greater than or equal to 1"),
    ("process-image", IMAGE | {"maxHeight": 10001}, "maxHeight: Input should be less than or equal to 10000"),
    ("process-image", IMAGE | {"quality": 101}, "quality: Input should be less than or equal to 100"),
    ("process-image", IMAGE | {"quality": "80"}, "quality: Input should be a valid integer"),
    ("retry-webhook", HOOK | {"attemptNumber": -1}, "attemptNumber: Input should be greater than or equal to 0"),
    ("retry-webhook", HOOK | {"eventData": "x"}, "eventData: Input should be a valid dictionary"),
    ("cleanup-audit-logs", {"retentionDays": 0}, "retentionDays: Input should be greater than or equal to 1"),
    ("cleanup-audit-logs", {"dryRun": "yes"}, "dryRun: Input should be a valid boolean"),
])
def test_invalid_payload_names_field_and_reason(job: str, payload: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as err:
        validate(job, payload)
    assert str(err.value).startswith(f"invalid payload for {job}: {message}")
    assert err.value.exit_code == 2


def test_unknown_job_and_non_object() -> None:
    with pytest.raises(UsageError, match="unknown job 'send-fax'; known jobs: cleanup-audit-logs"):
        validate("send-fax", {})
    with pytest.raises(UsageError, match="must be a JSON object"):
        validate("send-push", [1, 2])
