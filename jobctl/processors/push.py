"""send-push: one notification to one user's device through OneSignal (or a JSON-lines outbox).

OneSignal REST: `POST {onesignal_url}/notifications` with `Authorization: Key <REST API key>`;
`idempotency_key` makes a retried request a no-op on OneSignal's side for 30 days. It must be an
RFC 9562 UUID (older documentation says v3 or v4), so it is a name-based UUID v3 of the job id.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from jobctl.context import JobContext
from jobctl.db import reachable, users, utcnow
from jobctl.errors import PermanentFailure, printable
from jobctl.payloads import SendPush
from jobctl.processors._common import check_response, parse, post

log = logging.getLogger(__name__)
TIMEOUT_S = 10.0
PUSH_NAMESPACE = uuid.UUID("0b6a3c1e-2f4d-4e5a-8b7c-9d0e1f2a3b4c")
# OneSignal accepts 0-10; FCM treats 10 as high and anything lower as normal.
PRIORITY = {"HIGH": 10, "MEDIUM": 5, "LOW": 1}


def idempotency_key(job_id: str) -> str:
    """The same UUID for every attempt of one job."""
    return str(uuid.uuid3(PUSH_NAMESPACE, f"send-push:{job_id}"))


def send_push(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Notify the user, or skip with a reason when push is off or no device is known."""
    p = parse(SendPush, payload)
    user = load_user(ctx, p.userId)
    if not user["push_enabled"]:
        return {"skipped": "push disabled by the user"}
    if not user["onesignal_player_id"]:
        return {"skipped": "no device registered for the user"}
    body = notification(p, user["onesignal_player_id"], ctx.settings.onesignal_app_id, ctx.job_id)
    settings = ctx.settings
    if not (settings.onesignal_app_id and settings.onesignal_api_key):
        path = append_outbox(settings.data_dir, body)
        return {"outbox": str(path), "idempotencyKey": body["idempotency_key"]}
    ctx.rate_gate()  # OneSignal's limit counts calls: hold it at the call, not only at the job's start
    resp = post(
        ctx.services.http,
        f"{settings.onesignal_url.rstrip('/')}/notifications",
        "OneSignal",
        data=json.dumps(body),
        headers={"Authorization": f"Key {settings.onesignal_api_key}", "Content-Type": "application/json"},
        timeout=TIMEOUT_S,
    )
    check_response(resp, "OneSignal", throttle_queue=True)  # the limit is per OneSignal app: pause the queue
    answer = resp.json() if resp.content else {}
    log.info("push %s for user %s: notification %s", ctx.job_id, printable(p.userId), printable(answer.get("id")))
    result = {"sent": True, "id": answer.get("id"), "idempotencyKey": body["idempotency_key"]}
    if answer.get("errors"):
        result["errors"] = answer["errors"]
    return result


def load_user(ctx: JobContext, user_id: str) -> dict[str, Any]:
    """The user's push settings; an unknown user is a permanent failure."""
    engine = ctx.services.engine
    query = select(users.c.push_enabled, users.c.onesignal_player_id, users.c.lang).where(users.c.id == user_id)
    with reachable(engine), engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        raise PermanentFailure(f"user {user_id!r} does not exist")
    return dict(row)


def notification(p: SendPush, player_id: str, app_id: str | None, job_id: str) -> dict[str, Any]:
    """The OneSignal create-notification body."""
    return {
        "app_id": app_id,
        "target_channel": "push",
        "include_subscription_ids": [player_id],
        "headings": {"en": p.title},
        "contents": {"en": p.message},
        "data": p.data,
        "priority": PRIORITY[p.priority],
        "idempotency_key": idempotency_key(job_id),
    }


def append_outbox(data_dir: Path, body: dict[str, Any]) -> Path:
    """Append the notification as one JSON line to `<data_dir>/outbox/push.jsonl`."""
    path = data_dir / "outbox" / "push.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({**body, "queued_at": utcnow().isoformat()}, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write with O_APPEND: lines never interleave
    finally:
        os.close(fd)
    return path
