"""The dashboard in a real browser (headless Chromium under Selenium) against a real Redis, real worker pools
(`tests.support.pool_harness` subprocesses with the production hooks, so dead letters reach the test's
SQLite store) and the real `jobctl` CLI: every page loads; the queues page shows what `jobctl stats --json`
prints at the same moment while pools run; a dead letter replayed through the page runs exactly once and
the audit names the signed-in user; the same POST sent from a foreign page, or without the CSRF token,
changes nothing. The queues page's screenshot goes to docs/dashboard.png when JOBCTL_SCREENSHOT=1."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from jobctl import control, schedules
from jobctl import deadletter as dl
from jobctl.producer import enqueue
from jobctl.runtime import Runtime
from jobctl.web import create_app, security
from tests.support.cli import jobctl, runtime_for
from tests.support.jobs import ROOT, Pools, hook, push
from tests.support.rq_tools import wait_for
from tests.web.conftest import USER, Served, browser_sign_in, free_port

CONFIG = ('[queues.push]\nattempts = 1\nbackoff = "none"\nrate_limit = "none"\n\n'
          '[queues.webhook-retry]\nattempts = 1\nbackoff = "none"\n')
FIELDS = ("waiting", "active", "delayed", "completed_1h", "failed_1h", "retried_1h", "avg_ms_1h", "p50_ms_1h",
          "p95_ms_1h", "workers", "slots", "dead_letters")  # rate_per_s and the ages move with the clock
EMAIL = {"to": "ann@example.com", "subject": "Hi", "template": "welcome", "data": {"name": "Ann"}, "lang": "en"}


class Stage:
    """One test's services: env and runtime with the config above, the dashboard served, harness pools."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        (tmp_path / "jobctl.toml").write_text(CONFIG)
        self.env = env | {"JOBCTL_CONFIG": str(tmp_path / "jobctl.toml")}
        self.rt = runtime_for(self.env, tmp_path)
        self.pools = Pools(self.rt.settings.redis_url, tmp_path)
        self.served = Served(create_app(self.rt, security.allowed_hosts("127.0.0.1", None)))
        self.url = self.served.url

    def pool(self, queues: str, *args: str) -> Any:
        """A harness pool with the production hooks on the test's database and config."""
        return self.pools.start(queues, 1, "--hooks", "--database-url", self.rt.settings.database_url,
                                "--config", self.env["JOBCTL_CONFIG"], *args)

    def close(self) -> None:
        """Kill pools, stop serving."""
        self.pools.kill_all()
        self.served.close()


@pytest.fixture
def stage(env: dict[str, str], tmp_path: Path) -> Iterator[Stage]:
    s = Stage(env, tmp_path)
    yield s
    s.close()


def _ids(rt: Runtime, key: str) -> list[str]:
    return [x.decode().split()[0] for x in rt.redis.lrange(key, 0, -1)]


def _page(d: Any, url: str, marker: str) -> str:
    """Load a page, wait for the element with id `marker`, check it is no error page; its source."""
    d.get(url)
    WebDriverWait(d, 20).until(ec.presence_of_element_located((By.ID, marker)))
    assert not d.find_elements(By.ID, "error-message"), d.find_element(By.ID, "error-message").text
    return str(d.page_source)


def _page_figures(d: Any) -> dict[str, dict[str, str]]:
    out = {}
    for row in d.find_elements(By.CSS_SELECTOR, "#queues tbody tr"):
        cells = {c.get_attribute("data-field"): c.text.split(" ")[0] for c in
                 row.find_elements(By.CSS_SELECTOR, "td[data-field]")}
        out[row.get_attribute("data-queue")] = cells
    return out


def _shown(v: Any) -> str:
    return "—" if v is None else str(v)


def _seed(stage: Stage) -> None:
    """Completed and dead-lettered jobs through a burst pool, a paused queue, the default schedules."""
    rt = stage.rt
    for i in range(12):
        enqueue(rt, "push", "send-push", push(sleep=0.05 * (i % 4)))
    for _ in range(3):
        enqueue(rt, "push", "send-push", push(fail=True))
    for _ in range(6):
        enqueue(rt, "webhook-retry", "retry-webhook", hook(sleep=0.02))
    enqueue(rt, "webhook-retry", "retry-webhook", hook(fail=True))
    assert stage.pool("push,webhook-retry", "--burst").wait(90) == 0
    wait_for(lambda: len(dl.store_for(rt).entries(dl.Filter(status="open"))) == 4, 30, "4 dead letters")
    for _ in range(3):
        enqueue(rt, "email", "send-email", EMAIL)
    control.set_paused(rt, ["email"], True)
    schedules.install(rt, schedules.DEFAULTS, datetime.now(UTC))


