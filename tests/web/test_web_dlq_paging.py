"""The dead-letter page's keyset paging over HTTP (real server, real SQLite store of 3,000 entries with ties on
failed_at and ids out of time order): following "older" links reaches every entry exactly once in the
newest-first order, "newer" links walk back through the same pages, the filters survive every link, no query
uses an OFFSET or reads more than a page and one row, and "replay these…" of a deep page (in Chromium too)
acts on exactly that page's entries."""

from __future__ import annotations

import html
import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import event, insert

from jobctl import db
from jobctl import deadletter as dl
from jobctl.runtime import Runtime
from jobctl.web import paging
from tests.support.jobs import hook, push
from tests.web.conftest import browser_sign_in, csrf_of, origin_of, signed_in

N = 3000
BASE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _seed(rt: Runtime, n: int = N) -> list[dict[str, Any]]:
    """`n` dead letters in one transaction through the store's table: 7 share each failed_at, and ids do not
    follow time. Returns the rows (with ids) newest first, in the page's order."""
    store = dl.store_for(rt)
    store.ready()
    slots = list(range(n))
    random.Random(7).shuffle(slots)
    rows = []
    for i, slot in enumerate(slots):
        queue, job, data = ("webhook-retry", "retry-webhook", hook(n=i)) if i % 3 == 0 else \
            ("push", "send-push", push(n=i))
        rows.append({"queue": queue, "job": job, "job_id": f"j{i}", "data": json.dumps(data), "attempts": 1,
                     "error": "HTTP 503 from upstream" if i % 4 == 0 else "invalid device id",
                     "status": ("replayed", "purged", *["open"] * 8)[i % 10],
                     "failed_at": BASE - timedelta(seconds=slot // 7)})
    with store.conn() as c:
        c.execute(insert(db.dead_letters), rows)
    by_job = {e.job_id: e.id for e in store.entries(dl.Filter())}
    for r in rows:
        r["id"] = by_job[r["job_id"]]
    return sorted(rows, key=lambda r: (r["failed_at"], r["id"]), reverse=True)


def _shown(page: str) -> list[int]:
    table = page.split('<table id="dead-letters">', 1)[1].split("</table>", 1)[0]
    return [int(i) for i in re.findall(r'<tr data-entry="(\d+)"', table)]


def _link(page: str, which: str) -> str | None:
    m = re.search(rf'<a id="{which}" href="([^"]+)"', page)
    return html.unescape(m.group(1)) if m else None


def _walk(s: requests.Session, site: str, first: str, which: str) -> Iterator[tuple[str, str]]:
    """(url, html) of every page reached from `first` by following the `which` link until there is none."""
    url: str | None = first
    for _ in range(N + 1):  # bounded: a loop of links fails below instead of running on
        if url is None:
            return
        r = s.get(url if url.startswith("http") else f"{site}{url}", timeout=30)
        assert r.status_code == 200, r.text
        yield r.url, r.text
        url = _link(r.text, which)
    pytest.fail(f"following {which!r} links never ended")


@pytest.fixture
def statements(rt: Runtime) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement (with its parameters) run on the test's database meanwhile: the server runs in
    this process, on the same engine."""
    seen: list[tuple[str, Any]] = []
    engine = db.engine_for(rt.settings.database_url)

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_every_entry_is_reached_exactly_once_by_following_the_links(site: str, rt: Runtime,
                                                                    statements: list[str]) -> None:
    rows = _seed(rt)
    s = signed_in(site)
    statements.clear()
    pages = list(_walk(s, site, f"{site}/dead-letters?status=any&limit=100", "next"))
    seen = [i for _, text in pages for i in _shown(text)]
    assert len(pages) == N // 100 and len(seen) == len(set(seen)) == N
    assert seen == [r["id"] for r in rows]  # newest first, ties broken by id, across every page boundary
    assert all(len(_shown(text)) == 100 for _, text in pages)
    assert _link(pages[0][1], "prev") is None and _link(pages[-1][1], "next") is None

    reads = [(q, p) for q, p in statements if "FROM dead_letters" in q and q.lstrip().startswith("SELECT")]
    keyed = [p[-2:] for q, p in reads if q.rstrip().endswith("LIMIT ? OFFSET ?")]  # SQLite's form of a LIMIT
    assert len(keyed) == 2 * len(pages) - 1  # each page's rows and the next start; the newer keys (not page 1)
    assert {offset for _, offset in keyed} == {0} and max(limit for limit, _ in keyed) == 101  # at any depth
    assert len(reads) == len(keyed) + len(pages)  # and one read of the page's entries by id
    assert all("dead_letters.id IN" in q for q, _ in reads if not q.rstrip().endswith("OFFSET ?"))

    back = list(_walk(s, site, pages[-1][0], "prev"))
    assert [_shown(t) for _, t in back] == [_shown(t) for _, t in reversed(pages)]
    assert "start=" not in back[-1][0]  # the first page again, without a start


def test_filters_survive_paging(site: str, rt: Runtime) -> None:
    rows = _seed(rt)
    want = [r["id"] for r in rows if r["queue"] == "push" and r["status"] == "open" and "503" in r["error"]]
    s = signed_in(site)
    first = f"{site}/dead-letters?queue=push&reason=503&status=open&limit=37"
    pages = list(_walk(s, site, first, "next"))
    seen = [i for _, text in pages for i in _shown(text)]
    assert len(want) > 37 * 5 and seen == want and len(set(seen)) == len(seen)
    for url, text in pages[1:]:
        q = parse_qs(urlsplit(url).query)
        assert (q["queue"], q["reason"], q["status"], q["limit"]) == (["push"], ["503"], ["open"], ["37"])
        assert "<option selected>push</option>" in text and 'name="reason" value="503"' in text
    back = list(_walk(s, site, pages[-1][0], "prev"))
    assert [i for _, t in reversed(back) for i in _shown(t)] == want
    assert s.get(f"{site}/dead-letters?start=yesterday", timeout=10).status_code == 400


def _preview_url(page_url: str, page: str, action: str) -> str:
    """The GET the filter form sends when its "replay these…" / "purge these…" button is pressed."""
    q = {k: v[0] for k, v in parse_qs(urlsplit(page_url).query).items() if k != "start"}
    m = re.search(rf'formaction="[^"]*/dead-letters/{action}" name="start" value="([^"]*)"', page)
    assert m, "no selection button on the page"
    q["start"] = html.unescape(m.group(1))
    return requests.Request("GET", page_url.split("?")[0] + f"/{action}", params=q).prepare().url or ""


def test_replay_of_a_deep_page_acts_on_exactly_its_entries(site: str, rt: Runtime) -> None:
    rows = _seed(rt)
    s = signed_in(site)
    pages = list(_walk(s, site, f"{site}/dead-letters?queue=push&status=open&limit=50", "next"))
    url, page = pages[7]
    ids = _shown(page)
    assert len(ids) == 50
    preview = s.get(_preview_url(url, page, "replay"), timeout=30).text
    assert sorted(int(i) for i in re.findall(r'<tr data-entry="(\d+)"', preview)) == sorted(ids)
    assert preview.count("would replay") == 50
    inside = rows[[r["id"] for r in rows].index(ids[10])]  # older than the page's start: a late arrival there
    assert inside["failed_at"] < rows[[r["id"] for r in rows].index(ids[0])]["failed_at"]  # lands on the page
    late, _ = dl.store_for(rt).record(dl.Failure("push", "send-push", "late", push(), "boom", None, 1,
                                                 inside["failed_at"]))
    m = re.search(r'name="ids" value="([^"]*)"', preview)
    assert m
    done = s.post(f"{site}/dead-letters/replay", data={"csrf": csrf_of(preview), "ids": m.group(1)},
                  headers={"Origin": origin_of(site)}, timeout=60)
    assert done.status_code == 200 and done.text.count(">replayed<") == 50
    status = {e.id: e.status for e in dl.store_for(rt).entries(dl.Filter())}
    assert {i for i, st in status.items() if st == "replayed"} == \
        set(ids) | {r["id"] for r in rows if r["status"] == "replayed"}
    assert status[late] == "open"

    purge = s.get(_preview_url(url, page, "purge"), timeout=30).text  # the same page now: the next 50 open
    assert purge.count("would purge") == 50 and not set(ids) & {int(i) for i in
                                                                 re.findall(r'data-entry="(\d+)"', purge)}


def test_replay_these_from_the_third_page_in_the_browser(site: str, rt: Runtime, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    before = {r["id"] for r in _seed(rt, 160) if r["status"] == "replayed"}
    browser_sign_in(browser, site)
    browser.get(f"{site}/dead-letters?queue=push&limit=20")
    for _ in range(2):
        browser.find_element(By.ID, "next").click()
    ids = [int(tr.get_attribute("data-entry")) for tr in browser.find_elements(By.CSS_SELECTOR,
                                                                                "#dead-letters tr[data-entry]")]
    assert len(ids) == 20 and "start=" in browser.current_url and "queue=push" in browser.current_url
    browser.find_element(By.ID, "replay-selection").click()
    shown = [int(tr.get_attribute("data-entry")) for tr in browser.find_elements(By.CSS_SELECTOR,
                                                                                  "#preview tr[data-entry]")]
    assert sorted(shown) == sorted(ids)
    browser.find_element(By.ID, "confirm-button").click()
    assert len(browser.find_elements(By.XPATH, "//td[text()='replayed']")) == 20
    assert {e.id for e in dl.store_for(rt).entries(dl.Filter(status="replayed"))} == before | set(ids)


def test_a_page_over_every_status_reads_an_index_in_order(site: str, rt: Runtime, statements: list[str]) -> None:
    """`status=any` with no queue: the keyset read walks ix_dead_letters_failed_id instead of sorting every
    match (46-99 ms at 100,000 entries before the index); SQLite's plan says so for every page's reads."""
    rows = _seed(rt, 500)
    s = signed_in(site)
    statements.clear()
    deep = f"{site}/dead-letters?status=any&limit=50&start={paging.Key(rows[300]['failed_at'], rows[300]['id']).text()}"
    for url in (f"{site}/dead-letters?status=any&limit=50", deep):
        assert s.get(url, timeout=30).status_code == 200
    keyed = [(q, p) for q, p in statements if "FROM dead_letters" in q and q.rstrip().endswith("LIMIT ? OFFSET ?")]
    assert len(keyed) == 3  # the first page; the deep page and its newer keys
    with db.engine_for(rt.settings.database_url).connect() as conn:
        for q, p in keyed:
            plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {q}", tuple(p)))
            assert "ix_dead_letters_failed_id" in plan and "TEMP B-TREE" not in plan, plan
