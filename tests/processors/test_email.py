"""send-email against real aiosmtpd servers, the outbox, and both databases."""

from __future__ import annotations

import dataclasses
import email
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from localservices import Ctx, SmtpServer, free_port, start_holding_claim
from sqlalchemy import func, insert, select

from jobctl import mailer
from jobctl.config import Settings
from jobctl.db import claims, email_log
from jobctl.errors import PermanentFailure, RetryLater
from jobctl.processors.email import send_email
from jobctl.services import Services

WELCOME = {"to": "ann@example.com", "subject": "Welcome!", "template": "welcome", "data": {"name": "Ann"}}


def logged(settings: Settings) -> int:
    with Services(settings).engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(email_log)).scalar_one())


def parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def bodies(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def test_outbox_when_no_smtp_then_skipped_on_rerun(
    database_url: str, make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    settings = make_settings(JOBCTL_DATABASE_URL=database_url)
    payload = {**WELCOME, "data": {"name": "<b>Ann</b>"}}
    ctx = make_ctx(settings, "send-email", job_id="job-1")
    result = send_email(payload, ctx)
    path = Path(result["outbox"])
    assert path.parent == settings.data_dir / "outbox" / "email"
    msg = parsed(path.read_bytes())
    assert msg["Subject"] == "Welcome!" and msg["To"] == "ann@example.com"
    assert msg["Message-ID"] == result["messageId"]
    text, html = bodies(msg)
    assert "Welcome, <b>Ann</b>!" in text
    assert "Welcome, &lt;b&gt;Ann&lt;/b&gt;!" in html
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert send_email(payload, make_ctx(settings, "send-email", job_id="job-1")) == {
        "skipped": "already sent",
        "idempotencyKey": "job:job-1",
    }
    assert logged(settings) == 1


def test_sends_by_smtp_once_per_idempotency_key(
    database_url: str, make_settings: Callable[..., Settings], make_ctx: Ctx,
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server()
    settings = make_settings(JOBCTL_DATABASE_URL=database_url, JOBCTL_SMTP_URL=server.url,
                             JOBCTL_MAIL_FROM="noreply@app.example")
    payload = {**WELCOME, "lang": "fr", "idempotencyKey": "welcome-ann"}
    result = send_email(payload, make_ctx(settings, "send-email"))
    assert result["sent"] is True and result["to"] == "ann@example.com"
    again = send_email(payload, make_ctx(settings, "send-email"))
    assert again["skipped"] == "already sent"
    assert len(server.messages) == 1
    envelope = server.messages[0]
    assert envelope.mail_from == "noreply@app.example" and envelope.rcpt_tos == ["ann@example.com"]
    msg = parsed(envelope.original_content)
    assert msg["Message-ID"] == result["messageId"]
    assert msg["Message-ID"].endswith("@app.example>")
    assert "Bienvenue, Ann !" in bodies(msg)[0]
    assert logged(settings) == 1


def test_two_runs_at_once_with_one_key_send_once(
    database_url: str, make_settings: Callable[..., Settings], make_ctx: Ctx,
    smtp_server: Callable[..., SmtpServer],
) -> None:
    """Two jobs with one idempotencyKey running together (a slow SMTP server keeps the first inside its
    send): the second is told to retry later, and its retry finds the key in the e-mail log."""
    server = smtp_server(data_delay_s=1.0)
    settings = make_settings(JOBCTL_DATABASE_URL=database_url, JOBCTL_SMTP_URL=server.url)
    payload = {**WELCOME, "idempotencyKey": "welcome:u1"}
    t, first = start_holding_claim(settings, lambda: send_email(payload, make_ctx(settings, "send-email",
                                                                                   job_id="job-a")))
    with pytest.raises(RetryLater, match="another run is doing e-mail welcome:u1"):
        send_email(payload, make_ctx(settings, "send-email", job_id="job-b"))
    t.join(15)
    assert first and first[0]["sent"] is True
    again = send_email(payload, make_ctx(settings, "send-email", job_id="job-b"))
    assert again["skipped"] == "already sent"
    assert len(server.messages) == 1 and logged(settings) == 1
    with Services(settings).engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(claims)).scalar_one() == 0


def test_a_dead_runs_claim_is_taken_over_when_stale_or_by_its_own_retry(
    database_url: str, make_settings: Callable[..., Settings], make_ctx: Ctx,
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server()
    settings = make_settings(JOBCTL_DATABASE_URL=database_url, JOBCTL_SMTP_URL=server.url)
    engine = Services(settings).engine
    now = datetime.now(UTC)
    with engine.begin() as conn:  # runs that died mid-send: one 10 minutes ago, one just now
        conn.execute(insert(claims).values(idempotency_key="email_log:old", owner="job-x",
                                           claimed_at=now - timedelta(minutes=10)))
        conn.execute(insert(claims).values(idempotency_key="email_log:job:job-y", owner="job-y", claimed_at=now))
    assert send_email({**WELCOME, "idempotencyKey": "old"}, make_ctx(settings, "send-email"))["sent"] is True
    assert send_email(WELCOME, make_ctx(settings, "send-email", job_id="job-y"))["sent"] is True  # its retry
    assert len(server.messages) == 2 and logged(settings) == 2


def test_4xx_is_retried_and_recorded_only_after_success(
    database_url: str, make_settings: Callable[..., Settings], make_ctx: Ctx,
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server(data_replies=["451 4.3.0 Try again later"])
    settings = make_settings(JOBCTL_DATABASE_URL=database_url, JOBCTL_SMTP_URL=server.url)
    ctx = make_ctx(settings, "send-email", job_id="j-4xx")
    with pytest.raises(mailer.MailDeferred, match="451"):
        send_email(WELCOME, ctx)
    assert logged(settings) == 0
    result = send_email(WELCOME, make_ctx(settings, "send-email", job_id="j-4xx"))
    assert result["sent"] is True
    assert len(server.messages) == 1 and logged(settings) == 1


def test_5xx_recipient_rejection_is_permanent(
    make_settings: Callable[..., Settings], make_ctx: Ctx, smtp_server: Callable[..., SmtpServer]
) -> None:
    server = smtp_server(reject_rcpt="550 5.1.1 No such user here")
    settings = make_settings(JOBCTL_SMTP_URL=server.url)
    with pytest.raises(PermanentFailure, match="550 5.1.1 No such user"):
        send_email(WELCOME, make_ctx(settings, "send-email"))
    assert logged(settings) == 0


def test_unreachable_smtp_server_is_retried(make_settings: Callable[..., Settings], make_ctx: Ctx) -> None:
    settings = make_settings(JOBCTL_SMTP_URL=f"smtp://127.0.0.1:{free_port()}")
    with pytest.raises(mailer.MailDeferred, match="unreachable"):
        send_email(WELCOME, make_ctx(settings, "send-email"))


def test_auth_on_loopback_and_password_never_in_results(
    make_settings: Callable[..., Settings], make_ctx: Ctx, smtp_server: Callable[..., SmtpServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = smtp_server(auth=True)
    good = make_settings(JOBCTL_SMTP_URL=server.url.replace("//", "//user:secret-pw@"))
    result = send_email(WELCOME, make_ctx(good, "send-email"))
    assert result["sent"] is True and server.logins[-1] == (b"user", b"secret-pw")
    bad = make_settings(JOBCTL_SMTP_URL=server.url.replace("//", "//user:wrong-pw@"))
    with pytest.raises(PermanentFailure) as info:
        send_email({**WELCOME, "idempotencyKey": "other"}, make_ctx(bad, "send-email"))
    assert "535" in str(info.value)
    assert "secret-pw" not in str(result) + caplog.text and "wrong-pw" not in str(info.value)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({**WELCOME, "template": "nope"}, "template"),
        ({**WELCOME, "lang": "de"}, "lang"),
        ({**WELCOME, "subject": "Hi\r\nBcc: x@evil.example"}, "one line of printable text"),
        ({**WELCOME, "data": {}}, "needs a value the payload lacks"),
        ({**WELCOME, "template": "password-reset"}, "needs a value the payload lacks"),
    ],
)
def test_invalid_input_is_permanent(
    payload: dict[str, Any], reason: str, make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    with pytest.raises(PermanentFailure, match=reason):
        send_email(payload, make_ctx(make_settings(), "send-email"))


def test_every_template_renders_in_both_languages() -> None:
    data = {"name": "Zoé", "resetUrl": "https://app.example/r?t=1&u=2", "title": "T<1>", "message": "M & m"}
    for lang in ("en", "fr"):
        for name in ("welcome", "password-reset", "notification"):
            text, html = mailer.render(name, lang, data)
            assert "Zoé" in text and "Zoé" in html
    text, html = mailer.render("password-reset", "en", data)
    assert "https://app.example/r?t=1&u=2" in text and 'href="https://app.example/r?t=1&amp;u=2"' in html
    text, html = mailer.render("notification", "fr", {"title": "T<1>", "message": "M & m"})
    assert "T<1>" in text and "T&lt;1&gt;" in html and "M &amp; m" in html


def test_templates_dir_overrides_and_unknown_language_is_permanent(
    tmp_path: Path, make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    custom = tmp_path / "tpl" / "en"
    custom.mkdir(parents=True)
    (custom / "welcome.txt").write_text("Custom hello {{ data.name }}")
    (custom / "welcome.html").write_text("<p>Custom hello {{ data.name }}</p>")
    settings = dataclasses.replace(make_settings(), templates_dir=tmp_path / "tpl")
    result = send_email(WELCOME, make_ctx(settings, "send-email"))
    assert "Custom hello Ann" in bodies(parsed(Path(result["outbox"]).read_bytes()))[0]
    with pytest.raises(PermanentFailure, match="no e-mail template 'welcome' in language 'de'"):
        mailer.render("welcome", "de", {"name": "x"})


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, written as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def tls_smtp(tmp_path: Path, implicit: bool) -> tuple[Any, SmtpServer, int, Path]:
    """A started aiosmtpd server with AUTH and a self-signed certificate, SMTPS (`implicit`) or
    STARTTLS required: (controller, state, port, cert)."""
    import ssl

    from aiosmtpd.controller import Controller

    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    state = SmtpServer()
    port = free_port()
    tls: dict[str, Any] = ({"ssl_context": server_ctx, "auth_require_tls": False} if implicit
                           else {"tls_context": server_ctx, "require_starttls": True})
    controller = Controller(state, hostname="127.0.0.1", port=port, authenticator=state.authenticate, **tls)
    controller.start()
    return controller, state, port, cert


def test_starttls_is_used_when_offered_and_the_certificate_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    controller, state, port, cert = tls_smtp(tmp_path, implicit=False)
    try:
        settings = make_settings(JOBCTL_SMTP_URL=f"smtp://user:secret-pw@127.0.0.1:{port}")
        with pytest.raises(mailer.MailDeferred, match="CERTIFICATE_VERIFY_FAILED"):
            send_email(WELCOME, make_ctx(settings, "send-email"))
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert send_email(WELCOME, make_ctx(settings, "send-email"))["sent"] is True
    finally:
        controller.stop()
    assert len(state.messages) == 1 and state.logins == [(b"user", b"secret-pw")]


def test_smtps_implicit_tls_with_a_verified_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], make_ctx: Ctx
) -> None:
    controller, state, port, cert = tls_smtp(tmp_path, implicit=True)
    try:
        settings = make_settings(JOBCTL_SMTP_URL=f"smtps://user:secret-pw@127.0.0.1:{port}")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert send_email(WELCOME, make_ctx(settings, "send-email"))["sent"] is True
    finally:
        controller.stop(no_assert=True)
    assert len(state.messages) == 1 and state.logins == [(b"user", b"secret-pw")]
