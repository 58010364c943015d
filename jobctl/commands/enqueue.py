"""`jobctl enqueue`: validate and enqueue one job, or a JSON-lines file of them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from jobctl import render
from jobctl.durations import parse_duration, parse_instant
from jobctl.errors import UsageError
from jobctl.producer import When, enqueue, enqueue_many
from jobctl.runtime import Runtime


def read_payload(data: str | None, sets: list[str]) -> dict[str, Any]:
    """The payload from `--data JSON|@FILE|-` plus `--set key=value` (value parsed as JSON if it can be)."""
    doc: Any = {}
    if data is not None:
        if data == "-":
            text = sys.stdin.read()
        elif data.startswith("@"):
            try:
                text = Path(data[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot read {data[1:]}: {exc.strerror}") from None
        else:
            text = data
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"invalid JSON in --data: {exc}") from None
        if not isinstance(doc, dict):
            raise UsageError("--data must be a JSON object")
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {item!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        target = doc
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise UsageError(f"--set {key}: {part} is not an object")
        target[leaf] = value
    return doc


def read_lines(path: str) -> list[Any]:
    """One JSON payload per non-empty line; invalid JSON names its line."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    items, bad = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            bad.append(f"line {n}: invalid JSON ({exc.msg})")
    if bad:
        raise UsageError(f"{len(bad)} invalid line(s), nothing enqueued: {'; '.join(bad[:5])}")
    return items


def enqueue_cmd(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="Queue name (see `jobctl queues`).")],
    job: Annotated[str, typer.Argument(help="Job name registered on that queue.")],
    data: Annotated[str | None, typer.Option("--data", "-d", help="Payload: JSON, @FILE, or - for stdin.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Set one payload field: key=value.")] = None,
    priority: Annotated[int | None, typer.Option("--priority", min=1, max=10,
                                                 help="1 (highest) to 10; default: the queue's.")] = None,
    delay: Annotated[str | None, typer.Option("--delay", help="Run after a delay: 30s, 5m, 2h.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Run at an ISO-8601 time.")] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="Idempotency: a live id is a duplicate.")] = None,
    file: Annotated[str | None, typer.Option("--file", help="JSON-lines file of payloads (- for stdin).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Validate and enqueue a job (or every line of --file; nothing is enqueued if any line is invalid)."""
    rt: Runtime = ctx.obj
    if delay and at:
        raise UsageError("use either --delay or --at, not both")
    when = When(delay_s=parse_duration(delay, "--delay") if delay else None,
                at=parse_instant(at) if at else None)
    if file is not None:
        if data is not None or sets or job_id:
            raise UsageError("--file cannot be combined with --data, --set or --job-id")
        items = read_lines(file)
        rt.settings.queues.check_job(queue, job)
        if sys.stderr.isatty() and len(items) >= 5000 and not as_json:
            with Progress(transient=True) as bar:
                task = bar.add_task("enqueueing", total=len(items))
                out = enqueue_many(rt, queue, job, items, priority=priority, when=when,
                                   progress=lambda n: bar.advance(task, n))
        else:
            out = enqueue_many(rt, queue, job, items, priority=priority, when=when)
        if as_json:
            render.print_json({"queue": queue, "job": job, "count": len(out),
                               "ids": [e.id for e in out], "status": out[0].status if out else "queued"})
        else:
            typer.echo(f"enqueued {len(out)} {job} job(s) on {queue}")
        return
    result = enqueue(rt, queue, job, read_payload(data, sets or []), priority=priority, when=when, job_id=job_id)
    if as_json:
        render.print_json(result.to_json())
    elif result.status == "duplicate":
        typer.echo(f"{result.id} (duplicate: already enqueued, nothing changed)")
    else:
        typer.echo(result.id)
