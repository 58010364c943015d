"""`jobctl dlq list|show|replay|purge|export|sync|audit`: review and replay dead letters."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict
from typing import Annotated

import typer

from jobctl import deadletter as dl
from jobctl import render
from jobctl import replay as rp
from jobctl.durations import iso, parse_duration
from jobctl.errors import OperationFailed, UsageError
from jobctl.runtime import Runtime

app = typer.Typer(help="Dead letters: jobs that failed permanently.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
QueueOpt = Annotated[str | None, typer.Option("--queue", help="Only this queue.", show_default=False)]
JobOpt = Annotated[str | None, typer.Option("--job", help="Only this job name.", show_default=False)]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Failed within this long (30m, 2h, 7d).",
                                              show_default=False)]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="At most N entries.", show_default=False)]
StatusOpt = Annotated[str | None, typer.Option("--status", help="open, replayed or purged.", show_default=False)]
AllOpt = Annotated[bool, typer.Option("--all", help="Every open entry.")]
Ids = Annotated[list[int] | None, typer.Argument(help="Dead-letter ids.", show_default=False)]


def _filter(rt: Runtime, queue: str | None = None, job: str | None = None, since: str | None = None,
            limit: int | None = None, status: str | None = None, older_than: str | None = None,
            ids: list[int] | None = None) -> dl.Filter:
    if queue:
        rt.settings.queues.get(queue)
    if job:
        rt.settings.queues.for_job(job)
    if status and status not in dl.STATUSES:
        raise UsageError(f"unknown status {status!r}; known: {', '.join(dl.STATUSES)}")
    return dl.Filter(tuple(ids or ()), queue, job, parse_duration(since, "--since") if since else None,
                     parse_duration(older_than, "--older-than") if older_than else None, status, limit)


def _selector(ids: list[int] | None, every: bool, queue: str | None, job: str | None) -> None:
    if not (ids or every or queue or job):
        raise UsageError("choose entries: give ids, or --all, --queue or --job")
    if ids and (every or queue or job):
        raise UsageError("give ids or a filter (--all, --queue, --job), not both")


def _entries_table(title: str, entries: list[dl.Entry]) -> None:
    rows = [(e.id, iso(e.failed_at), e.queue, e.job, e.job_id, e.attempts, e.status,
             e.replay_job_id or "", e.error[:100]) for e in entries]
    render.stdout().print(render.table(title, ["id", "failed at", "queue", "job", "job id", "attempts", "status",
                                               "replay job", "error"], rows))


@app.command("list")
def list_cmd(ctx: typer.Context, queue: QueueOpt = None, job: JobOpt = None, since: SinceOpt = None,
             limit: LimitOpt = None, status: StatusOpt = None, as_json: JsonOpt = False) -> None:
    """Dead letters, newest first."""
    entries = dl.store_for(ctx.obj).entries(_filter(ctx.obj, queue, job, since, limit, status))
    if as_json:
        render.print_json([e.to_json() for e in entries])
    elif not entries:
        typer.echo("no dead letters")
    else:
        _entries_table("Dead letters", entries)


@app.command("show")
def show(ctx: typer.Context, entry_id: Annotated[int, typer.Argument(help="Dead-letter id.")],
         as_json: JsonOpt = False) -> None:
    """One entry, with the traceback."""
    entry = dl.store_for(ctx.obj).get([entry_id])[0]
    doc = entry.to_json(full=True)
    if as_json:
        render.print_json(doc)
        return
    tb = doc.pop("traceback")
    doc["data"] = json.dumps(doc["data"])
    render.stdout().print(render.mapping_table(f"Dead letter {entry_id}", doc))
    if tb:
        render.stdout().print(tb, markup=False, highlight=False)


@app.command("replay")
def replay(ctx: typer.Context, ids: Ids = None, every: AllOpt = False, queue: QueueOpt = None, job: JobOpt = None,
           since: SinceOpt = None, limit: LimitOpt = None,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="Change nothing; list what would be replayed.")]
           = False, as_json: JsonOpt = False) -> None:
    """Re-enqueue original payloads on their queues with fresh attempts (each entry at most once)."""
    _selector(ids, every, queue, job)
    outcomes = rp.replay(ctx.obj, _filter(ctx.obj, queue, job, since, limit, ids=ids), dry_run)
    failed = [o for o in outcomes if o.action == "failed"]
    counts = {a: sum(o.action == a for o in outcomes) for a in ("replayed", "skipped", "failed")}
    if as_json:
        render.print_json({"dry_run": dry_run, **counts, "entries": [asdict(o) for o in outcomes]})
    elif not outcomes:
        typer.echo("nothing to replay")
    else:
        render.stdout().print(render.table("Dry run: would replay" if dry_run else "Replay",
                                           ["id", "queue", "job", "action", "replay job", "reason"],
                                           [(o.id, o.queue, o.job, o.action, o.replay_job_id, o.reason)
                                            for o in outcomes]))
    if failed:
        raise OperationFailed(f"{len(failed)} of {len(outcomes)} replay(s) failed: "
                              + "; ".join(f"{o.id}: {o.reason}" for o in failed[:3]))


@app.command("purge")
def purge(ctx: typer.Context, ids: Ids = None, every: AllOpt = False, queue: QueueOpt = None,
          older_than: Annotated[str | None, typer.Option("--older-than", help="Failed longer ago than this (7d).",
                                                         show_default=False)] = None,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False) -> None:
    """Mark open entries purged (asks for confirmation unless --yes)."""
    _selector(ids, every, queue, None)
    todo, _skipped = rp.select_open(ctx.obj, _filter(ctx.obj, queue, older_than=older_than, ids=ids))
    if not todo:
        typer.echo("nothing to purge")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("purge asks for confirmation: pass --yes when not on a terminal")
        if not typer.confirm(f"Purge {len(todo)} dead letter(s)?"):
            raise OperationFailed("cancelled; nothing purged")
    done = rp.purge(ctx.obj, todo)
    typer.echo(f"purged {len(done)} dead letter(s)")


@app.command("export")
def export(ctx: typer.Context,
           fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
           queue: QueueOpt = None, job: JobOpt = None, since: SinceOpt = None, status: StatusOpt = None) -> None:
    """Every matching entry (with traceback) on stdout, oldest first."""
    if fmt not in ("jsonl", "csv"):
        raise UsageError(f"unknown format {fmt!r}; use jsonl or csv")
    entries = dl.store_for(ctx.obj).entries(_filter(ctx.obj, queue, job, since, status=status), newest_first=False)
    docs = [e.to_json(full=True) for e in entries]
    if fmt == "jsonl":
        for doc in docs:
            sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
        return
    fields = list(dl.Entry.__dataclass_fields__)
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for doc in docs:
        writer.writerow(doc | {"data": json.dumps(doc["data"], ensure_ascii=False)})


@app.command("sync")
def sync(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Record failed jobs still only in Redis (e.g. the database was down when they failed)."""
    dl.store_for(ctx.obj).ready()
    n = dl.reconcile(ctx.obj)
    if as_json:
        render.print_json({"recorded": n})
    else:
        typer.echo(f"recorded {n} new dead letter(s)")


@app.command("audit")
def audit(ctx: typer.Context, limit: LimitOpt = 50, as_json: JsonOpt = False) -> None:
    """Who replayed or purged which entries, newest first."""
    records = dl.store_for(ctx.obj).audit_log(limit)
    if as_json:
        render.print_json(records)
        return
    render.stdout().print(render.table("Dead-letter audit", ["at", "actor", "action", "entries"],
                                       [(r["at"], r["actor"], r["action"], ", ".join(map(str, r["entry_ids"])))
                                        for r in records]))
