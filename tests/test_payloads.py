"""Validation of every payload field of docs/jobs.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import jobctl
from jobctl import producer
from jobctl.errors import UsageError
from jobctl.payloads import validate
from jobctl.runtime import Runtime

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
    ("send-email", EMAIL | {"subject": "a\r\nBcc: x@evil.com"}, "subject: must be one line of printable text"),
    ("send-email", EMAIL | {"subject": "x" * 999}, "subject: String should have at most 998 characters"),
    ("send-email", EMAIL | {"template": "promo"}, "template: Input should be 'welcome', 'password-reset'"),
    ("send-email", EMAIL | {"lang": "de"}, "lang: Input should be 'en' or 'fr'"),
    ("send-email", EMAIL | {"data": []}, "data: Input should be a valid dictionary"),
    ("send-email", {k: v for k, v in EMAIL.items() if k != "to"}, "to: required field is missing"),
    ("send-email", EMAIL | {"cc": "x"}, "cc: unknown field"),
    ("send-push", PUSH | {"priority": "URGENT"}, "priority: Input should be 'HIGH', 'MEDIUM' or 'LOW'"),
    ("send-push", PUSH | {"userId": ""}, "userId: String should have at least 1 character"),
    ("process-image", IMAGE | {"originalPath": "../etc/passwd"},
     "originalPath: invalid storage key: must not contain '.' or '..'"),
    ("process-image", IMAGE | {"targetPath": "/abs.jpg"}, "targetPath: invalid storage key: must be relative"),
    ("process-image", IMAGE | {"targetPath": "a/../../b.jpg"},
     "targetPath: invalid storage key: must not contain '.' or '..'"),
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


@pytest.mark.parametrize("char", ["\r", "\n", "\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1b", "\x00"])
def test_a_subject_is_one_line_of_printable_text(char: str) -> None:
    with pytest.raises(UsageError, match="subject: must be one line of printable text"):
        validate("send-email", EMAIL | {"subject": f"Hi{char}there"})


def test_a_subject_may_hold_tabs_and_no_break_spaces() -> None:
    subject = "Bienvenue\u00a0: votre compte\tcr\u00e9\u00e9 \u2014 \U0001f600"
    assert validate("send-email", EMAIL | {"subject": subject})["subject"] == subject


def test_field_paths_in_errors_have_control_characters_escaped() -> None:
    with pytest.raises(UsageError) as err:
        validate("send-email", EMAIL | {"x\x1b[31m\r\nFAKE": 1})
    assert str(err.value) == "invalid payload for send-email: x\\x1b[31m\\r\\nFAKE: unknown field"


def _nested(levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(levels - 1):
        doc = {"a": doc}
    return doc


PRODUCER_REFUSALS: list[tuple[dict[str, Any], str]] = [
    (PUSH | {"data": _nested(5000)}, f"data{'.a' * 28}…{'.a' * 15}: nested deeper than 64 levels"),
    (PUSH | {"data": _nested(300)}, f"data{'.a' * 28}…{'.a' * 15}: nested deeper than 64 levels"),
    (PUSH | {"data": {"k": {"\udcff": 1}}}, "data.k: key '\\udcff' is not valid Unicode (lone surrogate \\udcff)"),
    (PUSH | {"title": "caf\udce9"}, "title: not valid Unicode (lone surrogate \\udce9)"),
    (PUSH | {"data": {"x": float("nan")}}, "data.x: nan is not a JSON number (NaN and Infinity are refused)"),
    (PUSH | {"data": {"x": [1, float("-inf")]}}, "data.x.1: -inf is not a JSON number (NaN and Infinity are refused)"),
    (PUSH | {"data": {"when": datetime(2026, 1, 1)}}, "data.when: datetime is not a JSON value"),
    (PUSH | {"data": {1: "x"}}, "data: object keys must be strings, got int 1"),
    (PUSH | {"data": {("a", "b"): "x"}}, "data: object keys must be strings, got tuple ('a', 'b')"),
    (PUSH | {"data": {"n": 10**5000}}, "data.n: integer too large"),
    (PUSH | {"data": {"s": {1, 2}}}, "data.s: set is not a JSON value"),
    (PUSH | {"data\x1b[2J": 1}, "data\\x1b[2J: unknown field"),
]


@pytest.mark.parametrize(("payload", "message"), PRODUCER_REFUSALS)
def test_the_producer_api_refuses_what_is_not_plain_json(rt: Runtime, payload: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as err:
        producer.enqueue(rt, "push", "send-push", payload)
    assert str(err.value) == f"invalid payload for send-push: {message}"
    with pytest.raises(UsageError) as many:
        producer.enqueue_many(rt, "push", "send-push", [PUSH, payload])
    assert str(many.value) == f"1 invalid line(s), nothing enqueued: line 2: {message}"
    assert list(rt.redis.scan_iter()) == []


@pytest.mark.parametrize(("when", "message"), [
    (producer.When(delay_s=float("inf")), "delay must be a number of seconds from 0 to 31536000 (365d), got inf"),
    (producer.When(delay_s=float("nan")), "delay must be a number of seconds from 0 to 31536000 (365d), got nan"),
    (producer.When(delay_s=1e30), "delay must be a number of seconds from 0 to 31536000 (365d), got 1e+30"),
    (producer.When(delay_s=-5), "delay must be a number of seconds from 0 to 31536000 (365d), got -5"),
    (producer.When(delay_s=True), "delay must be a number of seconds from 0 to 31536000 (365d), got True"),
    (producer.When(delay_s="5"), "delay must be a number of seconds from 0 to 31536000 (365d), got '5'"),  # type: ignore[arg-type]
    (producer.When(at=datetime(2030, 1, 1)), "the instant must be a timezone-aware datetime, got "
                                             "datetime.datetime(2030, 1, 1, 0, 0)"),
    (producer.When(at=datetime(9999, 1, 1, tzinfo=UTC)), "the instant 9999-01-01T00:00:00Z is more than 365d ahead"),
])
def test_the_producer_api_refuses_delays_that_never_come(rt: Runtime, when: producer.When, message: str) -> None:
    for call in (lambda: producer.enqueue(rt, "push", "send-push", PUSH, when=when),
                 lambda: producer.enqueue_many(rt, "push", "send-push", [PUSH], when=when)):
        with pytest.raises(UsageError) as err:
            call()
        assert str(err.value) == message
    assert list(rt.redis.scan_iter()) == []


def test_the_longest_delay_is_accepted(rt: Runtime) -> None:
    year = producer.When(delay_s=365 * 86400)
    assert producer.enqueue(rt, "push", "send-push", PUSH, when=year).status == "scheduled"
    at = producer.When(at=datetime.now(UTC) + timedelta(days=364))
    assert producer.enqueue(rt, "push", "send-push", PUSH, when=at).status == "scheduled"


def test_jobctl_enqueue_gives_the_same_refusals(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                rt: Runtime) -> None:
    monkeypatch.setenv("JOBCTL_REDIS_URL", redis_url)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(jobctl, "_runtime", None)
    with pytest.raises(UsageError, match=r"^invalid payload for send-push: data.x: nan is not a JSON number"):
        jobctl.enqueue("push", "send-push", PUSH | {"data": {"x": float("nan")}})
    with pytest.raises(UsageError, match=r"^delay must be a number of seconds from 0 to 31536000 \(365d\), got inf$"):
        jobctl.enqueue("push", "send-push", PUSH, delay_s=float("inf"))
    with pytest.raises(UsageError, match=r"^invalid payload for send-email: subject: must be one line"):
        jobctl.enqueue("email", "send-email", EMAIL | {"subject": "Hi\u2028there"})
    assert list(rt.redis.scan_iter()) == []
