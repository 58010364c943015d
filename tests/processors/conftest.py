"""Real local services for processor tests: SQLite/PostgreSQL, aiosmtpd, http.server, moto S3."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from jobctl import config, db
from jobctl.config import Settings
from jobctl.context import JobContext
from jobctl.services import Services

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- databases -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema of its own, dropped at the end."""
    import psycopg

    try:
        conn = psycopg.connect(PG_URL, connect_timeout=2, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {str(exc).splitlines()[0]}")
    schema = f"jobctl_test_{uuid.uuid4().hex[:10]}"
    conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        db.dispose_engines()
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database-facing test runs on SQLite (a fresh file) and on PostgreSQL (tables emptied)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'app.db'}"
    url: str = request.getfixturevalue("pg_url")
    engine = db.engine_for(url)
    db.init_db(engine)
    with engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(delete(table))
    return url


# --- settings and context --------------------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from an explicit environment (never the developer's), data dir under tmp_path."""

    def make(**env: str) -> Settings:
        base = {"JOBCTL_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
        return config.load(env={**base, **env}, cwd=tmp_path)

    return make


@dataclass
class Ctx:
    """Builds JobContexts and records the progress they report."""

    progress: list[int] = field(default_factory=list)

    def __call__(self, settings: Settings, job_name: str, job_id: str | None = None) -> JobContext:
        """A JobContext for `job_name` on fresh Services."""
        return JobContext(
            job_id=job_id or uuid.uuid4().hex,
            job_name=job_name,
            queue=settings.queues.for_job(job_name).name,
            settings=settings,
            services=Services(settings),
            progress=self.progress.append,
        )


@pytest.fixture
def make_ctx() -> Ctx:
    """`make_ctx(settings, "send-email")` -> JobContext."""
    return Ctx()


# --- HTTP ------------------------------------------------------------------------------------

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class HttpServer:
    """A local HTTP server that records requests and answers from a script of replies."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    replies: list[Reply | Callable[[dict[str, Any]], Reply]] = field(default_factory=list)
    default: Reply = (200, {"Content-Type": "application/json"}, b'{"id": "n-1"}')

    def answer(self, req: dict[str, Any]) -> Reply:
        """Record `req` and return the next scripted reply (the default once the script is used up)."""
        self.requests.append(req)
        reply = self.replies.pop(0) if self.replies else self.default
        return reply(req) if callable(reply) else reply


def _handler(server: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            req = {"path": self.path, "headers": dict(self.headers.items()), "body": body}
            status, headers, payload = server.answer(req)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return None

    return Handler


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    """A threaded http.server on a free local port."""
    state = HttpServer(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def json_body(req: dict[str, Any]) -> Any:
    """The JSON body of a recorded request."""
    return json.loads(req["body"])


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


@dataclass
class SmtpServer:
    """An aiosmtpd server: scripted DATA replies, optional recipient rejection and AUTH."""

    data_replies: list[str] = field(default_factory=list)
    reject_rcpt: str | None = None
    messages: list[Any] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    url: str = ""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        """Accept the recipient unless this server is scripted to reject it."""
        if self.reject_rcpt:
            return self.reject_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        """Answer the next scripted reply, else store the message."""
        if self.data_replies:
            return self.data_replies.pop(0)
        self.messages.append(envelope)
        return "250 Message accepted"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        """Accept user/secret-pw only."""
        from aiosmtpd.smtp import AuthResult

        self.logins.append((data.login, data.password))
        return AuthResult(success=data.login == b"user" and data.password == b"secret-pw")


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
