"""Sign-in over real HTTP: the session cookie's flags (Secure over HTTPS, through a real TLS server or a proxy
the application is configured to trust, never from a forwarded header by default; HttpOnly and SameSite
always), and the per-address lockout after failed sign-ins, shared through Redis, with short windows."""

from __future__ import annotations

import http.client
import logging
import math
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.serving import make_server

from jobctl import keys
from jobctl.runtime import Runtime
from jobctl.web import create_app, security
from jobctl.web.lockout import Lockout, locked_for_s
from tests.web.conftest import PASSWORD, USER, Served, csrf_of, free_port, origin_of

SHORT = Lockout(threshold=5, base_s=1.0, max_s=4.0, memory_s=30.0)
WRONG = "not-the-password-0451"


def _cookie(resp: requests.Response | http.client.HTTPResponse) -> dict[str, str]:
    """The attributes of the dashboard's Set-Cookie header, lower-cased names (flags map to '')."""
    raw = resp.headers.get("Set-Cookie") if isinstance(resp, requests.Response) else resp.getheader("Set-Cookie")
    assert raw and raw.startswith("jobctl_dashboard="), raw
    parts = [p.strip() for p in raw.split(";")][1:]
    return {p.partition("=")[0].lower(): p.partition("=")[2] for p in parts}


def _sign_in(base: str, secret: str, verify: str | bool = True,
             session: requests.Session | None = None) -> requests.Response:
    s = session or requests.Session()
    page = s.get(f"{base}/login", timeout=10, verify=verify)
    return s.post(f"{base}/login", data={"csrf": csrf_of(page.text), "user": USER, "secret": secret},
                  headers={"Origin": origin_of(base)}, timeout=10, allow_redirects=False, verify=verify)


@pytest.fixture
def cert(tmp_path: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (openssl), as (cert file, key file)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    crt, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", crt],
                   check=True, capture_output=True, timeout=60)
    return crt, key


