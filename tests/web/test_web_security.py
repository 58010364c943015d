"""Safe by default, over HTTP against the real server: read-only without a credential, every page behind a
session with one, every state change a POST with the session's CSRF token from a page of the dashboard
(Origin or Referer naming its Host), Host names outside the allow-list refused, and the audit trail naming
the signed-in user. Each refused POST is checked to have changed nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from jobctl import config, control
from jobctl import deadletter as dl
from jobctl.runtime import Runtime
from jobctl.web import create_app, security
from jobctl.web.mask import MASK, Masker
from tests.web.conftest import PASSWORD, USER, Served, csrf_of, origin_of, signed_in


def _pause(s: requests.Session, base: str, **over: object) -> requests.Response:
    """POST the pause form of `push` as the queues page builds it; `over` replaces fields or headers."""
    page = s.get(f"{base}/", timeout=10)
    data = {"csrf": csrf_of(page.text)}
    headers = {"Origin": origin_of(base)}
    for k, v in over.items():
        target = headers if k in ("Origin", "Referer", "Host") else data
        if v is None:
            target.pop(k, None)
        else:
            target[k] = str(v)
    return s.post(f"{base}/queues/push/pause", data=data, headers=headers, timeout=10, allow_redirects=False)


def test_pages_need_a_session_when_a_credential_is_set(site: str) -> None:
    r = requests.get(f"{site}/dead-letters", timeout=10, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=/dead-letters")
    s = requests.Session()
    page = s.get(f"{site}/login", timeout=10)
    bad = s.post(f"{site}/login", data={"csrf": csrf_of(page.text), "user": USER, "secret": "wrong"},
                 headers={"Origin": origin_of(site)}, timeout=10, allow_redirects=False)
    assert bad.status_code == 403 and "wrong user, password or token" in bad.text
    assert s.get(f"{site}/", timeout=10, allow_redirects=False).status_code == 302
    assert signed_in(site).get(f"{site}/", timeout=10).status_code == 200


def test_pause_with_token_and_origin_works_and_is_audited(site: str, rt: Runtime) -> None:
    s = signed_in(site)
    r = _pause(s, site)
    assert r.status_code == 302, r.text
    assert "push" in control.paused(rt)
    record = dl.store_for(rt).audit_log(1)[0]
    assert (record["actor"], record["action"], record["detail"]) == (f"{USER} via dashboard", "pause",
                                                                      '{"queues": ["push"]}')


@pytest.mark.parametrize(("over", "code", "why"), [
    ({"csrf": None}, 400, "CSRF"),
    ({"csrf": "forged-token"}, 400, "CSRF"),
    ({"Origin": "http://evil.example"}, 403, "cross-origin"),
    ({"Origin": None}, 403, "cross-origin"),  # neither Origin nor Referer
    ({"Origin": None, "Referer": "http://evil.example/page"}, 403, "cross-origin"),
    ({"Origin": "null"}, 403, "cross-origin"),
])
def test_a_forged_post_changes_nothing(site: str, rt: Runtime, over: dict[str, object], code: int,
                                       why: str) -> None:
    s = signed_in(site)
    r = _pause(s, site, **over)
    assert r.status_code == code and why in r.text
    assert control.paused(rt) == set()
    assert dl.store_for(rt).audit_log() == []


def test_a_post_without_a_session_changes_nothing(site: str, rt: Runtime) -> None:
    s = requests.Session()
    r = _pause(s, site, csrf=csrf_of(s.get(f"{site}/login", timeout=10).text))
    assert r.status_code == 403 and "sign in first" in r.text
    assert control.paused(rt) == set()


def test_a_foreign_host_is_refused_even_for_reads(site: str) -> None:
    r = requests.get(f"{site}/login", headers={"Host": "evil.example"}, timeout=10)
    assert r.status_code == 400 and "does not answer for Host 'evil.example'" in r.text
    assert requests.get(f"{site}/login", headers={"Host": f"localhost:{site.rsplit(':', 1)[1]}"},
                        timeout=10).status_code == 200


def test_without_a_credential_it_is_read_only(cli_env: dict[str, str], tmp_path: Path) -> None:
    rt = Runtime(config.load(env=cli_env | {"JOBCTL_DATABASE_URL": f"sqlite:///{tmp_path / 'ro.db'}"},
                             cwd=tmp_path))
    served = Served(create_app(rt, security.allowed_hosts("127.0.0.1", None)))
    try:
        s = requests.Session()
        page = s.get(f"{served.url}/", timeout=10)
        assert page.status_code == 200 and "read-only" in page.text and "/pause" not in page.text
        assert "read-only" in s.get(f"{served.url}/login", timeout=10).text
        r = s.post(f"{served.url}/queues/push/pause", headers={"Origin": served.url}, timeout=10)
        assert r.status_code == 403 and "read-only dashboard" in r.text
        assert control.paused(rt) == set()
    finally:
        served.close()


def test_security_headers(site: str) -> None:
    r = signed_in(site).get(f"{site}/", timeout=10)
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"
    cookie = r.request.headers["Cookie"]
    assert cookie.startswith("jobctl_dashboard=")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.com", False), ("localhost.evil", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert security.is_loopback(host) is loopback


@pytest.mark.parametrize(("origin", "referer", "host", "ok"), [
    ("http://127.0.0.1:9181", None, "127.0.0.1:9181", True),
    ("https://ops.example.com", None, "ops.example.com", True),  # TLS ended at a proxy: the scheme may differ
    ("http://127.0.0.1:9999", None, "127.0.0.1:9181", False),
    ("http://evil.example", "http://127.0.0.1:9181/", "127.0.0.1:9181", False),  # Origin wins over Referer
    (None, "http://127.0.0.1:9181/dead-letters", "127.0.0.1:9181", True),
    ("null", None, "127.0.0.1:9181", False),
    (None, None, "127.0.0.1:9181", False),
])
def test_same_origin(origin: str | None, referer: str | None, host: str, ok: bool) -> None:
    assert security.same_origin(origin, referer, host) is ok


def test_host_rules() -> None:
    assert security.host_name("[::1]:9181") == "::1" and security.host_name("LocalHost:80") == "localhost"
    allowed = security.allowed_hosts("127.0.0.1", "ops.example.com")
    assert allowed is not None and security.host_allowed("ops.example.com:9181", allowed)
    assert not security.host_allowed("evil.example", allowed)
    assert security.allowed_hosts("0.0.0.0", None) is None  # every page is behind the credential then


def test_check_login() -> None:
    both = config.Settings(dashboard_user=USER, dashboard_password=PASSWORD, dashboard_token="t0ken-value")
    assert security.check_login(both, USER, PASSWORD) == USER
    assert security.check_login(both, "bob", PASSWORD) is None
    assert security.check_login(both, "bob", "t0ken-value") == "bob (token)"
    assert security.check_login(config.Settings(), "", "") is None
    assert security.session_key(both) != security.session_key(config.Settings(dashboard_token="other"))


def test_masking() -> None:
    payload = {"to": "a@b.co", "subject": "Hi", "data": {"resetUrl": "x", "apiKey": "k", "name": "Ann",
                                                         "items": [{"password": "p"}]}, "userId": "u1"}
    assert Masker("secrets").apply(payload) == payload | {"data": payload["data"] | {
        "apiKey": MASK, "items": [{"password": MASK}]}}
    personal = Masker("secrets,personal").apply(payload)
    assert (personal["to"], personal["userId"], personal["data"]["name"], personal["subject"]) == \
        (MASK, MASK, MASK, "Hi")
    assert Masker("none").apply(payload) == payload
    assert Masker("resetUrl").apply(payload)["data"]["resetUrl"] == MASK


@pytest.mark.parametrize("nxt", ["//evil.example/x", "/\\evil.example", "https://evil.example/", "/x:y"])
def test_sign_in_never_redirects_off_the_dashboard(site: str, nxt: str) -> None:
    s = requests.Session()
    page = s.get(f"{site}/login", params={"next": nxt}, timeout=10)
    r = s.post(page.url, data={"csrf": csrf_of(page.text), "user": USER, "secret": PASSWORD},
               headers={"Origin": origin_of(site)}, timeout=10, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/"


def test_masked_payload_and_missing_job(site: str, rt: Runtime) -> None:
    from jobctl.producer import enqueue
    from tests.support.jobs import push

    jid = enqueue(rt, "push", "send-push", push(token="tok-very-secret-1", note="visible")).id
    s = signed_in(site)
    page = s.get(f"{site}/jobs/{jid}", timeout=10).text
    assert "tok-very-secret-1" not in page and MASK in page and "visible" in page
    rt.redis.hset(f"rq:job:{jid}", "jc_progress", 70)  # as a processor's ctx.progress(70) records it
    assert '<progress max="100" value="70">' in s.get(f"{site}/jobs/{jid}", timeout=10).text
    missing = s.get(f"{site}/jobs/no-such-job", timeout=10)
    assert missing.status_code == 404 and "no job &#39;no-such-job&#39;" in missing.text  # autoescaped
    assert s.get(f"{site}/queues/nope", timeout=10).status_code == 400
    assert s.get(f"{site}/queues/push?state=bogus", timeout=10).status_code == 400
    assert s.get(f"{site}/dead-letters?since=forever", timeout=10).status_code == 400


def test_job_content_is_escaped(site: str, rt: Runtime) -> None:
    from datetime import UTC, datetime

    from tests.support.jobs import push

    entry, _ = dl.store_for(rt).record(dl.Failure("push", "send-push", "j-xss", push(x="<img src=x onerror=alert(1)>"),
                                                  "<script>alert(1)</script>", None, 1, datetime.now(UTC)))
    s = signed_in(site)
    for path in ("/dead-letters", f"/dead-letters/{entry}"):
        page = s.get(f"{site}{path}", timeout=10).text
        assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
        assert "<img src=x" not in page


def test_redis_outage_is_a_503_page_without_the_password(cli_env: dict[str, str], tmp_path: Path) -> None:
    from tests.web.conftest import free_port

    url = f"redis://:hunter2-password@127.0.0.1:{free_port()}/0"
    rt = Runtime(config.load(env=cli_env | {"JOBCTL_REDIS_URL": url}, cwd=tmp_path))
    served = Served(create_app(rt))
    try:
        r = requests.get(f"{served.url}/", timeout=20)
        assert r.status_code == 503 and "unreachable" in r.text and "hunter2" not in r.text
    finally:
        served.close()
