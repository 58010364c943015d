"""The two jobs: payload models (pydantic) and processors (`fn(payload, ctx)`), imported on first use.

generate-report: fetch (audit-log counts from the app database), process (totals), render (a PDF
through Pillow), upload (jobctl's storage), reporting progress 0/30/60/90/100. Running it twice
writes the same document under the same key: idempotent.

send-welcome-email: idempotent through the e-mail log: the built-in `send-email` processor is called
with the idempotency key `welcome:<userId>`, so a second run (a retry, a replay, a duplicate enqueue)
finds the key in `email_log` and sends nothing.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from jobctl.api import JobContext, PermanentFailure
from jobctl.db import audit_logs, users
from jobctl.processors.email import send_email

Key = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,100}$")]


class ReportJob(BaseModel):
    """generate-report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reportId: Key  # noqa: N815 - payload field names are the producers' (camelCase)
    title: Annotated[str, Field(min_length=1, max_length=200)]
    days: Annotated[int, Field(ge=1, le=366)] = 7


class WelcomeEmail(BaseModel):
    """send-welcome-email."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    userId: Key  # noqa: N815


def generate_report(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Count the last `days` days of audit-log actions and store them as reports/<reportId>.pdf."""
    job = ReportJob.model_validate(payload)
    ctx.progress(0)
    since = datetime.now(UTC) - timedelta(days=job.days)
    query = (select(audit_logs.c.action, func.count()).where(audit_logs.c.created_at >= since)
             .group_by(audit_logs.c.action).order_by(audit_logs.c.action))
    with ctx.services.engine.connect() as conn:  # fetch
        rows = [(str(action), int(n)) for action, n in conn.execute(query)]
    ctx.progress(30)
    total = sum(n for _a, n in rows)  # process
    lines = [job.title, f"last {job.days} day(s), {total} audit-log entries", ""]
    lines += [f"{action or '(none)'}: {n}" for action, n in rows] or ["no activity"]
    ctx.progress(60)
    document = render_pdf(lines)  # render
    ctx.progress(90)
    key = f"reports/{job.reportId}.pdf"
    ctx.services.storage.put(key, document, "application/pdf")  # upload
    ctx.progress(100)
    return {"key": key, "bytes": len(document), "entries": total}


def render_pdf(lines: list[str]) -> bytes:
    """One A4 page (150 dpi) with the lines of text, as PDF bytes."""
    page = Image.new("RGB", (1240, 1754), "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=28)
    for n, line in enumerate(lines):
        draw.text((100, 120 + n * 44), line, fill="black", font=font)
    out = io.BytesIO()
    page.save(out, format="PDF", resolution=150.0, title=lines[0])
    return out.getvalue()


def send_welcome_email(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Send the welcome e-mail to a user once, whatever the number of runs."""
    job = WelcomeEmail.model_validate(payload)
    with ctx.services.engine.connect() as conn:
        user = conn.execute(select(users.c.email, users.c.lang).where(users.c.id == job.userId)).first()
    if user is None:
        raise PermanentFailure(f"no user {job.userId!r}")
    email = {"to": user.email, "subject": "Welcome", "template": "welcome", "data": {"name": user.email},
             "lang": user.lang if user.lang in ("en", "fr") else "en", "idempotencyKey": f"welcome:{job.userId}"}
    return send_email(email, ctx)
