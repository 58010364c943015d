"""Payload builders the runtime tests share (valid `retry-webhook` and `send-push` payloads)."""

from __future__ import annotations

from typing import Any

HOOK = {"eventId": "e", "eventType": "t", "eventData": {}, "attemptNumber": 0}
PUSH = {"userId": "u", "title": "t", "message": "m"}


def hook(**data: Any) -> dict[str, Any]:
    """A webhook payload whose eventData steers the harness's processor (sleep, fail, once…)."""
    return HOOK | {"eventData": data}


def push(**data: Any) -> dict[str, Any]:
    """A push payload whose data steers the harness's processor."""
    return PUSH | {"data": data}