@pytest.fixture
def tls_site(rt: Runtime, cert: tuple[str, str]) -> Iterator[str]:
    """The dashboard behind a real TLS server (werkzeug's, with the certificate)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(rt, security.allowed_hosts("127.0.0.1", None)),
                         threaded=True, ssl_context=ctx)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{port}"
    server.shutdown()
    thread.join(10)


def test_cookie_over_plain_http_is_httponly_and_samesite_but_not_secure(site: str) -> None:
    for resp in (requests.get(f"{site}/login", timeout=10), _sign_in(site, PASSWORD)):
        flags = _cookie(resp)
        assert "httponly" in flags and flags["samesite"] == "Lax" and flags["path"] == "/"
        assert "secure" not in flags


def test_cookie_over_https_is_secure(tls_site: str, cert: tuple[str, str]) -> None:
    first = requests.get(f"{tls_site}/login", timeout=10, verify=cert[0])
    signed = _sign_in(tls_site, PASSWORD, verify=cert[0])
    assert signed.status_code == 302
    for resp in (first, signed):
        flags = _cookie(resp)
        assert "secure" in flags and "httponly" in flags and flags["samesite"] == "Lax"


def test_a_forwarded_proto_is_trusted_only_when_the_app_is_configured_to(rt: Runtime) -> None:
    app = create_app(rt, security.allowed_hosts("127.0.0.1", None))
    plain, proxied = Served(app), Served(ProxyFix(app, x_proto=1))  # ProxyFix: the operator trusts the proxy
    try:
        forged = requests.get(f"{plain.url}/login", headers={"X-Forwarded-Proto": "https"}, timeout=10)
        assert "secure" not in _cookie(forged)
        trusted = requests.get(f"{proxied.url}/login", headers={"X-Forwarded-Proto": "https"}, timeout=10)
        assert "secure" in _cookie(trusted) and "httponly" in _cookie(trusted)
        assert "secure" not in _cookie(requests.get(f"{proxied.url}/login", timeout=10))
    finally:
        plain.close()
        proxied.close()


@pytest.fixture
def short_site(rt: Runtime) -> Iterator[str]:
    """The dashboard with a lockout of 1 s after 5 failures, doubling to 4 s."""
    served = Served(create_app(rt, security.allowed_hosts("127.0.0.1", None), lockout=SHORT))
    yield served.url
    served.close()


def test_lockout_after_five_failures_refuses_the_right_password_then_expires(
        short_site: str, rt: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(5):
        assert _sign_in(short_site, WRONG).status_code == 403
    locked = _sign_in(short_site, PASSWORD)
    assert locked.status_code == 429 and "too many failed sign-ins from your address" in locked.text
    assert locked.headers["Retry-After"] == "1" and "jobctl_dashboard" not in locked.cookies
    assert rt.redis.zcard(keys.rate("dashboard-login:127.0.0.1")) == 5  # kept in Redis: every worker sees it

    time.sleep(1.1)  # the first lockout is 1 s
    assert _sign_in(short_site, WRONG).status_code == 403  # a sixth failure: locked for 2 s now
    again = _sign_in(short_site, PASSWORD)
    assert again.status_code == 429 and int(again.headers["Retry-After"]) == 2
    time.sleep(2.1)
    s = requests.Session()
    ok = _sign_in(short_site, PASSWORD, session=s)
    assert ok.status_code == 302 and s.get(f"{short_site}/", timeout=10).status_code == 200
    assert rt.redis.exists(keys.rate("dashboard-login:127.0.0.1")) == 0  # a success forgets the failures

    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "locked out" in text and "failed sign-in from 127.0.0.1" in text
    assert WRONG not in text and PASSWORD not in text  # nothing typed is logged, nor the user of a refusal
    assert not [r for r in caplog.records if USER in r.getMessage() and "signed in from" not in r.getMessage()]


def _raw_sign_in(port: int, source: str, secret: str) -> int:
    """A sign-in POST from the loopback address `source` (http.client binds it); the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/login")
        page = conn.getresponse()
        cookie = page.getheader("Set-Cookie", "").split(";")[0]
        body = urlencode({"csrf": csrf_of(page.read().decode()), "user": USER, "secret": secret})
        conn.request("POST", "/login", body=body, headers={
            "Cookie": cookie, "Origin": f"http://127.0.0.1:{port}",
            "Content-Type": "application/x-www-form-urlencoded"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_lockout_is_per_address(short_site: str) -> None:
    port = int(short_site.rsplit(":", 1)[1])
    assert [_raw_sign_in(port, "127.0.0.2", WRONG) for _ in range(6)] == [403] * 5 + [429]
    assert _raw_sign_in(port, "127.0.0.2", PASSWORD) == 429
    assert _raw_sign_in(port, "127.0.0.3", PASSWORD) == 302  # another client is not locked out
    assert _sign_in(short_site, PASSWORD).status_code == 302


def test_parallel_guesses_cannot_pass_the_count(short_site: str) -> None:
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: _sign_in(short_site, WRONG).status_code, range(20)))
    assert sorted(codes) == [403] * 5 + [429] * 15  # each attempt is counted before its password is checked


def test_default_lockout_is_five_failures_then_30_s(site: str) -> None:
    for _ in range(5):
        assert _sign_in(site, WRONG).status_code == 403
    r = _sign_in(site, PASSWORD)
    assert r.status_code == 429 and 29 <= int(r.headers["Retry-After"]) <= 30


@pytest.mark.parametrize(("failures", "now", "wait"), [
    ([], 100.0, 0.0),
    ([96, 97, 98, 99], 100.0, 0.0),  # four: still free
    ([95, 96, 97, 98, 99], 100.0, 0.0 + 99 + 1 - 100),  # five: 1 s from the last, which was 1 s ago
    ([96, 97, 98, 99, 99.5], 100.0, 0.5),
    ([96, 97, 98, 99, 99.5, 100], 100.0, 2.0),  # six: doubled
    ([90, 91, 92, 93, 94, 95, 96, 97, 98, 99.5], 100.0, 3.5),  # ten: capped at 4 s
    ([1, 2, 3, 4, 99.5], 100.0, 0.0),  # the old four are forgotten (30 s memory)
])
def test_locked_for_s(failures: list[float], now: float, wait: float) -> None:
    assert math.isclose(locked_for_s(failures, now, SHORT), wait)


def test_lockout_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        Lockout(threshold=0)
    with pytest.raises(ValueError):
        Lockout(base_s=10, max_s=5)
    with pytest.raises(ValueError):
        Lockout(max_s=100, memory_s=50)
