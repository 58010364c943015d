"""Local stand-ins for the services processors talk to, and a JobContext builder (used by conftest)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from jobctl.config import Settings
from jobctl.context import JobContext
from jobctl.services import Services


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def handler_for(server: HttpServer) -> type[BaseHTTPRequestHandler]:
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


def json_body(req: dict[str, Any]) -> Any:
    """The JSON body of a recorded request."""
    return json.loads(req["body"])


@dataclass
class SmtpServer:
    """An aiosmtpd server: scripted DATA replies, optional recipient rejection and AUTH."""

    data_replies: list[str] = field(default_factory=list)
    reject_rcpt: str | None = None
    messages: list[Any] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    url: str = ""
    data_delay_s: float = 0.0  # a slow server: the answer to DATA comes this much later

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        """Accept the recipient unless this server is scripted to reject it."""
        if self.reject_rcpt:
            return self.reject_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        """Answer the next scripted reply, else store the message."""
        if self.data_delay_s:
            import asyncio

            await asyncio.sleep(self.data_delay_s)
        if self.data_replies:
            return self.data_replies.pop(0)
        self.messages.append(envelope)
        return "250 Message accepted"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        """Accept user/secret-pw only."""
        from aiosmtpd.smtp import AuthResult

        self.logins.append((data.login, data.password))
        return AuthResult(success=data.login == b"user" and data.password == b"secret-pw", handled=False)


def start_holding_claim(settings: Settings, run: Callable[[], dict[str, Any]]) -> tuple[threading.Thread,
                                                                                  list[dict[str, Any]]]:
    """Start `run` (a processor call whose side effect is slow) in a thread and return once it holds its
    claim in the `claims` table: (the thread, the list its result lands in)."""
    from sqlalchemy import func, select

    from jobctl.db import claims

    out: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: out.append(run()), daemon=True)
    t.start()
    deadline = time.time() + 10
    with Services(settings).engine.connect() as conn:
        while not conn.execute(select(func.count()).select_from(claims)).scalar_one():
            assert time.time() < deadline, "the first run never claimed its key"
            time.sleep(0.02)
            conn.rollback()
    return t, out
