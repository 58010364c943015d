"""`jobctl dlq list|show|replay|purge|export|sync|audit`: review and replay dead letters.

The store (SQLAlchemy) is imported inside each command, so `jobctl --help` and completion stay light.
Long operations show a progress bar on a terminal (`jobctl.progress`), fed by the core function.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from jobctl import progress, render
from jobctl.completion import job_names, queue_names
from jobctl.durations import MAX_AGE_S, iso, parse_duration
from jobctl.errors import OperationFailed, UsageError
from jobctl.runtime import Runtime

if TYPE_CHECKING:
    from jobctl.deadletter import Entry, Filter, Outcome
    from jobctl.queues import RateLimit

app = typer.Typer(help="Dead letters: jobs that failed permanently.", no_args_is_help=True)

STATUSES = ("open", "replayed", "purged")
MAX_ID = 2**31 - 1  # jobctl.deadletter.MAX_ID: ids and --limit fit a PostgreSQL integer
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
QueueOpt = Annotated[str | None, typer.Option("--queue", help="Only this queue.", show_default=False,
                                              autocompletion=queue_names)]
JobOpt = Annotated[str | None, typer.Option("--job", help="Only this job name.", show_default=False,
                                            autocompletion=job_names)]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Failed within this long (30m, 2h, 7d; at most "
                                                                "36500d).", show_default=False)]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, max=MAX_ID, help="At most N entries.",
                                              show_default=False)]
StatusOpt = Annotated[str | None, typer.Option("--status", help="open, replayed or purged.", show_default=False)]
ErrorOpt = Annotated[str | None, typer.Option(
    "--error", help="Only entries whose failure reason contains TEXT (exception class or message, any case).",
    show_default=False)]
AllOpt = Annotated[bool, typer.Option("--all", help="Every open entry.")]
Ids = Annotated[list[int] | None, typer.Argument(min=1, max=MAX_ID, help="Dead-letter ids.", show_default=False)]


def _filter(rt: Runtime, queue: str | None = None, job: str | None = None, since: str | None = None,
            limit: int | None = None, status: str | None = None, older_than: str | None = None,
            ids: list[int] | None = None, error: str | None = None) -> Filter:
    from jobctl.deadletter import Filter

    if queue:
        rt.settings.queues.get(queue)
    if job:
        rt.settings.queues.for_job(job)
    if status and status not in STATUSES:
        raise UsageError(f"unknown status {status!r}; known: {', '.join(STATUSES)}")
    if error is not None and not error.strip():
        raise UsageError("--error needs some text to look for")
    return Filter(tuple(ids or ()), queue, job, parse_duration(since, "--since", MAX_AGE_S) if since else None,
                  parse_duration(older_than, "--older-than", MAX_AGE_S) if older_than else None, status, limit,
                  error)


def _selector(ids: list[int] | None, every: bool, queue: str | None, job: str | None,
              error: str | None = None) -> None:
    chosen = every or queue or job or error
    if not (ids or chosen):
        raise UsageError("choose entries: give ids, or --all, --queue, --job or --error")
    if ids and chosen:
        raise UsageError("give ids or a filter (--all, --queue, --job, --error), not both")


def _rate(text: str | None) -> RateLimit | None:
    from jobctl.queues import parse_rate

    if text is None:
        return None
    try:
        return parse_rate(text.strip())
    except ValueError:
        raise UsageError(f"--rate {text!r} is not N/s, N/m or N/h with N >= 1 (e.g. 50/s)") from None


def _entries_table(title: str, entries: list[Entry]) -> None:
    rows = [(e.id, iso(e.failed_at), e.queue, e.job, e.job_id, e.attempts, e.status,
             e.replay_job_id or "", e.error[:100]) for e in entries]
    render.stdout().print(render.table(title, ["id", "failed at", "queue", "job", "job id", "attempts", "status",
                                               "replay job", "error"], rows))


@app.command("list")
def list_cmd(ctx: typer.Context, queue: QueueOpt = None, job: JobOpt = None, since: SinceOpt = None,
             limit: LimitOpt = None, status: StatusOpt = None, error: ErrorOpt = None,
             as_json: JsonOpt = False) -> None:
    """Dead letters, newest first."""
    from jobctl.deadletter import store_for

    entries = store_for(ctx.obj).entries(_filter(ctx.obj, queue, job, since, limit, status, error=error))
    if as_json:
        render.print_json([e.to_json() for e in entries])
    elif not entries:
        typer.echo("no dead letters")
    else:
        _entries_table("Dead letters", entries)


@app.command("show")
def show(ctx: typer.Context, entry_id: Annotated[int, typer.Argument(min=1, max=MAX_ID, help="Dead-letter id.")],
         as_json: JsonOpt = False) -> None:
    """One entry, with the traceback of its last failure (and a refusing endpoint's status and answer)."""
    from jobctl.deadletter import store_for

    entry = store_for(ctx.obj).get([entry_id])[0]
    doc = entry.to_json(full=True)
    if as_json:
        render.print_json(doc)
        return
    tb = doc.pop("traceback")
    doc["data"] = json.dumps(doc["data"])
    render.stdout().print(render.mapping_table(f"Dead letter {entry_id}", doc))
    if tb:  # from the store: control characters escaped, line feeds kept
        render.stdout().print(render.cell(tb), highlight=False)


def _outcome_lines(outcomes: list[Outcome], dry_run: bool) -> None:
    render.stdout().print(render.table("Dry run: would replay" if dry_run else "Replay",
                                       ["id", "queue", "job", "action", "replay job", "reason"],
                                       [(o.id, o.queue, o.job, o.action, o.replay_job_id, o.reason)
                                        for o in outcomes]))


@app.command("replay")
def replay(ctx: typer.Context, ids: Ids = None, every: AllOpt = False, queue: QueueOpt = None, job: JobOpt = None,
           since: SinceOpt = None, limit: LimitOpt = None, error: ErrorOpt = None,
           rate: Annotated[str | None, typer.Option(
               "--rate", help="Enqueue at most N entries per second (N/s; also N/m, N/h), so a large replay "
                              "does not flood a queue.", show_default=False)] = None,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="Change nothing; check and list what would "
                                                                   "be replayed.")] = False,
           as_json: JsonOpt = False) -> None:
    """Re-enqueue original payloads on their queues with fresh attempts (each entry at most once).

    An entry whose job RQ's tools requeued (rq requeue, rq-dashboard) and that is queued, running or
    finished again is skipped with the job's status as the reason (replaying it would run the job twice);
    a real run marks it replayed by that job, as `dlq sync` does. A job that fails permanently again
    updates its open entry (latest reason and traceback, attempts of both runs, first failure kept)."""
    from jobctl import replay as rp

    _selector(ids, every, queue, job, error)
    flt, pace = _filter(ctx.obj, queue, job, since, limit, ids=ids, error=error), _rate(rate)
    with progress.bar("checking" if dry_run else "replaying", as_json) as tick:
        outcomes = rp.replay(ctx.obj, flt, dry_run, rate=pace, progress=tick)
    failed = [o for o in outcomes if o.action == "failed"]
    counts = {a: sum(o.action == a for o in outcomes) for a in ("replayed", "skipped", "failed")}
    if as_json:
        render.print_json({"dry_run": dry_run, **counts, "entries": [asdict(o) for o in outcomes]})
    elif not outcomes:
        typer.echo("nothing to replay")
    else:
        _outcome_lines(outcomes, dry_run)
    if failed:
        verb = "would fail" if dry_run else "failed"
        raise OperationFailed(f"{len(failed)} of {len(outcomes)} replay(s) {verb}: "
                              + "; ".join(f"{o.id}: {o.reason}" for o in failed[:3]))


