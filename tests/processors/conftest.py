"""Real local services for processor tests: SQLite/PostgreSQL, aiosmtpd, http.server, moto S3."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from localservices import Ctx, HttpServer, SmtpServer, free_port, handler_for

from jobctl import config
from jobctl.config import Settings

# --- settings and context --------------------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from an explicit environment (never the developer's), data dir under tmp_path."""

    def make(**env: str) -> Settings:
        base = {"JOBCTL_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
        return config.load(env={**base, **env}, cwd=tmp_path)

    return make


@pytest.fixture
def make_ctx() -> Ctx:
    """`make_ctx(settings, "send-email")` -> JobContext."""
    return Ctx()


# --- HTTP ------------------------------------------------------------------------------------

@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    """A threaded http.server on a free local port."""
    state = HttpServer(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


# --- S3 (moto server mode) -------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on a free local port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server; AWS credentials for it set in the environment."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"jobctl-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    return bucket


# --- SMTP (aiosmtpd) -------------------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., SmtpServer]]:
    """`smtp_server(data_replies=[...], reject_rcpt="550 ...", auth=True)` starts one on a free port."""
    from aiosmtpd.controller import Controller

    controllers: list[Any] = []

    def start(auth: bool = False, **kwargs: Any) -> SmtpServer:
        state = SmtpServer(**kwargs)
        port = free_port()
        extra = {"authenticator": state.authenticate, "auth_require_tls": False} if auth else {}
        controller = Controller(state, hostname="127.0.0.1", port=port, **extra)
        controller.start()
        controllers.append(controller)
        state.url = f"smtp://127.0.0.1:{port}"
        return state

    yield start
    for controller in controllers:
        controller.stop()
