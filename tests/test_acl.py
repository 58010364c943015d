"""The README's read-only Redis user: created for real with exactly the documented rules.

The rule line is read from README.md (so the documentation cannot drift from what is tested), given a
unique user name and a random password, and set on the shared Redis server; `stats`, `health` and
`metrics` then run as that user against the test database, `enqueue` must be refused, and the user is
deleted at the end. The default user is never touched.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

README = Path(__file__).resolve().parents[1] / "README.md"
PAYLOAD = '{"to":"ana@example.com","subject":"Hi","template":"welcome"}'


def documented_rules() -> list[str]:
    """The arguments after `ACL SETUSER jobctl-ro` in the README."""
    lines = [line for line in README.read_text().splitlines() if line.startswith("ACL SETUSER jobctl-ro ")]
    assert len(lines) == 1, "README.md must hold exactly one `ACL SETUSER jobctl-ro ...` line"
    return shlex.split(lines[0])[3:]


def as_user(url: str, user: str, password: str) -> str:
    """`url` with that user's credentials."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port or 6379}"))


def jobctl(url: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess with --redis-url."""
    return subprocess.run([sys.executable, "-m", "jobctl", "--redis-url", url, *args], env=env,
                          capture_output=True, text=True, timeout=60)


def set_user(redis_url: str, user: str, password: str, rules: list[str]) -> None:
    """Create (or redefine from scratch) `user` with `rules`, the README's `>PASSWORD` filled in."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.execute_command("ACL", "SETUSER", user, "reset", *[f">{password}" if r == ">PASSWORD" else r
                                                                  for r in rules])
    finally:
        client.close()


@pytest.fixture
def ro_user(redis_url: str) -> Iterator[tuple[str, str]]:
    """A unique user name and password; whatever user of that name exists at the end is deleted."""
    user, password = f"jobctl-test-ro-{secrets.token_hex(6)}", secrets.token_urlsafe(18)
    assert user != "default"
    yield user, password
    client = redis.Redis.from_url(redis_url)
    try:
        client.execute_command("ACL", "DELUSER", user)
    finally:
        client.close()


def test_readme_rules_suffice_for_stats_health_and_metrics(
    redis_url: str, cli_env: dict[str, str], ro_user: tuple[str, str]
) -> None:
    user, password = ro_user
    for _ in range(2):  # some data to read, written as the default user
        assert jobctl(redis_url, cli_env, "enqueue", "email", "send-email", "--data", PAYLOAD).returncode == 0
    set_user(redis_url, user, password, documented_rules())
    url = as_user(redis_url, user, password)
    env = {k: v for k, v in cli_env.items() if k != "JOBCTL_REDIS_URL"}

    stats = jobctl(url, env, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    email = next(q for q in json.loads(stats.stdout)["queues"] if q["name"] == "email")
    assert email["waiting"] == 2

    health = jobctl(url, env, "health", "--json")
    report = json.loads(health.stdout)  # CRITICAL here: jobs wait with no worker; AOF is off (WARNING)
    checks = {c["name"]: c for c in report["checks"]}
    assert health.returncode == {"OK": 0, "WARNING": 1, "CRITICAL": 2}[report["status"]], health.stdout
    assert checks["redis"]["status"] == "OK" and "UNKNOWN" not in {c["status"] for c in checks.values()}
    assert checks["workers"]["queues"] == {"email": 2}
    assert not checks["persistence"].get("skipped"), "INFO must be permitted"

    metrics = jobctl(url, env, "metrics")
    assert metrics.returncode == 0 and "scrape failed" not in metrics.stderr, metrics.stderr
    assert "jobctl_up 1.0" in metrics.stdout
    assert 'jobctl_queue_waiting{queue="email"} 2.0' in metrics.stdout

    before = redis.Redis.from_url(redis_url).dbsize()
    write = jobctl(url, env, "enqueue", "email", "send-email", "--data", PAYLOAD)
    assert write.returncode != 0 and "no permissions" in write.stderr, write.stdout + write.stderr
    assert "Traceback" not in write.stderr and password not in write.stderr
    assert redis.Redis.from_url(redis_url).dbsize() == before


@pytest.mark.parametrize("command", ["+time", "+info", "+ping"])
def test_each_documented_command_is_needed(
    command: str, redis_url: str, cli_env: dict[str, str], ro_user: tuple[str, str]
) -> None:
    user, password = ro_user
    rules = documented_rules()
    assert command in rules
    set_user(redis_url, user, password, [r for r in rules if r != command])
    env = {k: v for k, v in cli_env.items() if k != "JOBCTL_REDIS_URL"}
    word = command.removeprefix("+")
    health = jobctl(as_user(redis_url, user, password), env, "health", "--json")
    assert health.returncode == 3 and re.search(f"no permissions to run the '{word}' command", health.stdout)
