"""Fixtures of the web dashboard tests: the CLI's environment with a credential, the dashboard served by a
real WSGI server (werkzeug's, as `jobctl dashboard` runs it) in a thread, requests sessions that sign in
through the login form, and a real Chromium driven by Selenium (Debian's chromium + chromium-driver)."""

from __future__ import annotations

import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from jobctl.runtime import Runtime
from jobctl.web import create_app, security
from jobctl.web.server import serve
from tests.support.cli import db_env, runtime_for

USER, PASSWORD = "alice", "correct horse battery staple"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """CLI environment with its own SQLite database and a dashboard user + password."""
    return db_env(cli_env, tmp_path) | {"JOBCTL_DASHBOARD_USER": USER, "JOBCTL_DASHBOARD_PASSWORD": PASSWORD}


@pytest.fixture
def rt(env: dict[str, str], tmp_path: Path) -> Runtime:
    """A runtime on the same Redis and database as the CLI and the dashboard."""
    return runtime_for(env, tmp_path)


class Served:
    """A WSGI app served by `jobctl.web.server.serve` in a thread until `close`."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop, ready = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=serve, args=(app, "127.0.0.1", self.port, self.stop, ready),
                                       daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def close(self) -> None:
        """Stop serving and wait for the thread."""
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def site(rt: Runtime) -> Iterator[str]:
    """Base URL of the dashboard on `rt`, with the Host rules `jobctl dashboard` applies on 127.0.0.1."""
    served = Served(create_app(rt, security.allowed_hosts("127.0.0.1", None)))
    yield served.url
    served.close()


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def signed_in(base: str, user: str = USER, password: str = PASSWORD) -> requests.Session:
    """A requests session signed in through the login form (same-origin, with the form's CSRF token)."""
    s = requests.Session()
    page = s.get(f"{base}/login", timeout=10)
    r = s.post(f"{base}/login", data={"csrf": csrf_of(page.text), "user": user, "secret": password},
               headers={"Origin": origin_of(base)}, timeout=10, allow_redirects=False)
    assert r.status_code == 302, r.text
    return s


def origin_of(url: str) -> str:
    """scheme://host:port of a URL."""
    m = re.match(r"(https?://[^/]+)", url)
    assert m
    return m.group(1)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium under Selenium (skipped, saying why, when Debian's chromium or chromedriver is
    absent: `./dev test` installs both)."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromium-driver are not installed (./dev test installs them from Debian)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1920,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def browser_sign_in(d: Any, base: str, user: str = USER, password: str = PASSWORD) -> None:
    """Sign in through the login form in the browser."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    d.get(f"{base}/login")
    d.delete_all_cookies()
    d.get(f"{base}/login")
    d.find_element(By.ID, "user-field").send_keys(user)
    d.find_element(By.ID, "secret-field").send_keys(password)
    d.find_element(By.ID, "sign-in").click()
    # click() returns before the browser follows the redirect: wait for the signed-in page, not the form
    WebDriverWait(d, 30).until(lambda drv: drv.find_elements(By.ID, "user"))
    assert d.find_element(By.ID, "user").text == user
