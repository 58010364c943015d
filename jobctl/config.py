"""Settings: built once from the environment and `jobctl.toml`, then passed explicitly (docs/settings.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from jobctl.errors import ConfigError
from jobctl.queues import DEFAULT_POLICIES, Registry

CONFIG_FILE = "jobctl.toml"

# setting name -> (environment variable, default)
_ENV: dict[str, tuple[str, str | None]] = {
    "redis_url": ("JOBCTL_REDIS_URL", None),
    "database_url": ("JOBCTL_DATABASE_URL", None),
    "data_dir": ("JOBCTL_DATA_DIR", None),
    "smtp_url": ("JOBCTL_SMTP_URL", None),
    "mail_from": ("JOBCTL_MAIL_FROM", "jobctl@localhost"),
    "onesignal_app_id": ("JOBCTL_ONESIGNAL_APP_ID", None),
    "onesignal_api_key": ("JOBCTL_ONESIGNAL_API_KEY", None),
    "onesignal_url": ("JOBCTL_ONESIGNAL_URL", "https://api.onesignal.com"),
    "storage_url": ("JOBCTL_STORAGE_URL", None),
    "s3_endpoint_url": ("JOBCTL_S3_ENDPOINT_URL", None),
    "webhook_target_url": ("JOBCTL_WEBHOOK_TARGET_URL", None),
    "webhook_secret": ("JOBCTL_WEBHOOK_SECRET", None),
    "alert_webhook_url": ("JOBCTL_ALERT_WEBHOOK_URL", None),
    "dashboard_token": ("JOBCTL_DASHBOARD_TOKEN", None),  # a token or a user + password enables actions
    "dashboard_user": ("JOBCTL_DASHBOARD_USER", None),
    "dashboard_password": ("JOBCTL_DASHBOARD_PASSWORD", None),
    "dashboard_mask": ("JOBCTL_DASHBOARD_MASK", "secrets"),  # payload fields to mask: secrets, personal, none
    "dashboard_hosts": ("JOBCTL_DASHBOARD_HOSTS", None),  # Host names it answers besides loopback (comma list)
}
SECRET_FIELDS = ("onesignal_api_key", "webhook_secret", "alert_webhook_url", "dashboard_token", "dashboard_password")
# whole seconds: setting name -> (environment variable, lowest allowed)
_SECONDS = {"alert_cooldown_s": ("JOBCTL_ALERT_COOLDOWN_S", 1), "heartbeat_ttl_s": ("JOBCTL_HEARTBEAT_TTL_S", 3)}
_BYTES = {"image_max_bytes": ("JOBCTL_IMAGE_MAX_BYTES", 1)}  # whole bytes, same shape
_NOT_SHOWN = ("queues", "sources")  # `queues list` shows the policies; sources are shown beside each value


@dataclass(frozen=True)
class Source:
    """Where a setting's value came from: `env` (the variable), `file` (the config file's path),
    `option` (the command-line option) or `default`."""

    kind: str = "default"
    origin: str | None = None

    def public(self) -> dict[str, str]:
        """`{"source": kind}` plus `variable`, `path` or `option` naming the origin."""
        key = {"env": "variable", "file": "path", "option": "option"}.get(self.kind)
        return {"source": self.kind, key: self.origin} if key and self.origin else {"source": self.kind}

    def label(self) -> str:
        """Short text for a table cell: `env JOBCTL_X`, `file`, `option --x` or `default`."""
        return f"{self.kind} {self.origin}" if self.kind in ("env", "option") and self.origin else self.kind


DEFAULT = Source()


@dataclass(frozen=True)
class Settings:
    """Everything jobctl reads from its environment; built once per process."""

    redis_url: str = "redis://localhost:6379/0"
    database_url: str = ""
    data_dir: Path = Path(".jobctl-data")
    smtp_url: str | None = None
    mail_from: str = "jobctl@localhost"
    onesignal_app_id: str | None = None
    onesignal_api_key: str | None = None
    onesignal_url: str = "https://api.onesignal.com"
    storage_url: str = ""
    s3_endpoint_url: str | None = None
    webhook_target_url: str | None = None
    webhook_secret: str | None = None
    alert_webhook_url: str | None = None
    dashboard_token: str | None = None
    dashboard_user: str | None = None
    dashboard_password: str | None = None
    dashboard_mask: str = "secrets"
    dashboard_hosts: str | None = None
    templates_dir: Path | None = None
    retention_days: Mapping[str, float] = field(
        default_factory=lambda: {"audit-logs": 365, "notifications": 90, "temp-files": 1}
    )
    alert_cooldown_s: int = 3600
    heartbeat_ttl_s: int = 30
    image_max_bytes: int = 50 * 2**20  # the largest original process-image reads from storage
    config_path: Path | None = None
    queues: Registry = field(default_factory=lambda: Registry(DEFAULT_POLICIES))
    sources: Mapping[str, Source] = field(default_factory=dict, compare=False, repr=False)  # absent: default

    def public(self) -> dict[str, object]:
        """Every setting as shown to an operator, in field order: passwords and secrets masked, paths and
        strings as text, numbers as numbers."""
        return {f.name: _public_value(f.name, getattr(self, f.name)) for f in fields(self) if f.name not in _NOT_SHOWN}

    def source(self, name: str) -> Source:
        """Where setting `name` came from."""
        return self.sources.get(name, DEFAULT)

    def public_sources(self) -> dict[str, dict[str, str]]:
        """The source of every setting `public()` shows."""
        return {name: self.source(name).public() for name in self.public()}


def _public_value(name: str, value: object) -> object:
    """One setting's value as shown: a secret field masked whole, a URL's password and query masked."""
    if isinstance(value, str) and value and name in SECRET_FIELDS:
        return mask_url(value, secret=True) if "://" in value else "****"
    if isinstance(value, str):
        return mask_url(value) if "://" in value else value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _parsed_cleanly(url: str) -> SplitResult | None:
    """The URL's parts, or None when where its credentials end is ambiguous: an unencoded `#`, `/` or `?`
    in a password ends the authority early, leaving the rest of the password in the port or the path."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    rest = url.partition("://")[2][len(parts.netloc):] if "://" in url else url
    return None if "@" in rest and "@" not in parts.netloc else parts


