"""Dead-letter work through the dashboard over HTTP (real server, real SQLite store, RQ's own registry API):
a filtered replay acts on exactly the ids its dry run listed, purge and sync are audited with the user,
export is `dlq export`'s output for signed-in users only."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from jobctl import config
from jobctl import deadletter as dl
from jobctl.jobs import FAILURE_TTL_S
from jobctl.producer import enqueue
from jobctl.runtime import Runtime
from jobctl.web import create_app, security
from tests.support.jobs import hook, push
from tests.web.conftest import USER, Served, csrf_of, origin_of, signed_in


def _record(rt: Runtime, queue: str, job: str, payload: dict[str, object], error: str = "boom") -> int:
    entry, _ = dl.store_for(rt).record(dl.Failure(queue, job, f"j-{datetime.now(UTC).timestamp()}", payload, error,
                                                  "Traceback (most recent call last): ...", 1, datetime.now(UTC)))
    return entry


def _confirm(s: requests.Session, site: str, preview: str, action: str, **extra: str) -> requests.Response:
    ids = re.search(r'name="ids" value="([^"]*)"', preview)
    assert ids, "the dry run offers no confirm form"
    return s.post(f"{site}/dead-letters/{action}", data={"csrf": csrf_of(preview), "ids": ids.group(1), **extra},
                  headers={"Origin": origin_of(site)}, timeout=30)


def test_filtered_replay_acts_on_exactly_the_previewed_ids(site: str, rt: Runtime) -> None:
    first = [_record(rt, "push", "send-push", push(n=i), "HTTP 503 from upstream") for i in range(3)]
    other = _record(rt, "push", "send-push", push(n=9), "invalid device id")
    s = signed_in(site)
    preview = s.get(f"{site}/dead-letters/replay", params={"queue": "push", "reason": "503"}, timeout=10).text
    assert preview.count("would replay") == 3 and f'data-entry="{other}"' not in preview
    assert all(e.status == "open" for e in dl.store_for(rt).entries(dl.Filter()))  # a dry run changes nothing
    late = _record(rt, "push", "send-push", push(n=10), "HTTP 503 from upstream")  # matches, but after the preview
    bad = _confirm(s, site, preview, "replay", rate="fast")
    assert bad.status_code == 400 and "is not N/s" in bad.text
    t = time.monotonic()
    done = _confirm(s, site, preview, "replay", rate="10/s")
    assert done.status_code == 200 and done.text.count(">replayed<") == 3
    assert time.monotonic() - t >= 0.15  # paced: three enqueues at 10/s span at least two intervals
    status = {e.id: e.status for e in dl.store_for(rt).entries(dl.Filter())}
    assert [status[i] for i in first] == ["replayed"] * 3 and status[other] == status[late] == "open"
    assert {rt.redis.hget(f"rq:job:dlq-{i}", "status") for i in first} == {b"queued"}
    (record,) = dl.store_for(rt).audit_log()
    assert (record["actor"], record["action"], sorted(record["entry_ids"])) == (f"{USER} via dashboard", "replay",
                                                                                 first)


def test_purge_after_a_dry_run_is_audited(site: str, rt: Runtime) -> None:
    entry = _record(rt, "webhook-retry", "retry-webhook", hook())
    s = signed_in(site)
    preview = s.get(f"{site}/dead-letters/purge", params={"ids": entry}, timeout=10).text
    assert "would purge" in preview and dl.store_for(rt).get([entry])[0].status == "open"
    assert ">purged<" in _confirm(s, site, preview, "purge").text
    assert dl.store_for(rt).get([entry])[0].status == "purged"
    assert [(a["actor"], a["action"]) for a in dl.store_for(rt).audit_log()] == [(f"{USER} via dashboard", "purge")]


def test_sync_records_a_failure_rq_left_in_redis(site: str, rt: Runtime) -> None:
    jid = enqueue(rt, "webhook-retry", "retry-webhook", hook()).id
    job = Job.fetch(jid, connection=rt.redis, serializer=JSONSerializer)
    rt.redis.lrem("rq:queue:webhook-retry", 0, jid)
    FailedJobRegistry("webhook-retry", connection=rt.redis, serializer=JSONSerializer).add(
        job, ttl=FAILURE_TTL_S, exc_string="failed by a foreign worker")
    s = signed_in(site)
    page = s.get(f"{site}/dead-letters", timeout=10).text
    r = s.post(f"{site}/dead-letters/sync", data={"csrf": csrf_of(page)}, headers={"Origin": origin_of(site)},
               timeout=30)
    assert r.status_code == 200 and "recorded 1 new dead letter(s)" in r.text
    (entry,) = dl.store_for(rt).entries(dl.Filter())
    assert entry.job_id == jid and entry.status == "open"
    audit = dl.store_for(rt).audit_log()[0]
    assert (audit["actor"], audit["action"], json.loads(audit["detail"])) == (f"{USER} via dashboard", "sync",
                                                                              {"recorded": 1})


def test_export_is_dlq_exports_output_for_signed_in_users(site: str, rt: Runtime, env: dict[str, str],
                                                          tmp_path: Path) -> None:
    _record(rt, "push", "send-push", push(token="t0k3n-secret"))
    _record(rt, "webhook-retry", "retry-webhook", hook())
    s = signed_in(site)
    lines = s.get(f"{site}/dead-letters/export", params={"format": "jsonl", "queue": "push"}, timeout=10).text
    docs = [json.loads(x) for x in lines.splitlines()]
    assert [d["queue"] for d in docs] == ["push"] and docs[0]["traceback"].startswith("Traceback")
    r = s.get(f"{site}/dead-letters/export", params={"format": "csv", "status": "any"}, timeout=10)
    assert r.headers["Content-Disposition"] == 'attachment; filename="dead-letters.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted(row["queue"] for row in rows) == ["push", "webhook-retry"]
    assert s.get(f"{site}/dead-letters/export", params={"format": "xml"}, timeout=10).status_code == 400

    ro = Runtime(config.load(env={k: v for k, v in env.items() if not k.startswith("JOBCTL_DASHBOARD")},
                             cwd=tmp_path))
    served = Served(create_app(ro, security.allowed_hosts("127.0.0.1", None)))
    try:
        refused = requests.get(f"{served.url}/dead-letters/export", timeout=10)
        assert refused.status_code == 403 and "t0k3n-secret" not in refused.text
    finally:
        served.close()


def test_out_of_range_filters_are_a_clear_refusal(site: str, rt: Runtime) -> None:
    """Numbers the store cannot hold, and ages past 100 years, are refused with the reason (the CLI's bounds),
    never an OverflowError page."""
    with signed_in(site) as s:
        for query, reason in (({"since": "99999999d"}, "since"), ({"ids": "99999999999999999999"}, "ids are whole"),
                              ({"ids": "0"}, "ids are whole")):
            page = s.get(f"{site}/dead-letters", params=query, timeout=30)
            assert page.status_code == 400 and reason in page.text, (query, page.status_code, page.text[-500:])
        form = s.get(f"{site}/dead-letters", timeout=30).text
        done = s.post(f"{site}/dead-letters/purge", data={"csrf": csrf_of(form), "ids": "99999999999999999999"},
                      headers={"Origin": origin_of(site)}, timeout=30)
        assert done.status_code == 400 and "ids are whole numbers from 1 to 2147483647" in done.text


def test_schedules_page_lists_invalid_entries_with_the_reason(site: str, rt: Runtime) -> None:
    from jobctl import keys, schedules

    schedules.install(rt, schedules.DEFAULTS, datetime.now(UTC))
    rt.redis.hset(keys.schedules(), "bad", "not json <b>")
    with signed_in(site) as s:
        page = s.get(f"{site}/schedules", timeout=30)
    assert page.status_code == 200
    assert "cleanup-audit-logs" in page.text and "Invalid entries (skipped)" in page.text
    row = page.text.split('<table id="invalid-schedules">', 1)[1].split("</table>", 1)[0]
    assert "<td>bad</td>" in row and "not json &lt;b&gt;" in row  # escaped, never markup
