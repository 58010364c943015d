"""Mounting at `/admin/queues` in the team's own apps: a Flask app (WSGI, werkzeug's DispatcherMiddleware,
served by werkzeug's real server) and a FastAPI app (ASGI, `create_asgi_app` through a2wsgi, served by a
real uvicorn). Links follow the prefix, the host app keeps its own routes, and a signed-in POST with the
CSRF token acts through the mount."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from jobctl import control
from jobctl.producer import enqueue
from jobctl.runtime import Runtime
from jobctl.web import create_app, create_asgi_app
from tests.support.jobs import PUSH
from tests.web.conftest import PASSWORD, USER, Served, csrf_of, free_port, origin_of, signed_in

PREFIX = "/admin/queues"


def _check_mounted(base: str, rt: Runtime) -> None:
    jid = enqueue(rt, "push", "send-push", PUSH).id
    s = signed_in(base + PREFIX)
    assert [c.path for c in s.cookies] == [PREFIX]  # the session cookie stays under the mount point
    page = s.get(f"{base}{PREFIX}/", timeout=10)
    assert page.status_code == 200 and 'data-queue="push"' in page.text
    assert f'href="{PREFIX}/queues/push"' in page.text and f'href="{PREFIX}/static/dashboard.css"' in page.text
    assert s.get(f"{base}{PREFIX}/static/dashboard.css", timeout=10).status_code == 200
    jobs = s.get(f"{base}{PREFIX}/queues/push", timeout=10).text
    assert f'href="{PREFIX}/jobs/{jid}"' in jobs
    assert requests.get(f"{base}/", timeout=10).text == "host app"
    r = s.post(f"{base}{PREFIX}/queues/push/pause", data={"csrf": csrf_of(page.text)},
               headers={"Origin": origin_of(base)}, timeout=10, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith(f"{PREFIX}/")
    assert control.paused(rt) == {"push"}
    jobs_page = s.get(f"{base}{PREFIX}/queues/push?state=waiting&size=20", timeout=10)
    back = s.post(f"{base}{PREFIX}/queues/push/resume", data={"csrf": csrf_of(jobs_page.text),
                  "back": "/queues/push?state=waiting&size=20"}, headers={"Origin": origin_of(base)}, timeout=10,
                  allow_redirects=False)
    assert back.headers["Location"].endswith(f"{PREFIX}/queues/push?state=waiting&size=20")
    assert control.paused(rt) == set()
    control.set_paused(rt, ["push"], True)
    fresh = requests.Session()
    gate = fresh.get(f"{base}{PREFIX}/dead-letters?queue=push", timeout=10, allow_redirects=False)
    assert gate.status_code == 302
    login = fresh.get(gate.headers["Location"] if gate.headers["Location"].startswith("http")
                      else base + gate.headers["Location"], timeout=10)
    done = fresh.post(login.url, data={"csrf": csrf_of(login.text), "user": USER, "secret": PASSWORD},
                      headers={"Origin": origin_of(base)}, timeout=10, allow_redirects=False)
    assert done.headers["Location"].endswith(f"{PREFIX}/dead-letters?queue=push")
    forged = s.post(f"{base}{PREFIX}/queues/push/resume", data={"csrf": csrf_of(page.text)},
                    headers={"Origin": "http://evil.example"}, timeout=10)
    assert forged.status_code == 403 and control.paused(rt) == {"push"}


def test_mounted_in_flask(rt: Runtime) -> None:
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    host = Flask("host")
    host.add_url_rule("/", "home", lambda: "host app")
    host.wsgi_app = DispatcherMiddleware(host.wsgi_app, {PREFIX: create_app(rt)})  # type: ignore[method-assign]
    served = Served(host)
    try:
        _check_mounted(served.url, rt)
    finally:
        served.close()


@pytest.fixture
def fastapi_site(rt: Runtime) -> Iterator[str]:
    """A FastAPI app with the dashboard mounted, served by uvicorn in a thread."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()
    app.get("/", response_class=PlainTextResponse)(lambda: "host app")
    app.mount(PREFIX, create_asgi_app(rt))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_mounted_in_fastapi(fastapi_site: str, rt: Runtime) -> None:
    _check_mounted(fastapi_site, rt)
    assert re.search(r'action="/admin/queues/logout"', requests.Session().get(
        f"{fastapi_site}{PREFIX}/login", timeout=10).text) is None  # not signed in: no sign-out form


def test_mounted_in_django(rt: Runtime) -> None:
    """Django's WSGI application with the dashboard at /admin/queues (the README's wsgi.py), on werkzeug's
    server; Django keeps serving its own URLs."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEBUG=False, ALLOWED_HOSTS=["127.0.0.1"], ROOT_URLCONF=__name__, SECRET_KEY="test",
                           MIDDLEWARE=[], INSTALLED_APPS=[])
        django.setup()
    from django.core.wsgi import get_wsgi_application
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    served = Served(DispatcherMiddleware(get_wsgi_application(), {PREFIX: create_app(rt)}))
    try:
        _check_mounted(served.url, rt)
    finally:
        served.close()


def _home(request: object) -> object:
    from django.http import HttpResponse

    return HttpResponse("host app")


def _urlpatterns() -> list[object]:
    from django.urls import path

    return [path("", _home)]


def __getattr__(name: str) -> object:  # Django reads `urlpatterns` from ROOT_URLCONF (this module) lazily
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


def test_served_by_gunicorn_workers_share_sessions(env: dict[str, str], rt: Runtime, tmp_path: Path) -> None:
    """`gunicorn 'jobctl.web:from_env()'` with 2 worker processes: a session signed in through one is valid in
    the other (the key comes from the credential), so any request may land on any worker."""
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    access = tmp_path / "access.log"  # one line per request: the answering worker's pid and path
    proc = subprocess.Popen([gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "--access-logfile", str(access),
                             "--access-logformat", "%(p)s %(U)s %(s)s", "jobctl.web:from_env()"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/login", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "gunicorn did not start"
                time.sleep(0.2)
        s = signed_in(base)
        answered: set[str] = set()
        deadline = time.monotonic() + 60
        while len(answered) < 2 and time.monotonic() < deadline:  # until both workers (booted) answered one
            r = s.get(f"{base}/stats.json", timeout=10, headers={"Connection": "close"})
            assert r.status_code == 200, r.text  # signed in, whichever worker answered
            answered = {line.split()[0] for line in access.read_text().splitlines() if "/stats.json 200" in line}
        assert len(answered) == 2, answered
        assert [q["name"] for q in r.json()["queues"]] == rt.settings.queues.names()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