def parses_cleanly(url: str) -> bool:
    """Whether the URL's credentials end where a client library will think they end."""
    return _parsed_cleanly(url) is not None


def mask_url(url: str, secret: bool = False) -> str:
    """The URL with its password replaced by ****, its query by ****, and any path token of a webhook.

    `secret`: the whole URL is a credential (an alert webhook: Slack, Teams, a token in the path):
    only its scheme, host and port are kept. A URL that does not parse cleanly keeps only its scheme."""
    parts = _parsed_cleanly(url)
    if parts is None:
        scheme = url.partition("://")[0] if "://" in url else ""
        return f"{scheme}://****" if scheme.isalnum() else "****"
    netloc = parts.netloc
    if parts.password is not None:
        user = quote(parts.username or "", safe="")
        host = netloc.rpartition("@")[2]
        netloc = f"{user}:****@{host}" if user else f":****@{host}"
    elif "@" in netloc:
        netloc = "****@" + netloc.rpartition("@")[2]
    path = parts.path
    if secret:
        netloc = netloc.rpartition("@")[2]
        path = "/****" if path not in ("", "/") or parts.query else path
        return urlunsplit((parts.scheme, netloc, path, "", ""))
    if parts.scheme in ("http", "https") and "hooks" in parts.netloc + path:
        path = "/****"
    masked = urlunsplit((parts.scheme, netloc, path, parts.query and "****", ""))
    if not netloc and url.startswith(f"{parts.scheme}:///"):  # keep sqlite:////abs/path intact
        masked = f"{parts.scheme}://{path}" if path.startswith("/") else masked
    return masked


def _redis_url(env: Mapping[str, str]) -> tuple[str, Source]:
    """The Redis URL from the original design's variables (JOBCTL_REDIS_URL unset), and which were read."""
    if env.get("REDIS_URL"):
        return env["REDIS_URL"], Source("env", "REDIS_URL")
    if env.get("REDIS_HOST") or env.get("REDIS_PORT"):
        host = env.get("REDIS_HOST", "localhost")
        port = env.get("REDIS_PORT", "6379")
        if not port.isdigit():
            raise ConfigError(f"REDIS_PORT must be a port number, got {port!r}")
        password = env.get("REDIS_PASSWORD")
        auth = f":{quote(password, safe='')}@" if password else ""
        names = ", ".join(v for v in ("REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD") if env.get(v))
        return f"redis://{auth}{host}:{port}/0", Source("env", names)
    return "redis://localhost:6379/0", DEFAULT


def default_data_dir(env: Mapping[str, str]) -> Path:
    """Per-user data directory (XDG), used when JOBCTL_DATA_DIR is unset."""
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", ".")) / ".local" / "share")
    return Path(base) / "jobctl"


