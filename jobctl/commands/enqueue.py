"""`jobctl enqueue`: validate and enqueue one job, or a JSON-lines file of them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobctl import progress
from jobctl.completion import job_names, queue_names
from jobctl.durations import MAX_DELAY_S, parse_duration, parse_instant
from jobctl.errors import UsageError

if TYPE_CHECKING:
    from jobctl.runtime import Runtime


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (NaN and Infinity are refused)")


def loads(text: str) -> Any:
    """JSON without NaN or Infinity (raw control characters inside strings are read as if escaped);
    ValueError for bad or too deeply nested input, never RecursionError."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, strict=False)  # raw FF, TAB in strings: as escaped
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_text(path: str) -> str:
    """A file's text (`-`: stdin), strictly UTF-8: a lone surrogate never enters a payload."""
    name = "stdin" if path == "-" else path
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {name}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                         f"{exc.start})") from None


def read_payload(data: str | None, sets: list[str]) -> dict[str, Any]:
    """The payload from `--data JSON|@FILE|-` plus `--set key=value` (value parsed as JSON if it can be)."""
    doc: Any = {}
    if data is not None:
        if data == "-":
            text = read_text("-")
        elif data.startswith("@"):
            text = read_text(data[1:])
        else:
            text = data
        try:
            doc = loads(text)
        except ValueError as exc:
            raise UsageError(f"invalid JSON in --data: {exc}") from None
        if not isinstance(doc, dict):
            raise UsageError("--data must be a JSON object")
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {item!r}")
        try:
            value: Any = loads(raw)
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
    """One JSON payload per non-empty line, lines split on LF only (a CR before it is JSON whitespace), so
    line numbers match the file and U+2028, NEL or FF inside a string are just characters; invalid JSON
    names its line."""
    items, bad = [], []
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            items.append(loads(line))
        except ValueError as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            bad.append(f"line {n}: invalid JSON ({reason})")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise UsageError(f"{len(bad)} invalid line(s), nothing enqueued: {'; '.join(bad[:5])}{more}")
    return items


def enqueue_cmd(
    ctx: typer.Context,
    queue: Annotated[str, typer.Argument(help="Queue name (see `jobctl queues`).",
                                        autocompletion=queue_names)],
    job: Annotated[str, typer.Argument(help="Job name registered on that queue.",
                                      autocompletion=job_names)],
    data: Annotated[str | None, typer.Option("--data", "-d", help="Payload: JSON, @FILE, or - for stdin.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Set one payload field: key=value.")] = None,
    priority: Annotated[int | None, typer.Option("--priority", min=1, max=10,
                                                 help="1 (highest) to 10; default: the queue's.")] = None,
    delay: Annotated[str | None, typer.Option("--delay",
                                              help="Run after a delay: 30s, 5m, 2h (at most 365d).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Run at an ISO-8601 time (at most 365 days ahead).")] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="Idempotency: a live id is a duplicate.")] = None,
    file: Annotated[str | None, typer.Option("--file", help="JSON-lines file of payloads (- for stdin).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Validate and enqueue a job (or every line of --file; nothing is enqueued if any line is invalid)."""
    from jobctl.producer import When, enqueue, enqueue_many  # pydantic models: only when enqueueing

    rt: Runtime = ctx.obj
    if delay is not None and at is not None:
        raise UsageError("use either --delay or --at, not both")
    if at is not None and not at.strip():
        raise UsageError("--at must not be empty: use ISO-8601, e.g. 2026-01-31T02:00:00Z")
    when = When(delay_s=parse_duration(delay, "--delay", MAX_DELAY_S) if delay is not None else None,
                at=parse_instant(at) if at is not None else None)
    when.check()
    if file is not None:
        if data is not None or sets or job_id:
            raise UsageError("--file cannot be combined with --data, --set or --job-id")
        items = read_lines(file)
        rt.settings.queues.check_job(queue, job)
        with progress.bar("enqueueing", as_json) as tick:
            done = [0]

            def advance(n: int) -> None:
                done[0] += n
                tick(done[0], len(items))

            out = enqueue_many(rt, queue, job, items, priority=priority, when=when, progress=advance)
        if as_json:
            from jobctl import render  # Rich: only for --json

            render.print_json({"queue": queue, "job": job, "count": len(out),
                               "ids": [e.id for e in out], "status": out[0].status if out else "queued"})
        else:
            typer.echo(f"enqueued {len(out)} {job} job(s) on {queue}")
        return
    result = enqueue(rt, queue, job, read_payload(data, sets or []), priority=priority, when=when, job_id=job_id)
    if as_json:
        from jobctl import render

        render.print_json(result.to_json())
    elif result.status == "duplicate":
        typer.echo(f"{result.id} (duplicate: already enqueued, nothing changed)")
    else:
        typer.echo(result.id)
