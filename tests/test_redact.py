"""jobctl.redact: which configured values count as secrets, and how error text is scrubbed (pure)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from jobctl import config, redact


def settings(tmp_path: Path, **env: str) -> config.Settings:
    """Settings from exactly these variables."""
    return config.load(env={"HOME": str(tmp_path), "JOBCTL_DATA_DIR": str(tmp_path / "d"), **env}, cwd=tmp_path)


@pytest.mark.parametrize(("env", "secret_text"), [
    ({"JOBCTL_ONESIGNAL_API_KEY": "os-key-123456"}, "Authorization: Key os-key-123456"),
    ({"JOBCTL_WEBHOOK_SECRET": "whsec_abcdef"}, "secret=whsec_abcdef"),
    ({"JOBCTL_REDIS_URL": "redis://:r3dis-pw@cache:6379/0"}, "AUTH r3dis-pw failed"),
    ({"JOBCTL_DATABASE_URL": "postgresql://app:p%40ss%2Fword@db/app"}, "password p@ss/word rejected"),
    ({"JOBCTL_DATABASE_URL": "postgresql://app:p%40ss%2Fword@db/app"}, "url had p%40ss%2Fword"),
    ({"JOBCTL_SMTP_URL": "smtp://mailer:sm7p-pass@mx:587"},
     "Basic " + base64.b64encode(b"mailer:sm7p-pass").decode()),
    ({"JOBCTL_ALERT_WEBHOOK_URL": "https://outlook.office.com/webhookb2/abc123def456/IncomingWebhook/xyz"},
     "posted to webhookb2/abc123def456/IncomingWebhook/xyz"),
    ({"JOBCTL_WEBHOOK_TARGET_URL": "https://api.example.com/hook?token=tok-998877&v=2"}, "token=tok-998877"),
    ({"JOBCTL_WEBHOOK_TARGET_URL": "https://ghp-token-55@api.example.com/hook"}, "user ghp-token-55"),
])
def test_configured_secrets_are_masked(tmp_path: Path, env: dict[str, str], secret_text: str) -> None:
    s = settings(tmp_path, **env)
    scrubbed = redact.scrub(s, f"upstream said: {secret_text}!") or ""
    assert "****" in scrubbed and scrubbed.startswith("upstream said: ") and scrubbed.endswith("!")
    for value in redact.secrets_of(s):
        assert value not in scrubbed


def test_ordinary_settings_and_text_are_left_alone(tmp_path: Path) -> None:
    s = settings(tmp_path, JOBCTL_WEBHOOK_TARGET_URL="https://api.example.com/hook?v=2",
                 JOBCTL_DATABASE_URL="postgresql://app@db/app?options=-csearch_path%3Dpublic",
                 JOBCTL_WEBHOOK_SECRET="abc")  # too short to mask without mangling ordinary words
    text = "HTTP 400 from https://api.example.com/hook?v=2 for app@db: abc def"
    assert redact.scrub(s, text) == text
    assert redact.scrub(s, None) is None


def test_a_longer_secret_containing_a_shorter_one_is_masked_whole(tmp_path: Path) -> None:
    s = settings(tmp_path, JOBCTL_ONESIGNAL_API_KEY="key-1234", JOBCTL_WEBHOOK_SECRET="key-1234-extended")
    assert redact.scrub(s, "got key-1234-extended and key-1234") == "got **** and ****"
