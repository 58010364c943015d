"""`jobctl config show` run as a user runs it: every setting, its effective value and its source, secrets masked."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import pytest

from jobctl import config
from jobctl.commands.config import cell, fold
from tests.support import cli
from tests.support.cli import JOBCTL

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SHOWN = [f.name for f in dataclasses.fields(config.Settings) if f.name not in ("queues", "sources")]
SECRET = "XYZsecret"  # in every secret of the secret tests, each field its own variant


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `jobctl` in `cwd`, stdout and stderr piped."""
    return subprocess.run([JOBCTL, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def in_terminal(env: dict[str, str], cwd: Path, *args: str, columns: int = 80) -> tuple[int, str]:
    """Run jobctl on a pseudo-terminal `columns` wide (COLUMNS set too): (exit code, the screen without escapes)."""
    env = env | {"COLUMNS": str(columns), "TERM": "xterm-256color"}
    rc, screen, _ = cli.in_pty(env, *args, rows=60, columns=columns, cwd=cwd)
    return rc, ANSI.sub("", screen).replace("\r", "")


def table_rows(screen: str) -> dict[str, tuple[list[str], str]]:
    """setting -> (its value's lines, its source) from the text table."""
    lines = screen.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("setting"))
    v, s = lines[head].index("value"), lines[head].index("source")
    rows: dict[str, tuple[list[str], str]] = {}
    name = ""
    for line in lines[head + 2:]:
        if not line.strip():
            continue
        if line[:v].strip():
            name = line[:v].strip()
            rows[name] = ([], line[s:].strip())
        rows[name][0].append(line[v:s].rstrip())
    return rows


def base_env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The CLI environment with no jobctl setting at all (HOME in tmp_path)."""
    env = {k: v for k, v in cli_env.items() if not k.startswith(("JOBCTL_", "REDIS_", "XDG_"))}
    return env | {"HOME": str(tmp_path / "home")}


def test_every_setting_with_its_value_and_source(cli_env: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "jobctl.toml"  # found in the working directory
    cfg.write_text('[settings]\nmail_from = "ops@example.com"\nheartbeat_ttl_s = 10\nimage_max_bytes = 1048576\n'
                   'onesignal_url = "https://file.example.com"\n')
    env = base_env(cli_env, tmp_path) | {
        "JOBCTL_DATA_DIR": str(tmp_path / "data"), "JOBCTL_ALERT_COOLDOWN_S": "600",
        "JOBCTL_IMAGE_MAX_BYTES": "2097152", "JOBCTL_ONESIGNAL_URL": "https://env.example.com",
        "REDIS_URL": "redis://legacy:6379/3"}
    out = run(env, tmp_path, "--database-url", f"sqlite:///{tmp_path}/app.db", "config", "show", "--json")
    assert (out.returncode, out.stderr) == (0, "")
    doc = json.loads(out.stdout)
    sources = doc.pop("sources")
    assert list(doc) == SHOWN and list(sources) == SHOWN  # every Settings field, and a source for each
    file_source = {"source": "file", "path": str(cfg)}
    assert doc["mail_from"] == "ops@example.com" and sources["mail_from"] == file_source
    assert doc["heartbeat_ttl_s"] == 10 and sources["heartbeat_ttl_s"] == file_source
    assert doc["image_max_bytes"] == 2097152  # the environment wins over the file
    assert sources["image_max_bytes"] == {"source": "env", "variable": "JOBCTL_IMAGE_MAX_BYTES"}
    assert doc["onesignal_url"] == "https://env.example.com"
    assert sources["onesignal_url"] == {"source": "env", "variable": "JOBCTL_ONESIGNAL_URL"}
    assert doc["alert_cooldown_s"] == 600
    assert sources["alert_cooldown_s"] == {"source": "env", "variable": "JOBCTL_ALERT_COOLDOWN_S"}
    assert doc["redis_url"] == "redis://legacy:6379/3"
    assert sources["redis_url"] == {"source": "env", "variable": "REDIS_URL"}
    assert doc["database_url"] == f"sqlite:///{tmp_path}/app.db"
    assert sources["database_url"] == {"source": "option", "option": "--database-url"}
    assert doc["data_dir"] == str(tmp_path / "data")
    assert sources["data_dir"] == {"source": "env", "variable": "JOBCTL_DATA_DIR"}
    assert doc["storage_url"] == (tmp_path / "data" / "storage").as_uri() and sources["storage_url"] == {
        "source": "default"}  # derived from the data directory
    assert doc["retention_days"] == {"audit-logs": 365, "notifications": 90, "temp-files": 1}
    assert (doc["config_path"], sources["config_path"]) == (str(cfg), {"source": "default"})
    assert doc["templates_dir"] is None and sources["templates_dir"] == {"source": "default"}

    text = table_rows(run(env, tmp_path, "--database-url", f"sqlite:///{tmp_path}/app.db", "config", "show").stdout)
    assert list(text) == SHOWN
    assert all(len(lines) == 1 for lines, _ in text.values())  # a pipe gets whole rows
    assert text["heartbeat_ttl_s"] == (["10"], "file")
    assert text["image_max_bytes"] == (["2097152 (2 MiB)"], "env JOBCTL_IMAGE_MAX_BYTES")
    assert text["redis_url"] == (["redis://legacy:6379/3"], "env REDIS_URL")
    assert text["database_url"][1] == "option --database-url"
    assert text["retention_days"] == (["audit-logs=365, notifications=90, temp-files=1"], "default")
    assert text["templates_dir"] == (["—"], "default")


def test_defaults_say_default(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    out = run(base_env(cli_env, tmp_path), tmp_path, "config", "show", "--json")
    doc = json.loads(out.stdout)
    assert set(map(json.dumps, doc.pop("sources").values())) == {'{"source": "default"}'}
    defaults = config.Settings()
    assert doc["redis_url"] == "redis://localhost:6379/0" and doc["config_path"] is None
    assert doc["data_dir"] == str(tmp_path / "home" / ".local" / "share" / "jobctl")
    assert (doc["alert_cooldown_s"], doc["heartbeat_ttl_s"], doc["image_max_bytes"]) == (
        defaults.alert_cooldown_s, defaults.heartbeat_ttl_s, defaults.image_max_bytes) == (3600, 30, 50 * 2**20)
    assert doc["mail_from"] == "jobctl@localhost" and doc["smtp_url"] is None


def test_legacy_redis_variables_and_the_config_file_named_by_env(cli_env: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text("[settings]\nalert_cooldown_s = 60\n")
    env = base_env(cli_env, tmp_path) | {"REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_PASSWORD": "r3dis-pw",
                                         "JOBCTL_CONFIG": str(cfg)}
    out = run(env, tmp_path, "config", "show", "--json")
    doc = json.loads(out.stdout)
    assert doc["redis_url"] == "redis://:****@cache:6380/0" and "r3dis-pw" not in out.stdout
    assert doc["sources"]["redis_url"] == {"source": "env", "variable": "REDIS_HOST, REDIS_PORT, REDIS_PASSWORD"}
    assert doc["sources"]["config_path"] == {"source": "env", "variable": "JOBCTL_CONFIG"}
    assert doc["sources"]["alert_cooldown_s"] == {"source": "file", "path": str(cfg)}
    out = run(env, tmp_path, "--redis-url", "redis://other:1/0", "--config", str(cfg), "config", "show", "--json")
    sources = json.loads(out.stdout)["sources"]
    assert sources["redis_url"] == {"source": "option", "option": "--redis-url"}
    assert sources["config_path"] == {"source": "option", "option": "--config"}


def secret_values(tag: str) -> dict[str, str]:
    """A value for every secret field and every URL setting, each holding its own distinctive secret."""
    s = f"{SECRET}-{tag}"
    values = {
        "redis_url": f"rediss://app:{s}-redis@redis.internal.example.com:6380/0",
        "database_url": f"postgresql://app:{s}-db@db.internal.example.com:5432/app?sslmode=require",
        "smtp_url": f"smtps://mailer:{s}-smtp@smtp.example.com:465",
        "onesignal_url": f"https://proxy:{s}-osurl@onesignal.example.com/api",
        "storage_url": f"s3://bucket/prefix?secret_key={s}-storage",
        "s3_endpoint_url": f"https://minio:{s}-s3@minio.example.com:9000",
        "webhook_target_url": f"https://app.example.com/stripe/webhook?token={s}-target",
        "onesignal_api_key": f"os_{s}-apikey",
        "webhook_secret": f"whsec_{s}-whsec",
        "alert_webhook_url": f"https://hooks.slack.com/services/T0/B0/{s}-alert",
        "dashboard_token": f"{s}-token",
        "dashboard_password": f"{s}-dashpw",
    }
    assert set(config.SECRET_FIELDS) <= set(values)  # a new secret field must be added here
    return values


@pytest.mark.parametrize("where", ["env", "file"])
def test_no_secret_in_any_output(cli_env: dict[str, str], tmp_path: Path, where: str) -> None:
    values = secret_values(where)
    env = base_env(cli_env, tmp_path)
    if where == "env":
        env |= {config._ENV[name][0]: value for name, value in values.items()}
    else:
        (tmp_path / "jobctl.toml").write_text(
            "[settings]\n" + "".join(f"{name} = {json.dumps(value)}\n" for name, value in values.items()))
    seen = []
    for args in (("config", "show"), ("config", "show", "--json")):
        out = run(env, tmp_path, *args)
        assert out.returncode == 0
        seen.append(out.stdout + out.stderr)
        rc, screen = in_terminal(env, tmp_path, *args)
        assert rc == 0
        seen.append(screen)
    for text in seen:
        assert SECRET not in text and "secret_key=" not in text and "token=" not in text
    doc = json.loads(run(env, tmp_path, "config", "show", "--json").stdout)
    assert {name for name in values if doc["sources"][name]["source"] == where} == set(values)
    assert doc["redis_url"] == "rediss://app:****@redis.internal.example.com:6380/0"
    assert doc["database_url"] == "postgresql://app:****@db.internal.example.com:5432/app?****"
    assert doc["alert_webhook_url"] == "https://hooks.slack.com/****"
    assert all(doc[name] == "****" for name in ("onesignal_api_key", "webhook_secret", "dashboard_token",
                                                "dashboard_password"))


def test_the_table_fits_80_columns_and_never_splits_a_mask(cli_env: dict[str, str], tmp_path: Path) -> None:
    values = secret_values("tty")
    env = base_env(cli_env, tmp_path) | {config._ENV[name][0]: value for name, value in values.items()}
    env["JOBCTL_DATA_DIR"] = str(tmp_path / "a-rather-long-data-directory-name" / "for" / "jobctl" / "data")
    doc = json.loads(run(env, tmp_path, "config", "show", "--json").stdout)
    rc, screen = in_terminal(env, tmp_path, "config", "show")
    assert rc == 0
    assert max(len(line.rstrip()) for line in screen.splitlines()) <= 80
    rows = table_rows(screen)
    assert list(rows) == SHOWN
    assert sum(len(lines) > 1 for lines, _ in rows.values()) >= 5  # long values did wrap
    for name, (lines, source) in rows.items():
        assert source == (f"env {config._ENV[name][0]}" if name in values or name == "data_dir" else "default")
        assert "".join(lines).replace(" ", "") == cell(doc[name], name).replace(" ", "")  # nothing lost or cut
        assert all(run == "****" for line in lines for run in re.findall(r"\*+", line)), (name, lines)


@pytest.mark.parametrize(("text", "width", "lines"), [
    ("redis://:****@cache:6379/0", 11, ["redis://:", "****@cache:", "6379/0"]),  # not "redis://:**"
    ("ab****cd", 4, ["ab", "****", "cd"]),
    ("https://hooks.slack.com/****", 24, ["https://hooks.slack.com/", "****"]),
    ("audit-logs=365, notifications=90, temp-files=1", 20, ["audit-logs=365,", "notifications=90,", "temp-files=1"]),
    ("x" * 20, 8, ["x" * 8, "x" * 8, "x" * 4]),  # no separator: cut at the width
    ("short", 20, ["short"]),
    ("", 20, [""]),
])
def test_fold_breaks_after_separators_and_keeps_masks_whole(text: str, width: int, lines: list[str]) -> None:
    assert fold(text, width).split("\n") == lines


@pytest.mark.parametrize(("extra", "body", "message"), [
    ({"JOBCTL_IMAGE_MAX_BYTES": "50MB"}, None,
     "JOBCTL_IMAGE_MAX_BYTES must be a whole number of bytes >= 1, got '50MB'"),
    ({"JOBCTL_HEARTBEAT_TTL_S": "2"}, None, "JOBCTL_HEARTBEAT_TTL_S must be a whole number of seconds >= 3, got '2'"),
    ({"REDIS_PORT": "redis"}, None, "REDIS_PORT must be a port number, got 'redis'"),
    ({}, 'heartbeat_ttl_s = "soon"', "{cfg}: [settings] heartbeat_ttl_s must be a whole number of seconds >= 3, "
                                     "got 'soon'"),
    ({}, "image_max_bytes = 0", "{cfg}: [settings] image_max_bytes must be a whole number of bytes >= 1, got '0'"),
    ({}, "alert_cooldown_s = 1.5", "{cfg}: [settings] alert_cooldown_s must be a whole number of seconds >= 1, "
                                   "got '1.5'"),
    ({}, "webhook_secret = 12345678", "{cfg}: [settings] webhook_secret must be a string"),
    ({}, 'colour = "blue"', "{cfg}: [settings] unknown field 'colour'; known: redis_url, database_url, data_dir, "
     "smtp_url, mail_from, onesignal_app_id, onesignal_api_key, onesignal_url, storage_url, s3_endpoint_url, "
     "webhook_target_url, webhook_secret, alert_webhook_url, dashboard_token, dashboard_user, dashboard_password, "
     "dashboard_mask, dashboard_hosts, alert_cooldown_s, heartbeat_ttl_s, image_max_bytes\n"),
])
def test_an_invalid_value_is_one_line_and_exit_2(cli_env: dict[str, str], tmp_path: Path, extra: dict[str, str],
                                                 body: str | None, message: str) -> None:
    cfg = tmp_path / "jobctl.toml"
    if body is not None:
        cfg.write_text(f"[settings]\n{body}\n")
    env = base_env(cli_env, tmp_path) | extra | {"JOBCTL_WEBHOOK_SECRET": f"{SECRET}-whsec", "COLUMNS": "80",
                                                 "JOBCTL_DASHBOARD_PASSWORD": f"{SECRET}-dashpw"}
    for args in (("config", "show"), ("config", "show", "--json")):
        out = run(env, tmp_path, *args)
        assert (out.returncode, out.stdout) == (2, "")
        assert out.stderr.startswith("error: " + message.format(cfg=cfg)) and out.stderr.count("\n") == 1
        assert SECRET not in out.stderr and "Traceback" not in out.stderr


def test_sources_of_the_library_api(tmp_path: Path) -> None:
    s = config.load(env={"HOME": str(tmp_path), "JOBCTL_DATABASE_URL": ""}, cwd=tmp_path)
    assert s.source("database_url") == config.DEFAULT and s.source("nonexistent").public() == {"source": "default"}
    (tmp_path / "jobctl.toml").write_text('[settings]\ndatabase_url = ""\nstorage_url = "s3://b/p"\n')
    s = config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert s.source("database_url") == config.DEFAULT  # empty in the file: the derived default
    assert s.source("storage_url") == config.Source("file", str(tmp_path / "jobctl.toml"))
    assert s.source("storage_url").label() == "file" and config.Source("env", "X").label() == "env X"

