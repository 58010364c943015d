"""The dashboard's pages and actions. Each reads through, or acts through, the functions the CLI uses:
`metrics.snapshot` (stats), `control` (jobs, pause/resume, cancel, workers), `deadletter`/`replay` (dlq),
`schedules`. Actions are POSTs that `app.guard` has checked; each is audited with the signed-in user."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, abort, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from jobctl import control, metrics, schedules
from jobctl import deadletter as dl
from jobctl import replay as rp
from jobctl.durations import MAX_AGE_S, iso, parse_duration
from jobctl.errors import JobctlError, UsageError
from jobctl.web import lockout, paging, security
from jobctl.web.app import log, state, user
from jobctl.web.charts import bars

PAGE_SIZES = (20, 50, 100, 200)
MAX_SELECTION = 1000  # dead letters one replay or purge form may carry
COLUMNS = (("waiting", "waiting"), ("active", "active"), ("delayed", "delayed"), ("completed_1h", "completed 1h"),
           ("failed_1h", "failed 1h"), ("retried_1h", "retried 1h"), ("avg_ms_1h", "avg ms"), ("p50_ms_1h", "p50 ms"),
           ("p95_ms_1h", "p95 ms"), ("rate_per_s", "jobs/s (5 min)"), ("drain_s", "drain s"),
           ("oldest_waiting_s", "oldest waiting s"))  # QueueStats fields, as `stats --json` names them


def _local(path: str) -> str | None:
    """A path of this dashboard given as `/queues/x?...` (relative to its mount point), made absolute under
    the mount point; None for anything that could leave it (`//host`, `/\\host`, a scheme)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or ":" in path.split("?")[0]:
        return None
    return request.script_root + path


def _actor() -> str:
    return f"{user()} via dashboard"


def _audit(action: str, detail: dict[str, Any]) -> None:
    """Record a non-dead-letter action (pause, resume, cancel) in the same audit trail, with the user."""
    log.info("%s by %s: %s", action, _actor(), detail)
    try:
        with dl.acting_as(_actor()):
            dl.store_for(state().rt).audit(action, [], json.dumps(detail))
    except JobctlError as exc:
        flash(f"done, but the audit trail could not record it: {exc}", "error")


def queues() -> str:
    """Every queue: the `jobctl stats` snapshot, throughput per minute over the last hour, policy, pause."""
    rt = state().rt
    snap = metrics.snapshot(rt)
    rows = []
    for q in snap.queues:
        p = rt.settings.queues.get(q.name)
        rows.append({"q": q, "doc": q.to_json(), "policy": p,
                     "flags": metrics.flags(q, p.backlog_alert, p.failed_alert),
                     "chart": bars(list(zip(q.completed_per_min, q.failed_per_min, strict=True)),
                                   label=f"{q.name}: jobs per minute, last hour")})
    return render_template("queues.html", snap=snap, rows=rows, columns=COLUMNS)