def test_every_page_in_chromium_matches_stats_json_while_pools_run(stage: Stage, browser: Any) -> None:
    rt = stage.rt
    _seed(stage)
    stage.pool("push", "--slots", "2")
    sleepers = [enqueue(rt, "push", "send-push", push(sleep=120)).id for _ in range(5)]
    wait_for(lambda: len(_ids(rt, "test:starts")) == 12 + 3 + 6 + 1 + 2, 60, "two sleepers running")
    browser_sign_in(browser, stage.url)

    for _attempt in range(3):  # a heartbeat may land between the two reads: read again
        _page(browser, f"{stage.url}/", "queues")
        shown = _page_figures(browser)
        r = jobctl(stage.env, "stats", "--json")
        assert r.returncode == 0, r.stderr
        stats = {q["name"]: q for q in json.loads(r.stdout)["queues"]}
        if all(shown[n][f] == _shown(q[f]) for n, q in stats.items() for f in FIELDS):
            break
    assert {n: {f: shown[n][f] for f in FIELDS} for n in stats} == \
        {n: {f: _shown(q[f]) for f in FIELDS} for n, q in stats.items()}
    assert (stats["push"]["active"], stats["push"]["waiting"], stats["push"]["dead_letters"]) == (2, 3, 3)
    assert stats["push"]["completed_1h"] == 12 and stats["webhook-retry"]["failed_1h"] == 1
    assert stats["push"]["p95_ms_1h"] is not None
    for name, q in stats.items():
        assert shown[name]["paused"] == ("paused" if q["paused"] else "running")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#queues svg.chart")) == len(stats)
    shot = browser.find_element(By.TAG_NAME, "body").screenshot_as_png
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("JOBCTL_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "dashboard.png").write_bytes(shot)

    src = _page(browser, f"{stage.url}/queues/push?state=waiting", "jobs")
    assert all(j in src for j in sleepers[2:])
    src = _page(browser, f"{stage.url}/queues/push?state=active", "jobs")
    assert all(j in src for j in sleepers[:2])
    for state in ("delayed", "completed", "failed", "canceled"):
        _page(browser, f"{stage.url}/queues/push?state={state}", "jobs")
    assert browser.find_element(By.ID, "total").text == "0"
    _page(browser, f"{stage.url}/queues/push?state=completed&size=20", "jobs")
    assert browser.find_element(By.ID, "total").text == "12"
    first = browser.find_element(By.CSS_SELECTOR, "#jobs tbody a")
    first.click()
    WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "job-id")))
    assert browser.find_element(By.ID, "status").text == "finished"
    assert json.loads(browser.find_element(By.ID, "result").text) == {"ok": True}
    assert float(browser.find_element(By.ID, "ran").text.split()[1]) >= 0

    src = _page(browser, f"{stage.url}/dead-letters?queue=push", "dead-letters")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr[data-entry]")) == 3
    _page(browser, f"{stage.url}/dead-letters?reason=asked+to+fail&status=any", "dead-letters")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr[data-entry]")) == 4
    browser.find_element(By.CSS_SELECTOR, "#dead-letters tbody a").click()
    WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "payload")))
    assert "asked to fail" in browser.page_source and "Traceback" in browser.page_source
    failed_job = browser.find_element(By.CSS_SELECTOR, "table.kv a").text
    _page(browser, f"{stage.url}/jobs/{failed_job}", "job-id")
    assert "asked to fail" in browser.find_element(By.ID, "error").text
    assert "Traceback" in browser.find_element(By.CSS_SELECTOR, "pre.tb").text
    assert browser.find_element(By.ID, "attempts").text == "1 of 1"
    _page(browser, f"{stage.url}/dead-letters/purge?queue=webhook-retry", "preview")
    assert "would purge" in browser.find_element(By.ID, "preview").text
    src = _page(browser, f"{stage.url}/workers", "workers")
    assert "push 2" in browser.find_element(By.ID, "workers").text
    assert any(j in src for j in sleepers[:2])
    _page(browser, f"{stage.url}/schedules", "schedules")
    assert "cleanup-audit-logs" in browser.find_element(By.ID, "schedules").text
    _page(browser, f"{stage.url}/jobs/{sleepers[4]}", "job-id")  # a waiting job: cancel it from its page
    browser.find_element(By.CSS_SELECTOR, "form[action$='/cancel'] button").click()
    WebDriverWait(browser, 20).until(lambda d: "cancelled" in d.find_element(By.CSS_SELECTOR, "p.flash").text)
    assert control.show_job(rt, sleepers[4]).status == "canceled"
    _page(browser, f"{stage.url}/", "queues")
    browser.find_element(By.CSS_SELECTOR, "tr[data-queue='webhook-retry'] form[action$='/pause'] button").click()
    WebDriverWait(browser, 20).until(lambda d: "paused: webhook-retry" in d.find_element(By.CSS_SELECTOR,
                                                                                          "p.flash").text)
    assert control.paused(rt) == {"email", "webhook-retry"}
    _page(browser, f"{stage.url}/audit", "audit")
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#audit td.actor")] == [f"{USER} via dashboard"] * 2


