"""Keyset pages of dead letters: newest first by (failed_at, id), the order of `deadletter.Filter.query`.

A page is named by the key of its first entry (`start`, inclusive), never by an offset: it reads the page's
rows plus one (the next page's start) from that key on, and, for the previous link, the keys of at most one
page of newer rows. So a page costs the same at any depth, and entries recorded or changed meanwhile never
shift an entry onto two pages or off every page. Rows are read as ids, then fetched through the store's
public `get`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, or_

from jobctl import deadletter as dl
from jobctl.db import dead_letters, utcnow
from jobctl.errors import UsageError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)


@dataclass(frozen=True, order=True)
class Key:
    """Where an entry sits in the newest-first order."""

    failed_at: datetime
    id: int

    def text(self) -> str:
        """The key as a URL parameter: microseconds since the epoch and the id (`1764604800123456:42`)."""
        return f"{(self.failed_at - EPOCH) // US}:{self.id}"

    @staticmethod
    def parse(text: str) -> Key:
        """A key from `text()`'s form; UsageError (400) for anything else."""
        us, sep, ident = text.partition(":")
        try:
            if not sep:
                raise ValueError(text)
            return Key(EPOCH + int(us) * US, int(ident))
        except (ValueError, OverflowError):
            raise UsageError(f"page start {text!r} is not MICROSECONDS:ID") from None


@dataclass(frozen=True)
class Page:
    """One page of entries, with the starts of the previous and next pages (None: none; `prev_first`: the
    previous page is the first, linked without a start)."""

    entries: list[dl.Entry]
    start: Key | None
    next_start: Key | None
    prev_start: Key | None
    prev_first: bool


def _from(q: Select[Any], k: Key, older: bool, inclusive: bool) -> Select[Any]:
    """`q` restricted to keys at or past `k`, going older (or newer); the bound on failed_at alone lets an
    index on (…, failed_at) range-scan."""
    t = dead_letters.c
    if older:
        tie = t.id <= k.id if inclusive else t.id < k.id
        return q.where(and_(t.failed_at <= k.failed_at, or_(t.failed_at < k.failed_at, tie)))
    tie = t.id >= k.id if inclusive else t.id > k.id
    return q.where(and_(t.failed_at >= k.failed_at, or_(t.failed_at > k.failed_at, tie)))


def _keys(store: dl.DeadLetterStore, q: Select[Any]) -> list[Key]:
    t = dead_letters.c
    with store.conn(create=False) as c:
        return [Key(r.failed_at, r.id) for r in c.execute(q.with_only_columns(t.id, t.failed_at))]


def page(store: dl.DeadLetterStore, flt: dl.Filter, start: Key | None) -> Page:
    """The page of `flt.limit` entries matching `flt` that starts at `start` (None: the newest)."""
    size = flt.limit or 100
    if not store.exists():
        return Page([], start, None, None, False)
    now = utcnow()
    q = flt.query(now).limit(size + 1)
    if start is not None:
        q = _from(q, start, older=True, inclusive=True)
    found = _keys(store, q)
    rows, rest = found[:size], found[size:]
    prev_start, prev_first = None, False
    if start is not None:
        newer = _keys(store, _from(flt.query(now, newest_first=False).limit(size + 1), start, older=False,
                                   inclusive=False))
        if len(newer) > size:
            prev_start = newer[size - 1]
        elif newer:
            prev_first = True
    entries = store.get([k.id for k in rows]) if rows else []
    return Page(entries, start, rest[0] if rest else None, prev_start, prev_first)