def queue_jobs(name: str) -> str:
    """One queue's jobs in one state, a page at a time (index-range reads; fast at any size)."""
    rt = state().rt
    rt.settings.queues.get(name)
    st = request.args.get("state", "waiting")
    size = request.args.get("size", 50, type=int) or 50
    size = size if size in PAGE_SIZES else 50
    page_no = max(1, request.args.get("page", 1, type=int) or 1)
    page = control.list_jobs(rt, name, st, (page_no - 1) * size, size)
    last = max(1, -(-page.total // size))
    return render_template("jobs.html", name=name, page=page, counts=control.job_counts(rt, name), page_no=page_no,
                           size=size, last=last, sizes=PAGE_SIZES, paused=name in control.paused(rt))


def _span_s(start: str | None, end: str | None) -> float | None:
    """Seconds between two ISO-8601 times of a job view (None when either is missing or unreadable)."""
    try:
        return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3) \
            if start and end else None
    except ValueError:
        return None


def job(job_id: str) -> str:
    """One job: payload (masked), attempts, progress, timings, result, error and traceback."""
    d = state()
    detail = control.job_detail(d.rt, job_id)
    v = detail.view
    return render_template("job.html", d=detail, v=v, waited_s=_span_s(v.enqueued_at, v.started_at),
                           ran_s=_span_s(v.started_at, v.ended_at),
                           data=json.dumps(d.masker.apply(v.data), indent=2),
                           result=None if v.result is None else json.dumps(d.masker.apply(v.result), indent=2))


def cancel(job_id: str) -> Response:
    """Cancel a waiting or delayed job (`jobs cancel`)."""
    before = control.cancel_job(state().rt, job_id)
    _audit("cancel-job", {"job_id": job_id, "was": before})
    flash(f"cancelled {job_id} (was {before})", "ok")
    return redirect(url_for("job", job_id=job_id))


def set_paused(name: str, pause: bool) -> Response:
    """Pause or resume one queue (`queues pause|resume`)."""
    control.set_paused(state().rt, [name], pause)
    _audit("pause" if pause else "resume", {"queues": [name]})
    flash(f"{'paused' if pause else 'resumed'}: {name}", "ok")
    return redirect(_local(request.form.get("back", "")) or url_for("queues"))


def _filter(args: Any, default_status: str | None = "open") -> tuple[dl.Filter, dict[str, str]]:
    """A dead-letter Filter from query or form fields (queue, job, reason, since, status, limit, ids), and the
    fields as given (to refill the form)."""
    rt = state().rt
    given = {k: (args.get(k) or "").strip() for k in ("queue", "job", "reason", "since", "status", "limit", "ids")}
    if given["queue"]:
        rt.settings.queues.get(given["queue"])
    if given["job"]:
        rt.settings.queues.for_job(given["job"])
    status = given["status"] or default_status
    if status == "any":
        status = None
    if status and status not in dl.STATUSES:
        raise UsageError(f"unknown status {status!r}; known: {', '.join(dl.STATUSES)}, any")
    try:
        ids = tuple(int(i) for i in given["ids"].replace(",", " ").split())
        limit = int(given["limit"]) if given["limit"] else 100
    except ValueError:
        raise UsageError("ids and limit must be whole numbers") from None
    _check_ids(ids)
    flt = dl.Filter(ids=ids, queue=given["queue"] or None, job=given["job"] or None,
                    since_s=parse_duration(given["since"], "since", MAX_AGE_S) if given["since"] else None,
                    status=status, limit=max(1, min(limit, MAX_SELECTION)), error=given["reason"] or None)
    return flt, given


def _page(flt: dl.Filter, args: Any) -> paging.Page:
    """The keyset page of `flt` that starts at the `start` field (none or empty: the newest)."""
    start = (args.get("start") or "").strip()
    return paging.page(dl.store_for(state().rt), flt, paging.Key.parse(start) if start else None)


def _kept(given: dict[str, str]) -> dict[str, str]:
    """The filter fields a page link keeps (those given, without a selection of ids)."""
    return {k: v for k, v in given.items() if v and k != "ids"}


def dead_letters() -> str:
    """Dead letters, newest first, filtered by queue, job, reason, time and status, a keyset page at a time."""
    d = state()
    flt, given = _filter(request.args)
    page = _page(flt, request.args)
    return render_template("dead_letters.html", page=page, entries=page.entries, given=given, kept=_kept(given),
                           flt=flt, statuses=dl.STATUSES, queue_names=d.rt.settings.queues.names(), iso=iso)


def dead_letter(entry_id: int) -> str:
    """One dead letter with its payload (masked) and traceback."""
    d = state()
    e = dl.store_for(d.rt).get([entry_id])[0]
    return render_template("dead_letter.html", e=e, iso=iso, data=json.dumps(d.masker.apply(e.data), indent=2))


def preview(action: str) -> str:
    """Dry run of a replay (`dlq replay --dry-run`) or the list a purge would mark, of the ids given or else of
    the entries of the list page the filters and `start` name: changes nothing; its form carries the ids
    shown, so confirming acts on exactly those."""
    rt = state().rt
    flt, given = _filter(request.args)
    if not flt.ids:  # "replay these…" of a list page: exactly its entries, oldest first
        flt = dl.Filter(ids=tuple(e.id for e in reversed(_page(flt, request.args).entries)))
    outcomes: list[dl.Outcome] = []  # an empty page selects nothing (an empty Filter would select everything)
    if flt.ids and action == "replay":
        outcomes = rp.replay(rt, flt, dry_run=True)
    elif flt.ids:
        todo, skipped = rp.select_open(rt, flt)
        outcomes = [dl.Outcome(e.id, e.queue, e.job, "would purge") for e in todo] + skipped
    ids = [o.id for o in outcomes if o.action.startswith("would")]
    return render_template("preview.html", action=action, outcomes=outcomes, ids=" ".join(map(str, ids)),
                           given=given)


def _check_ids(ids: tuple[int, ...]) -> None:
    """Dead-letter ids the store can hold (the CLI's bounds), or a UsageError (400)."""
    if any(not 1 <= i <= dl.MAX_ID for i in ids):
        raise UsageError(f"ids are whole numbers from 1 to {dl.MAX_ID}")


def act(action: str) -> str:
    """Replay or purge the dead letters a preview listed (ids only), audited with the user."""
    rt = state().rt
    try:
        ids = tuple(dict.fromkeys(int(i) for i in request.form.get("ids", "").split()))
    except ValueError:
        raise UsageError("ids must be whole numbers") from None
    if not ids:
        raise UsageError("nothing selected: preview a selection first")
    _check_ids(ids)
    if len(ids) > MAX_SELECTION:
        raise UsageError(f"at most {MAX_SELECTION} dead letters at once")
    with dl.acting_as(_actor()):
        if action == "replay":
            outcomes = rp.replay(rt, dl.Filter(ids=ids), rate=_rate(request.form.get("rate", "")))
        else:
            todo, skipped = rp.select_open(rt, dl.Filter(ids=ids))
            done = set(rp.purge(rt, todo))
            outcomes = [dl.Outcome(e.id, e.queue, e.job, "purged" if e.id in done else "skipped") for e in todo]
            outcomes += skipped
    log.info("%s of dead letters %s by %s", action, list(ids), _actor())
    return render_template("outcome.html", action=action, outcomes=outcomes)


def export() -> Response:
    """The filtered dead letters as `dlq export` writes them (jsonl or csv, with tracebacks, unmasked: the full
    record), for signed-in users only."""
    from jobctl.export import export as run

    if not (state().actions and user()):
        return Response("export is the full record (payloads unmasked): sign in first\n", 403,
                        mimetype="text/plain")
    fmt = request.args.get("format", "jsonl")
    flt, given = _filter(request.args)
    if not given["limit"]:
        flt = dataclasses.replace(flt, limit=None)
    chunks: list[str] = []
    n = run(state().rt, flt, fmt, chunks.append)
    log.info("export of %d dead letters (%s) by %s", n, fmt, _actor())
    kind = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return Response("".join(chunks), mimetype=kind,
                    headers={"Content-Disposition": f'attachment; filename="dead-letters.{fmt}"'})


def sync() -> Response:
    """Record failed jobs still only in Redis (`dlq sync`)."""
    rt = state().rt
    dl.store_for(rt).ready()
    n = dl.reconcile(rt)
    _audit("sync", {"recorded": n})
    flash(f"recorded {n} new dead letter(s)", "ok")
    return redirect(url_for("dead_letters"))


def _rate(text: str) -> Any:
    """The replay pace typed in the confirm form (N/s, N/m, N/h), or None for as fast as possible."""
    from jobctl.queues import parse_rate

    if not text.strip():
        return None
    try:
        return parse_rate(text.strip())
    except ValueError:
        raise UsageError(f"rate {text!r} is not N/s, N/m or N/h with N >= 1 (e.g. 50/s)") from None


def audit() -> str:
    """Who replayed, purged, paused, resumed or cancelled what, newest first."""
    return render_template("audit.html", records=dl.store_for(state().rt).audit_log(200))


def workers() -> str:
    """Live worker pools (`jobctl workers`)."""
    return render_template("workers.html", pools=control.list_workers(state().rt))


def schedules_page() -> str:
    """Installed schedules with their next run (`jobctl schedule list`)."""
    now = datetime.now(UTC)
    valid, invalid = schedules.load(state().rt)  # StoreUnreadable: the error page, with the reason
    rows = [(s, iso(schedules.next_due(s, now))) for s in valid]
    return render_template("schedules.html", rows=rows, invalid=invalid)


def stats_json() -> Response:
    """The snapshot as `jobctl stats --json` prints it."""
    from flask import jsonify

    return jsonify(metrics.snapshot(state().rt).to_json())


def login() -> Any:
    """Sign in with the configured user and password, or the token."""
    d = state()
    if request.method == "POST":
        client = request.remote_addr or "unknown"
        wait_s = lockout.attempt(d.rt.redis, client, d.lockout)  # recorded as a failure until it succeeds
        if wait_s > 0:
            return _locked_out(client, wait_s)
        name = security.check_login(d.rt.settings, request.form.get("user", ""), request.form.get("secret", ""))
        if name is None:
            log.warning("failed sign-in from %s", client)
            time.sleep(0.5)  # slows guessing down a little; the credential's strength is the real guard
            return render_template("login.html", error="wrong user, password or token"), 403
        lockout.succeeded(d.rt.redis, client)
        session.clear()
        session.update(user=name, at=time.time())
        log.info("%s signed in from %s", name, request.remote_addr)
        return redirect(_local(request.args.get("next", "")) or url_for("queues"))
    return render_template("login.html", error=None)


def _locked_out(client: str, wait_s: float) -> tuple[str, int, dict[str, str]]:
    """The 429 answer to a client locked out after failed sign-ins (the credential it sent is not checked)."""
    wait = math.ceil(wait_s)
    log.warning("sign-in from %s refused: locked out for %d s more after repeated failures", client, wait)
    return render_template("login.html", error=f"too many failed sign-ins from your address: try again in {wait} s"), \
        429, {"Retry-After": str(wait)}


def logout() -> Response:
    """Sign out."""
    session.clear()
    return redirect(url_for("login"))


def register(app: Flask) -> None:
    """Add every page and action to `app`."""
    get, post = ["GET"], ["POST"]
    app.add_url_rule("/", "queues", queues, methods=get)
    app.add_url_rule("/stats.json", "stats_json", stats_json, methods=get)
    app.add_url_rule("/queues/<name>", "queue_jobs", queue_jobs, methods=get)
    app.add_url_rule("/queues/<name>/pause", "pause", lambda name: set_paused(name, True), methods=post)
    app.add_url_rule("/queues/<name>/resume", "resume", lambda name: set_paused(name, False), methods=post)
    app.add_url_rule("/jobs/<job_id>", "job", job, methods=get)
    app.add_url_rule("/jobs/<job_id>/cancel", "cancel", cancel, methods=post)
    app.add_url_rule("/dead-letters", "dead_letters", dead_letters, methods=get)
    app.add_url_rule("/dead-letters/<int:entry_id>", "dead_letter", dead_letter, methods=get)
    for action in ("replay", "purge"):
        app.add_url_rule(f"/dead-letters/{action}", f"preview_{action}", lambda a=action: preview(a), methods=get)
        app.add_url_rule(f"/dead-letters/{action}", action, lambda a=action: act(a), methods=post)
    app.add_url_rule("/dead-letters/export", "export", export, methods=get)
    app.add_url_rule("/dead-letters/sync", "sync", sync, methods=post)
    app.add_url_rule("/audit", "audit", audit, methods=get)
    app.add_url_rule("/workers", "workers", workers, methods=get)
    app.add_url_rule("/schedules", "schedules", schedules_page, methods=get)
    app.add_url_rule("/login", "login", login, methods=["GET", "POST"])
    app.add_url_rule("/logout", "logout", logout, methods=post)
    app.add_url_rule("/favicon.ico", "favicon", lambda: abort(404), methods=get)
