"""The dashboard's WSGI application (Flask): settings, the request guard, errors, and the template helpers.

Every request passes `guard`: the Host must be one the dashboard answers (when it serves itself), a
configured credential makes every page need a signed-in session, and a state change must be a POST from
one of its own pages (Origin or Referer naming the Host) carrying the session's CSRF token, by a
signed-in user. Without a credential it is read-only: no POST is accepted. The views are in `views.py`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from flask import Flask, Response, current_app, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from jobctl.errors import JobctlError
from jobctl.runtime import Runtime
from jobctl.web import security
from jobctl.web.lockout import Lockout
from jobctl.web.mask import Masker

log = logging.getLogger("jobctl.web")
SESSION_S = 12 * 3600
_STATUS = {2: 400, 3: 404, 4: 503}


class _Sessions(SecureCookieSessionInterface):
    """Signed-cookie sessions scoped to the mount point (`/admin/queues`, not the host app's whole site),
    and Secure whenever the request came over HTTPS (a TLS front end that says so through the WSGI scheme)."""

    def get_cookie_path(self, app: Flask) -> str:
        return request.script_root or "/"

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


@dataclass(frozen=True)
class Dashboard:
    """What the views share: the runtime, the masker, whether actions are enabled, and the sign-in lockout."""

    rt: Runtime
    masker: Masker
    actions: bool
    allowed_hosts: tuple[str, ...] | None
    lockout: Lockout = Lockout()


def state() -> Dashboard:
    """The dashboard of the current application."""
    d: Dashboard = current_app.extensions["jobctl"]
    return d


def user() -> str | None:
    """The signed-in user of this request, if any (sessions last `SESSION_S`)."""
    name = session.get("user")
    if not name or time.time() - float(session.get("at", 0)) > SESSION_S:
        return None
    return str(name)


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def refuse(code: int, reason: str) -> Response:
    """A one-line refusal, logged with the path and the client."""
    log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote_addr, reason)
    return Response(reason + "\n", status=code, mimetype="text/plain")


def guard() -> Any:
    """The checks every request passes before its view (see the module docstring)."""
    d = state()
    if not security.host_allowed(request.host, d.allowed_hosts):
        return refuse(400, f"this dashboard does not answer for Host {security.host_name(request.host)!r}")
    if request.endpoint == "static":
        return None
    if request.method == "POST":
        if not d.actions:
            return refuse(403, "read-only dashboard: set JOBCTL_DASHBOARD_TOKEN, or a user and password, to act")
        if not security.same_origin(request.headers.get("Origin"), request.headers.get("Referer"), request.host):
            return refuse(403, "cross-origin request refused (Origin or Referer must name this dashboard)")
        sent = request.form.get("csrf", "")
        if not sent or "csrf" not in session or not secrets.compare_digest(sent, str(session["csrf"])):
            return refuse(400, "missing or wrong CSRF token: reload the page and try again")
        if request.endpoint != "login" and user() is None:
            return refuse(403, "sign in first")
    elif d.actions and user() is None and request.endpoint != "login":
        return redirect(url_for("login", next=request.full_path if request.query_string else request.path))
    return None


def _error(exc: Exception) -> tuple[str, int]:
    if isinstance(exc, JobctlError):
        code, text = _STATUS.get(exc.exit_code, 409), str(exc)
    else:
        code, text = 503, f"Redis became unreachable ({type(exc).__name__})"
    return render_template("error.html", message=text, code=code), code


def _security_headers(resp: Response) -> Response:
    resp.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                            "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "static":
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def create_app(rt: Runtime, allowed_hosts: Sequence[str] | None = None, lockout: Lockout | None = None) -> Flask:
    """The dashboard as a WSGI application on `rt`'s Redis and database. Mount it under any prefix (its
    links follow SCRIPT_NAME). `allowed_hosts`: the Host names it answers (None: any; a host application
    that mounts it checks its own). `lockout`: how failed sign-ins lock a client out (default `Lockout()`)."""
    from jobctl.web import views

    s = rt.settings
    app = Flask("jobctl.web", root_path=__file__.rsplit("/", 1)[0])
    app.config.update(SECRET_KEY=security.session_key(s), SESSION_COOKIE_NAME="jobctl_dashboard",
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      PERMANENT_SESSION_LIFETIME=timedelta(seconds=SESSION_S), MAX_CONTENT_LENGTH=1 << 20)
    app.session_interface = _Sessions()
    app.extensions["jobctl"] = Dashboard(rt, Masker(s.dashboard_mask), security.has_credential(s),
                                         tuple(allowed_hosts) if allowed_hosts is not None else None,
                                         lockout or Lockout())
    app.jinja_env.globals.update(csrf_token=csrf_token, current_user=user, dashboard=state)
    app.before_request(guard)
    app.after_request(_security_headers)
    app.register_error_handler(JobctlError, _error)
    app.register_error_handler(redis.RedisError, _error)
    views.register(app)
    return app


def from_env() -> Flask:
    """The dashboard on the settings of this process's environment (for `gunicorn 'jobctl.web:from_env()'`)."""
    from jobctl.config import load

    return create_app(Runtime(load()))


def create_asgi_app(rt: Runtime, allowed_hosts: Sequence[str] | None = None) -> Any:
    """The same dashboard as an ASGI application (a2wsgi's WSGIMiddleware runs it in a thread pool), to mount
    in FastAPI or Starlette: `app.mount("/admin/queues", create_asgi_app(rt))`."""
    from a2wsgi import WSGIMiddleware

    return WSGIMiddleware(create_app(rt, allowed_hosts))  # type: ignore[arg-type]
