"""jobctl's own web dashboard: queues, jobs, dead letters, workers and schedules, safe by default.

`create_app(runtime)` returns a WSGI application (Flask) to serve with `jobctl dashboard` or mount in
another application at any prefix (`/admin/queues`): through werkzeug's `DispatcherMiddleware` in Flask
or Django, through `a2wsgi.WSGIMiddleware` in FastAPI/Starlette. It has no logic of its own: pages read
`metrics.snapshot` (the figures of `jobctl stats`) and `control`'s index-range reads; actions call the
CLI's functions (`control`, `replay`). Modules: `app` (guard, errors), `views` (pages and actions),
`security` (credential, Host and Origin rules), `lockout` (failed sign-ins per address, in Redis), `paging`
(keyset pages of dead letters), `mask` (payload masking), `charts` (SVG), `server` (serving until SIGTERM).
"""

from jobctl.web.app import create_app, create_asgi_app, from_env

__all__ = ["create_app", "create_asgi_app", "from_env"]