def _read_toml(path: Path) -> dict[str, object]:
    import tomllib  # only when a config file exists (~4 ms of every command's start-up otherwise)

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def _config_path(config: str | Path | None, env: Mapping[str, str], cwd: Path | None) -> tuple[Path | None, Source]:
    """The config file named by `--config`, else by JOBCTL_CONFIG, else jobctl.toml in the working directory."""
    if config:
        return Path(config), Source("option", "--config")
    if env.get("JOBCTL_CONFIG"):
        return Path(env["JOBCTL_CONFIG"]), Source("env", "JOBCTL_CONFIG")
    cand = (cwd or Path.cwd()) / CONFIG_FILE
    return (cand, DEFAULT) if cand.is_file() else (None, DEFAULT)


def _text_settings(file_settings: Mapping[str, object], env: Mapping[str, str], src: str,
                   sources: dict[str, Source]) -> dict[str, object]:
    """The string settings (`_ENV`): the file's `[settings]`, overridden by the environment."""
    values: dict[str, object] = {}
    for key, value in file_settings.items():
        if key in _SECONDS or key in _BYTES:
            continue
        if key not in _ENV:
            known = ", ".join([*_ENV, *_SECONDS, *_BYTES])
            raise ConfigError(f"{src}: [settings] unknown field {key!r}; known: {known}")
        if not isinstance(value, str):
            raise ConfigError(f"{src}: [settings] {key} must be a string")
        values[key], sources[key] = value, Source("file", src)
    for key, (var, default) in _ENV.items():
        if env.get(var):
            values[key], sources[key] = env[var], Source("env", var)
        elif key not in values and default is not None:
            values[key] = default
    if not env.get("JOBCTL_REDIS_URL") and "redis_url" not in values:
        values["redis_url"], sources["redis_url"] = _redis_url(env)
    return values


def _whole_settings(file_settings: Mapping[str, object], env: Mapping[str, str], src: str,
                    sources: dict[str, Source]) -> dict[str, int]:
    """The whole-number settings (`_SECONDS`, `_BYTES`) set by the environment or the file."""
    values: dict[str, int] = {}
    for table, unit in ((_SECONDS, "seconds"), (_BYTES, "bytes")):
        for key, (var, low) in table.items():
            if env.get(var):
                values[key] = _whole(env[var], var, low, unit)
                sources[key] = Source("env", var)
            elif file_settings.get(key) is not None:
                values[key] = _whole(str(file_settings[key]), f"{src}: [settings] {key}", low, unit)
                sources[key] = Source("file", src)
    return values


def load(
    env: Mapping[str, str] | None = None,
    config: str | Path | None = None,
    cwd: Path | None = None,
    redis_url: str | None = None,
    database_url: str | None = None,
) -> Settings:
    """Build Settings: defaults < jobctl.toml < environment < command-line options, noting each value's source."""
    env = dict(os.environ if env is None else env)
    path, path_source = _config_path(config, env, cwd)
    doc = _read_toml(path) if path else {}
    src = str(path)
    sources: dict[str, Source] = {"config_path": path_source}
    file_settings = doc.get("settings", {})
    if not isinstance(file_settings, dict):
        raise ConfigError(f"{src}: [settings] must be a table")
    values = _text_settings(file_settings, env, src, sources)
    options = {"redis_url": ("--redis-url", redis_url), "database_url": ("--database-url", database_url)}
    for key, (option, given) in options.items():
        if given:
            values[key], sources[key] = given, Source("option", option)
    for key in ("data_dir", "database_url", "storage_url"):  # empty (or unset): the default derived below
        if not values.get(key):
            sources.pop(key, None)
    data_dir = Path(str(values.pop("data_dir", "") or default_data_dir(env))).expanduser().resolve()
    if not values.get("database_url"):
        values["database_url"] = f"sqlite:///{data_dir / 'jobctl.db'}"
    if not values.get("storage_url"):
        values["storage_url"] = (data_dir / "storage").resolve().as_uri()
    values.update(_whole_settings(file_settings, env, src, sources))
    from jobctl import jobtypes

    registry = jobtypes.load(doc, src)  # queues and job types: built-in, installed packages', [queues.*], [jobs.*]
    return Settings(data_dir=data_dir, config_path=path, queues=registry, sources=sources,
                    **values)  # type: ignore[arg-type]


def _whole(raw: str, where: str, low: int, unit: str) -> int:
    if not raw.isdigit() or int(raw) < low:
        raise ConfigError(f"{where} must be a whole number of {unit} >= {low}, got {raw!r}")
    return int(raw)