class _Evil(BaseHTTPRequestHandler):
    """A page on another origin whose form posts to the dashboard's replay endpoint."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = (f'<form method="post" action="{self.target}"><input name="ids" value="{self.server.ids}">'  # type: ignore[attr-defined]
                '<button id="go">win a prize</button></form>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


def test_replay_through_the_page_runs_once_and_is_audited(stage: Stage, browser: Any) -> None:
    rt = stage.rt
    store = dl.store_for(rt)
    # the store's own capture path is covered by the pools above; a failure whose payload now succeeds
    # is recorded directly, so its replay can run to the end
    entry_id, _ = store.record(dl.Failure("push", "send-push", "gone-job-1", push(), "upstream 503", None, 3,
                                          datetime.now(UTC)))
    stage.pool("push")
    browser_sign_in(browser, stage.url)

    evil = ThreadingHTTPServer(("127.0.0.1", free_port()), _Evil)
    evil.ids = str(entry_id)  # type: ignore[attr-defined]
    _Evil.target = f"{stage.url}/dead-letters/replay"
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{evil.server_address[1]}/")
        browser.find_element(By.ID, "go").click()
        WebDriverWait(browser, 20).until(lambda d: "cross-origin request refused" in d.page_source)
    finally:
        evil.shutdown()
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    no_token = requests.post(f"{stage.url}/dead-letters/replay", data={"ids": str(entry_id)}, cookies=cookies,
                             headers={"Origin": stage.url}, timeout=10)
    assert no_token.status_code == 400 and "CSRF" in no_token.text
    assert store.get([entry_id])[0].status == "open" and not rt.redis.exists(f"rq:job:dlq-{entry_id}")
    assert store.audit_log() == []

    _page(browser, f"{stage.url}/dead-letters/{entry_id}", "payload")
    browser.find_element(By.ID, "replay-one").click()
    WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "preview")))
    assert "would replay" in browser.find_element(By.ID, "preview").text
    assert store.get([entry_id])[0].status == "open"  # the dry run changed nothing
    form = {"csrf": browser.find_element(By.CSS_SELECTOR, "#confirm input[name=csrf]").get_attribute("value"),
            "ids": browser.find_element(By.CSS_SELECTOR, "#confirm input[name=ids]").get_attribute("value")}
    browser.find_element(By.ID, "confirm-button").click()
    WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "outcome")))
    assert browser.find_element(By.CSS_SELECTOR, "#outcome td.action").text == "replayed"
    job_id = f"dlq-{entry_id}"
    wait_for(lambda: job_id in _ids(rt, "test:done"), 60, "the replayed job to run")

    # the same confirm form submitted again (as a double click or a resubmitted page would): no second run
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    again = requests.post(f"{stage.url}/dead-letters/replay", data=form, cookies=cookies,
                          headers={"Origin": stage.url}, timeout=30)
    assert again.status_code == 200 and '<td class="action">skipped</td>' in again.text
    _page(browser, f"{stage.url}/dead-letters/replay?ids={entry_id}", "preview")
    assert not browser.find_elements(By.ID, "confirm-button")
    assert _ids(rt, "test:starts").count(job_id) == 1 and _ids(rt, "test:done").count(job_id) == 1

    entry = store.get([entry_id])[0]
    assert (entry.status, entry.replay_job_id) == ("replayed", job_id)
    _page(browser, f"{stage.url}/audit", "audit")
    assert browser.find_element(By.CSS_SELECTOR, "#audit td.actor").text == f"{USER} via dashboard"
    assert [(a["actor"], a["action"], a["entry_ids"]) for a in store.audit_log()] == \
        [(f"{USER} via dashboard", "replay", [entry_id])]
