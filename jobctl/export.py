"""Export of dead letters (`jobctl dlq export`): every matching entry with its traceback, oldest first,
as JSON lines or CSV, written through a callback so the CLI and the dashboard share it."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

from jobctl.deadletter import Entry, Filter, store_for
from jobctl.errors import UsageError
from jobctl.progress import Tick
from jobctl.runtime import Runtime

FORMATS = ("jsonl", "csv")
FIELDS = list(Entry.__dataclass_fields__)
_TICK_EVERY = 200


def export(rt: Runtime, flt: Filter, fmt: str, write: Callable[[str], object],
           progress: Tick | None = None) -> int:
    """Write the entries `flt` selects in `fmt` (jsonl or csv, header first) to `write`; returns
    how many. `progress(done, total)` follows the entries written."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use jsonl or csv")
    entries = store_for(rt).entries(flt, newest_first=False)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    if fmt == "csv":
        writer.writeheader()
    for n, e in enumerate(entries, 1):
        doc = e.to_json(full=True)
        if fmt == "jsonl":
            buf.write(json.dumps(doc, ensure_ascii=False) + "\n")
        else:
            writer.writerow(doc | {"data": json.dumps(doc["data"], ensure_ascii=False)})
        if n % _TICK_EVERY == 0 or n == len(entries):
            write(buf.getvalue())
            buf.seek(0)
            buf.truncate()
            if progress:
                progress(n, len(entries))
    if buf.tell():
        write(buf.getvalue())  # the csv header of an empty export
    return len(entries)
