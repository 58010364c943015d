"""The processors' success log lines escape control characters of user data (issue 12): CR/LF in a
webhook's eventType or a push's userId cannot forge a log line, ESC cannot drive the terminal."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from localservices import Ctx, HttpServer
from sqlalchemy import insert

from jobctl.config import Settings
from jobctl.db import users
from jobctl.processors.push import send_push
from jobctl.processors.webhook import retry_webhook
from jobctl.services import Services

FORGED = "invoice.paid\r\n2026-01-01 00:00:00,000 INFO jobctl.pool: \x1b[2Jall clear"
ESCAPED = "invoice.paid\\r\\n2026-01-01 00:00:00,000 INFO jobctl.pool: \\x1b[2Jall clear"


def test_webhook_log_line_escapes_the_event_type(database_url: str, make_settings: Callable[..., Settings],
                                                  make_ctx: Ctx, http_server: HttpServer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(JOBCTL_DATABASE_URL=database_url, JOBCTL_WEBHOOK_SECRET="whsec_x",
                             JOBCTL_WEBHOOK_TARGET_URL=f"{http_server.url}/hooks/stripe")
    http_server.replies.append((200, {}, b"{}"))
    caplog.set_level(logging.INFO, logger="jobctl.processors.webhook")
    event = {"eventId": "evt\n1", "eventType": FORGED, "eventData": {}, "attemptNumber": 0}
    assert retry_webhook(event, make_ctx(settings, "retry-webhook"))["delivered"] is True
    [line] = [r.getMessage() for r in caplog.records if r.name == "jobctl.processors.webhook"]
    assert line == f"webhook event evt\\n1 ({ESCAPED}) delivered: HTTP 200"
    assert "\n" not in line and "\r" not in line and "\x1b" not in line


def test_push_log_line_escapes_the_user_id(database_url: str, make_settings: Callable[..., Settings],
                                            make_ctx: Ctx, http_server: HttpServer,
                                            caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(JOBCTL_DATABASE_URL=database_url, JOBCTL_ONESIGNAL_URL=http_server.url,
                             JOBCTL_ONESIGNAL_APP_ID="app-1", JOBCTL_ONESIGNAL_API_KEY="os-key")
    with Services(settings).engine.begin() as conn:
        conn.execute(insert(users).values(id=FORGED, email="u@example.com", lang="en", push_enabled=True,
                                          onesignal_player_id="player-1"))
    http_server.replies.append((200, {}, b'{"id": "n-1\\r\\nFAKE"}'))
    caplog.set_level(logging.INFO, logger="jobctl.processors.push")
    payload = {"userId": FORGED, "title": "Hi", "message": "M"}
    assert send_push(payload, make_ctx(settings, "send-push", job_id="job-1"))["sent"] is True
    [line] = [r.getMessage() for r in caplog.records if r.name == "jobctl.processors.push"]
    assert line == f"push job-1 for user {ESCAPED}: notification n-1\\r\\nFAKE"


def test_retry_and_dead_letter_log_lines_escape_the_error_text(caplog: pytest.LogCaptureFixture) -> None:
    """An upstream answer quoted in the error cannot forge the worker's own log lines either."""
    from jobctl.hooks import JobEvent
    from jobctl.plugins import LogHook

    caplog.set_level(logging.INFO, logger="jobctl.jobs")
    event = JobEvent("j1", "webhook-retry", "retry-webhook", {}, 2, 3, error=f"HTTP 502: {FORGED}", delay_s=4)
    LogHook().retrying(event)
    LogHook().dead_lettered(event)
    lines = [r.getMessage() for r in caplog.records if r.name == "jobctl.jobs"]
    assert lines == [f"job j1 (retry-webhook) attempt 2/3 failed, retry in 4.0s: HTTP 502: {ESCAPED}",
                     f"job j1 (retry-webhook) failed permanently after 2 attempt(s): HTTP 502: {ESCAPED}"]
