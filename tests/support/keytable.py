"""Check that every key in Redis matches a row of the table in `jobctl.keys`."""

from __future__ import annotations

import re

import redis

from jobctl import keys


def undocumented_keys(client: redis.Redis) -> list[str]:
    """Keys present in Redis that no row of the `jobctl.keys` table describes."""
    rows = [row.split("`")[1] for row in (keys.__doc__ or "").splitlines() if row.startswith("| `")]
    patterns = [re.compile("^" + re.sub(r"\\\{[a-z]+\\\}", "[^ ]+", re.escape(r)) + "$") for r in rows]
    found = [k.decode() for k in client.scan_iter(count=1000)]
    return [k for k in found if not any(p.match(k) for p in patterns)]
