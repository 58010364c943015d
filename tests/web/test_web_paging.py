"""A queue's jobs page at 1,000,000 waiting jobs: the page is read with index ranges only. Redis's MONITOR
records every command the real server's request sends (on this test's database): LLEN/ZCARD per level,
LRANGE/ZRANGE of the page's own slice, HMGET of its rows, nothing that scans or grows with the queue.
(Its speed is measured in bench/dashboard_paging.py, not asserted here.)"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import redis

from jobctl import control, keys
from jobctl.runtime import Runtime
from tests.web.conftest import signed_in

N = 1_000_000
HIGH = 30  # jobs on the higher-priority level push.p1, listed first
READS = {"LLEN", "ZCARD", "LRANGE", "ZRANGE", "ZREVRANGE", "HMGET", "SMEMBERS"}


def _fill(rt: Runtime) -> None:
    r = rt.redis
    for start in range(0, N, 50_000):
        r.rpush(keys.queue_list("push"), *(f"j{i:07d}" for i in range(start, min(N, start + 50_000))))
    r.rpush(keys.queue_list("push.p1"), *(f"h{i:03d}" for i in range(HIGH)))
    r.zadd(keys.finished("push"), {f"f{i:05d}": 1_700_000_000 + i for i in range(10_000)})
    for jid in ("j0999999", "h000", "f09999"):
        r.hset(keys.job(jid), mapping={"status": "queued", "jc_job": "send-push", "jc_attempt": 0, "jc_max": 3})


def _monitored(rt: Runtime, action: Callable[[], Any]) -> tuple[Any, list[list[str]]]:
    """Run `action` while MONITOR records the commands sent to this test's database."""
    db = rt.redis.connection_pool.connection_kwargs.get("db", 0)
    client = redis.Redis(**{k: v for k, v in rt.redis.connection_pool.connection_kwargs.items()
                            if k in ("host", "port", "db", "password", "username")})
    seen: list[list[str]] = []
    started = threading.Event()

    def listen() -> None:
        with client.monitor() as m:
            started.set()
            while True:
                cmd = m.next_command()
                if int(cmd.get("db", -1)) != db:
                    continue
                words = cmd["command"].split()
                if words[:2] == ["ECHO", "monitor-end"]:
                    return
                seen.append(words)

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert started.wait(5)
    rt.redis.echo("monitor-start")
    result = action()
    rt.redis.echo("monitor-end")
    t.join(10)
    client.close()
    i = next(k for k, w in enumerate(seen) if w[:2] == ["ECHO", "monitor-start"])
    return result, seen[i + 1:]


def _check_bounded(cmds: list[list[str]], size: int, rows: int) -> None:
    names = {c[0].upper() for c in cmds}
    assert sum(c[0].upper() == "HMGET" for c in cmds) == rows  # one per row shown, as recorded
    assert names <= READS, names - READS
    for c in cmds:
        if c[0].upper() in ("LRANGE", "ZRANGE", "ZREVRANGE"):
            start, stop = int(c[2].strip('"')), int(c[3].strip('"'))
            assert 0 <= start <= stop and stop - start < size, c
    assert sum(c[0].upper() in ("LRANGE", "ZRANGE", "ZREVRANGE") for c in cmds) >= 1
    assert len(cmds) <= 60 + 10 + 10 + rows + 2  # tab counts (6 states x 10 levels), sizes, slices, rows, paused


def test_last_page_of_a_million_jobs_is_index_range_reads(rt: Runtime, site: str) -> None:
    _fill(rt)
    page, cmds = _monitored(rt, lambda: control.list_jobs(rt, "push", "waiting", N + HIGH - 50, 50))
    assert page.total == N + HIGH
    assert [r.id for r in page.rows] == [f"j{i:07d}" for i in range(N - 50, N)]
    assert page.rows[-1].status == "queued" and page.rows[0].status is None  # no hash: shown as gone
    _check_bounded(cmds, 50, 50)

    first = control.list_jobs(rt, "push", "waiting", 0, 50)  # crosses from push.p1 to push
    assert [r.id for r in first.rows] == [f"h{i:03d}" for i in range(HIGH)] + [f"j{i:07d}" for i in range(20)]
    assert {r.level for r in first.rows[:HIGH]} == {"push.p1"}

    s = signed_in(site)
    resp, cmds = _monitored(rt, lambda: s.get(f"{site}/queues/push?state=waiting&page=20001&size=50", timeout=30))
    assert resp.status_code == 200 and "j0999999" in resp.text and "page 20001 of 20001" in resp.text
    assert re.search(r'id="total">1000030<', resp.text)
    _check_bounded(cmds, 50, 30)  # the last page: jobs 1,000,001-1,000,030


def test_ended_jobs_page_newest_first(rt: Runtime, site: str) -> None:
    _fill(rt)
    s = signed_in(site)
    resp, cmds = _monitored(rt, lambda: s.get(f"{site}/queues/push?state=completed&size=20", timeout=30))
    assert resp.status_code == 200
    shown = re.findall(r'href="/jobs/(f\d+)"', resp.text)
    assert shown == [f"f{i:05d}" for i in range(9999, 9979, -1)]
    _check_bounded(cmds, 20, 20)
    assert control.list_jobs(rt, "push", "completed", 9990, 50).rows[-1].id == "f00000"
