"""Dead-letter counts from a SQLite store with the standard library, for `jobctl stats`' start-up.

Importing SQLAlchemy costs a `jobctl stats --json` more than everything else it does (issue 13:
~0.12 s of a ~0.25 s command on an idle machine). The default store is a SQLite file, and `stats` only
needs one aggregate over it, so this reads that with `sqlite3`: the same table, columns and timestamp
text as `jobctl.db.dead_letters` (SQLAlchemy stores a SQLite DateTime as naive UTC
`YYYY-MM-DD HH:MM:SS.ffffff`, so text comparison orders it). Whatever is not a plain SQLite file
URL, and any error, is left to the SQLAlchemy reader (`None`), which words errors the usual way.
`tests/test_startup.py` checks both readers agree on a real store.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

PREFIX = "sqlite:///"
BUSY_TIMEOUT_S = 5.0
QUERY = ("SELECT queue, count(*), sum(CASE WHEN failed_at >= ? THEN 1 ELSE 0 END) FROM dead_letters "
         "WHERE status = 'open' GROUP BY queue")


def sqlite_path(database_url: str) -> Path | None:
    """The file of a plain `sqlite:///PATH` URL; None for anything else (a driver, a query, memory, `~`)."""
    if not database_url.startswith(PREFIX) or "?" in database_url:
        return None
    database = database_url[len(PREFIX):]
    if database in ("", ":memory:") or database.startswith(("file:", "~")):
        return None
    return Path(database)


def dead_letter_counts(database_url: str, since: datetime) -> tuple[dict[str, int], dict[str, int], bool] | None:
    """(open per queue, open and failed since `since` per queue, whether the store exists), or None when
    this URL or this error is for the SQLAlchemy reader."""
    path = sqlite_path(database_url)
    if path is None:
        return None
    if not path.is_file():
        return {}, {}, False  # never create a database just to read it
    stamp = since.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            rows = conn.execute(QUERY, (stamp,)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if "no such table" in str(exc).lower():
            return {}, {}, False
        return None
    return {r[0]: int(r[1]) for r in rows}, {r[0]: int(r[2] or 0) for r in rows}, True
