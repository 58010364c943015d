"""retry-webhook: re-deliver a Stripe event to the application's own webhook endpoint.

The target and signing secret come from Settings, never from the payload. The body is signed
the way Stripe signs: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

from jobctl.context import JobContext
from jobctl.db import utcnow, webhook_events
from jobctl.errors import PermanentFailure, printable
from jobctl.payloads import RetryWebhook
from jobctl.processors._common import check_response, once, parse, post, remember

log = logging.getLogger(__name__)
TIMEOUT_S = 15.0


def stripe_signature(secret: str, body: str, timestamp: int) -> str:
    """The `Stripe-Signature` header value for `body` signed at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_body(p: RetryWebhook) -> str:
    """The Stripe-like event object as the JSON text that is signed and sent."""
    data = p.eventData if "object" in p.eventData else {"object": p.eventData}
    event = {"id": p.eventId, "object": "event", "type": p.eventType, "data": data}
    return json.dumps(event, separators=(",", ":"), sort_keys=True)


def retry_webhook(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Deliver the event at most once per event id (`_common.once`): claimed first, recorded after a 2xx."""
    p = parse(RetryWebhook, payload)
    target, secret = ctx.settings.webhook_target_url, ctx.settings.webhook_secret
    if not target or not secret:
        raise PermanentFailure(
            "webhook re-delivery is not configured: set JOBCTL_WEBHOOK_TARGET_URL and JOBCTL_WEBHOOK_SECRET"
        )
    engine = ctx.services.engine
    return once(engine, webhook_events.c.event_id, p.eventId, ctx.job_id, "webhook event",
                lambda: _deliver(p, ctx, target, secret),
                {"skipped": "event already processed", "eventId": p.eventId})


def _deliver(p: RetryWebhook, ctx: JobContext, target: str, secret: str) -> dict[str, Any]:
    engine = ctx.services.engine
    body = event_body(p)
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": stripe_signature(secret, body, int(time.time())),
        "X-Jobctl-Attempt": str(p.attemptNumber),
    }
    resp = post(ctx.services.http, target, "webhook endpoint", data=body.encode(), headers=headers,
                timeout=TIMEOUT_S, allow_redirects=False)
    check_response(resp, "webhook endpoint")
    remember(engine, webhook_events, {"event_id": p.eventId, "event_type": p.eventType, "processed_at": utcnow()})
    log.info("webhook event %s (%s) delivered: HTTP %s", printable(p.eventId), printable(p.eventType),
             resp.status_code)
    return {"delivered": True, "eventId": p.eventId, "status": resp.status_code}