@app.command("purge")
def purge(ctx: typer.Context, ids: Ids = None, every: AllOpt = False, queue: QueueOpt = None,
          older_than: Annotated[str | None, typer.Option("--older-than", help="Failed longer ago than this "
                                                         "(7d; at most 36500d).",
                                                         show_default=False)] = None,
          error: ErrorOpt = None,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False) -> None:
    """Mark open entries purged (asks for confirmation unless --yes)."""
    from jobctl import replay as rp

    _selector(ids, every, queue, None, error)
    todo, _skipped = rp.select_open(ctx.obj, _filter(ctx.obj, queue, older_than=older_than, ids=ids, error=error))
    if not todo:
        typer.echo("nothing to purge")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("purge asks for confirmation: pass --yes when not on a terminal")
        if not typer.confirm(f"Purge {len(todo)} dead letter(s)?"):
            raise OperationFailed("cancelled; nothing purged")
    with progress.bar("purging") as tick:
        done = rp.purge(ctx.obj, todo, progress=tick)
    typer.echo(f"purged {len(done)} dead letter(s)")


@app.command("export")
def export(ctx: typer.Context,
           fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
           queue: QueueOpt = None, job: JobOpt = None, since: SinceOpt = None, status: StatusOpt = None,
           error: ErrorOpt = None) -> None:
    """Every matching entry (with traceback) on stdout, oldest first."""
    from jobctl.export import FORMATS
    from jobctl.export import export as run

    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use jsonl or csv")
    flt = _filter(ctx.obj, queue, job, since, status=status, error=error)
    with progress.bar("exporting") as tick:
        run(ctx.obj, flt, fmt, sys.stdout.write, progress=tick)


@app.command("sync")
def sync(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Record failed jobs still only in Redis (e.g. the database was down when they failed).

    First marks replayed the open entries whose job RQ's tools requeued and that is queued, running or
    finished again (`settled`), so `dlq list` and `dlq replay` no longer offer them."""
    from jobctl.capture import reconcile, settle_rerun
    from jobctl.deadletter import store_for

    store = store_for(ctx.obj)
    store.ready()
    settled = settle_rerun(ctx.obj, store)
    with progress.bar("recording", as_json) as tick:
        n = reconcile(ctx.obj, progress=tick)
    if as_json:
        render.print_json({"recorded": n, "settled": settled})
        return
    typer.echo(f"recorded {n} new dead letter(s)")
    if settled:
        typer.echo(f"marked {settled} dead letter(s) replayed: RQ's tools requeued their jobs")


@app.command("audit")
def audit(ctx: typer.Context, limit: LimitOpt = 50, as_json: JsonOpt = False) -> None:
    """Who replayed or purged which entries, newest first."""
    from jobctl.deadletter import store_for

    records = store_for(ctx.obj).audit_log(limit)
    if as_json:
        render.print_json(records)
        return
    render.stdout().print(render.table("Dead-letter audit", ["at", "actor", "action", "entries"],
                                       [(r["at"], r["actor"], r["action"], ", ".join(map(str, r["entry_ids"])))
                                        for r in records]))
