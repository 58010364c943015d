"""`jobctl demo`: one job of every kind, end to end, on the embedded defaults."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image
from sqlalchemy import delete, insert

from jobctl import db
from jobctl.config import Settings
from jobctl.control import show_job
from jobctl.plugins import default_hooks
from jobctl.pool import Pool
from jobctl.producer import Enqueued, enqueue
from jobctl.runtime import Runtime
from jobctl.services import Services

USER = "demo-user"


@dataclass
class Receiver:
    """A local stand-in for the application's webhook endpoint: verifies and records deliveries."""

    secret: str
    received: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        """Serve on a free loopback port; returns the URL."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = dict(p.split("=", 1) for p in self.headers.get("Stripe-Signature", "").split(","))
                expected = hmac.new(receiver.secret.encode(), f"{parts.get('t')}.".encode() + body,
                                    hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(expected, parts.get("v1", ""))
                receiver.received.append({"verified": ok, "event": json.loads(body or b"{}")})
                self.send_response(200 if ok else 400)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/stripe"


def seed(settings: Settings, now: datetime) -> None:
    """A demo user, an image in storage, old audit rows and notifications, an old temp file."""
    services = Services(settings)
    engine = services.engine
    with engine.begin() as conn:
        conn.execute(delete(db.users).where(db.users.c.id == USER))
        conn.execute(insert(db.users).values(id=USER, email="ana@example.com", lang="fr", push_enabled=True,
                                             onesignal_player_id="demo-device-1"))
        old = now - timedelta(days=400)
        conn.execute(insert(db.audit_logs), [{"created_at": old, "action": "demo"} for _ in range(3)])
        conn.execute(insert(db.notifications), [{"user_id": USER, "created_at": old, "body": "old"}] * 2)
    buf = io.BytesIO()
    Image.new("RGB", (1600, 1200), (30, 120, 200)).save(buf, "PNG")
    services.storage.put("uploads/demo/photo.png", buf.getvalue(), "image/png")
    tmp = settings.data_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    stale = tmp / "demo-stale.tmp"
    stale.write_text("old")
    os.utime(stale, (time.time() - 3 * 86400,) * 2)


def jobs(rt: Runtime) -> list[Enqueued]:
    """Enqueue one job of every kind."""
    return [
        enqueue(rt, "email", "send-email", {"to": "ana@example.com", "subject": "Bienvenue", "template": "welcome",
                                            "data": {"name": "Ana"}, "lang": "fr"}),
        enqueue(rt, "push", "send-push", {"userId": USER, "title": "Hello", "message": "Your photo is ready"}),
        enqueue(rt, "image-processing", "process-image", {
            "userId": USER, "originalPath": "uploads/demo/photo.png", "targetPath": "thumbs/demo/photo.jpg",
            "maxWidth": 400, "maxHeight": 400, "quality": 80}),
        enqueue(rt, "webhook-retry", "retry-webhook", {"eventId": f"evt_demo_{secrets.token_hex(4)}",
                                                       "eventType": "invoice.paid",
                                                       "eventData": {"id": "in_demo"}, "attemptNumber": 1}),
        *(enqueue(rt, "data-cleanup", name, {}) for name in
          ("cleanup-audit-logs", "cleanup-notifications", "cleanup-temp-files")),
    ]


def run(settings: Settings) -> tuple[Runtime, list[tuple[Enqueued, Any]], Receiver]:
    """Seed, enqueue, run the workers until done; returns each job with its final view."""
    receiver = Receiver(secrets.token_hex(16))
    if not settings.webhook_target_url:
        settings = replace(settings, webhook_target_url=receiver.start(), webhook_secret=receiver.secret)
    rt = Runtime(settings)
    rt.redis  # noqa: B018 - fail fast when Redis is down
    seed(settings, datetime.now(UTC))
    enqueued = jobs(rt)
    Pool(settings, settings.queues.names(), 2, burst=True, hooks=default_hooks).run()
    return rt, [(e, show_job(rt, e.id)) for e in enqueued], receiver


def outputs(settings: Settings, results: list[tuple[Enqueued, Any]], receiver: Receiver) -> list[tuple[str, str]]:
    """Where each job's output went, for the closing table."""
    out = []
    for e, view in results:
        where = json.dumps(view.result) if view.result is not None else (view.error or "")
        out.append((f"{e.job} ({view.status})", where))
    out.append(("outbox (e-mail)", str(settings.data_dir / "outbox" / "email")))
    out.append(("outbox (push)", str(settings.data_dir / "outbox" / "push.jsonl")))
    out.append(("storage", settings.storage_url))
    if receiver.received:
        verified = sum(1 for r in receiver.received if r["verified"])
        out.append(("webhook receiver", f"{len(receiver.received)} delivery(ies), {verified} signature(s) verified"))
    return out

