"""Settings from the environment and jobctl.toml, and queue policy overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobctl import config
from jobctl.errors import ConfigError, UsageError
from jobctl.queues import Backoff, RateLimit


def test_defaults_match_the_spec(tmp_path: Path) -> None:
    s = config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    q = s.queues
    assert q.names() == ["email", "push", "webhook-retry", "image-processing", "data-cleanup"]
    assert q.get("email").attempts == 5 and q.get("email").backoff == Backoff("exponential", 3)
    assert q.get("email").rate_limit == RateLimit(100, 1.0, "job")
    assert q.get("push").rate_limit == RateLimit(30, 1.0, "queue") and q.get("push").concurrency == 20
    assert q.get("image-processing").backoff == Backoff("fixed", 5)
    assert q.get("webhook-retry").backoff.max_s == 3600 and q.get("webhook-retry").attempts == 10
    assert q.get("data-cleanup").timeout_s == 300 and q.get("data-cleanup").priority == 10
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.database_url == f"sqlite:///{tmp_path}/.local/share/jobctl/jobctl.db"


def test_original_redis_variables_and_masking(tmp_path: Path) -> None:
    s = config.load(env={"REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_PASSWORD": "s3cr:t",
                         "HOME": str(tmp_path)}, cwd=tmp_path)
    assert s.redis_url == "redis://:s3cr%3At@cache:6380/0"
    assert s.public()["redis_url"] == "redis://:****@cache:6380/0"
    assert "s3cr" not in repr(s.public())


def test_jobctl_url_wins_over_legacy(tmp_path: Path) -> None:
    s = config.load(env={"JOBCTL_REDIS_URL": "rediss://u:p@h:1/2", "REDIS_URL": "redis://x",
                         "HOME": str(tmp_path)}, cwd=tmp_path)
    assert s.redis_url == "rediss://u:p@h:1/2"
    assert config.mask_url(s.redis_url) == "rediss://u:****@h:1/2"


def test_toml_overrides_any_policy_field(tmp_path: Path) -> None:
    (tmp_path / "jobctl.toml").write_text(
        '[queues.webhook-retry]\nattempts = 4\nbackoff = "fixed"\nbackoff_delay_s = 2\n'
        'backoff_max_s = 10\nbackoff_jitter = true\npriority = 1\nconcurrency = 7\ntimeout_s = 9\n'
        'rate_limit = "5/m"\n')
    p = config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path).queues.get("webhook-retry")
    assert (p.attempts, p.backoff, p.priority, p.concurrency, p.timeout_s) == (
        4, Backoff("fixed", 2, 10, True), 1, 7, 9)
    assert p.rate_limit == RateLimit(5, 60.0, "queue")


@pytest.mark.parametrize(("body", "message"), [
    ("[queues.email]\nattempts = 0\n", "jobctl.toml: [queues.email]: attempts must be an integer from 1 to 1000"),
    ("[queues.email]\nbackof = 1\n", "jobctl.toml: [queues.email]: unknown field 'backof'"),
    ("[queues.nope]\nattempts = 1\n", "jobctl.toml: unknown queue [queues.nope]"),
    ("[queues.push]\nrate_limit = \"fast\"\n", "jobctl.toml: [queues.push]: rate limit 'fast' is not N/s"),
    ("[queues.push\n", "jobctl.toml: invalid TOML"),
    ("[queues.push]\nbackoff = \"linear\"\n", "jobctl.toml: [queues.push]: backoff must be"),
])
def test_invalid_config_names_file_and_field(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "jobctl.toml").write_text(body)
    with pytest.raises(ConfigError) as err:
        config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert str(err.value).replace(str(tmp_path) + "/", "").startswith(message)
    assert err.value.exit_code == 2


def test_unknown_queue_lists_known(tmp_path: Path) -> None:
    s = config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    with pytest.raises(UsageError, match="known queues: email, push, webhook-retry"):
        s.queues.get("emails")
    with pytest.raises(UsageError, match="known jobs: send-push"):
        s.queues.check_job("push", "send-email")


def test_level_names_do_not_depend_on_configured_priority(tmp_path: Path) -> None:
    (tmp_path / "jobctl.toml").write_text("[queues.webhook-retry]\npriority = 4\n")
    tuned = config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path).queues.get("webhook-retry")
    (tmp_path / "plain").mkdir()
    builtin = config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path / "plain").queues.get("webhook-retry")
    assert tuned.levels() == builtin.levels()  # jobs enqueued under either config are served by both
    assert (tuned.level(), tuned.level(3)) == ("webhook-retry.p4", "webhook-retry")
    assert config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path).queues.level_owner("webhook-retry")[1] == 3


def test_cooldown_and_heartbeat_from_env_or_file(tmp_path: Path) -> None:
    s = config.load(env={"HOME": str(tmp_path), "JOBCTL_ALERT_COOLDOWN_S": "600"}, cwd=tmp_path)
    assert (s.alert_cooldown_s, s.heartbeat_ttl_s) == (600, 30)
    (tmp_path / "jobctl.toml").write_text("[settings]\nheartbeat_ttl_s = 10\n")
    assert config.load(env={"HOME": str(tmp_path)}, cwd=tmp_path).heartbeat_ttl_s == 10
    with pytest.raises(ConfigError, match="JOBCTL_HEARTBEAT_TTL_S must be a whole number of seconds >= 3, got '1'"):
        config.load(env={"HOME": str(tmp_path), "JOBCTL_HEARTBEAT_TTL_S": "1"}, cwd=tmp_path)


@pytest.mark.parametrize("url", [
    "redis://user:RedisPw-Zq7x9#frag@cache:6379/0",
    "redis://user:RedisPw/Zq7x9@cache:6379/0",
    "redis://:RedisPw?Zq7x9@cache:6379/0",
    "redis://user:1234/Zq7x9@cache:6379/0",
    "postgresql://app:S3cr#t@db/app",
    "http://[::1",
])
def test_a_url_that_does_not_parse_cleanly_shows_no_credentials(url: str) -> None:
    masked = config.mask_url(url)
    assert masked == f"{url.partition('://')[0]}://****"
    assert not config.parses_cleanly(url)


@pytest.mark.parametrize(("url", "masked"), [
    ("rediss://u:p%23w@h:1/2", "rediss://u:****@h:1/2"),
    ("redis://:pw@h:6379/0?ssl_cert_reqs=none", "redis://:****@h:6379/0?****"),
    ("sqlite:////var/lib/jobctl/app.db", "sqlite:////var/lib/jobctl/app.db"),
    ("https://hooks.slack.com/services/T0/B0/XYZ", "https://hooks.slack.com/****"),
    ("https://api.example.com/v1", "https://api.example.com/v1"),
])
def test_mask_url_keeps_what_is_not_secret(url: str, masked: str) -> None:
    assert config.mask_url(url) == masked


@pytest.mark.parametrize(("url", "shown"), [
    ("https://hooks.slack.com/services/T0/B0/XYZsecret", "https://hooks.slack.com/****"),
    ("https://acme.webhook.office.com/webhookb2/1a2b@3c4d/IncomingWebhook/XYZsecret/5e6f", "https://****"),
    ("https://prod-12.westeurope.logic.azure.com:443/workflows/XYZsecret/triggers/manual/paths/invoke?sig=XYZsecret",
     "https://prod-12.westeurope.logic.azure.com:443/****"),
    ("https://alerts.example.com/notify/XYZsecret", "https://alerts.example.com/****"),
    ("https://alerts.example.com/notify?token=XYZsecret", "https://alerts.example.com/****"),
    ("https://bot:XYZsecret@alerts.example.com/", "https://alerts.example.com/"),
])
def test_config_show_masks_every_secret_field_the_same_way(tmp_path: Path, url: str, shown: str) -> None:
    s = config.load(env={"HOME": str(tmp_path), "JOBCTL_ALERT_WEBHOOK_URL": url,
                         "JOBCTL_WEBHOOK_SECRET": "whsec_XYZsecret", "JOBCTL_ONESIGNAL_API_KEY": "os_XYZsecret"},
                    cwd=tmp_path)
    public = s.public()
    assert public["alert_webhook_url"] == shown
    assert public["webhook_secret"] == public["onesignal_api_key"] == "****"
    assert "XYZsecret" not in repr(public)
