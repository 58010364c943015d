"""The Python producer API `jobctl.enqueue(...)`: repeated calls, threads, fork, and a real WSGI server."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

import jobctl
from jobctl import keys
from jobctl.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
HOOK = {"eventId": "e", "eventType": "t", "eventData": {}, "attemptNumber": 0}


@pytest.fixture
def producer_env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    monkeypatch.setenv("JOBCTL_REDIS_URL", redis_url)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(jobctl, "_runtime", None)
    return redis.Redis.from_url(redis_url)


def queued(client: redis.Redis) -> list[str]:
    return [i.decode() for i in client.lrange(keys.queue_list("webhook-retry"), 0, -1)]


def test_any_number_of_calls_with_cli_validation(producer_env: redis.Redis) -> None:
    ids = [jobctl.enqueue("webhook-retry", "retry-webhook", HOOK).id for _ in range(3)]
    importlib.import_module("jobctl.commands.enqueue")  # the CLI's modules must not shadow the function
    importlib.import_module("jobctl.producer")

    ids.append(jobctl.enqueue("webhook-retry", "retry-webhook", HOOK).id)
    assert queued(producer_env) == ids and len(set(ids)) == 4
    assert jobctl.enqueue("webhook-retry", "retry-webhook", HOOK, job_id="evt-1").status == "queued"
    assert jobctl.enqueue("webhook-retry", "retry-webhook", HOOK, job_id="evt-1").status == "duplicate"
    with pytest.raises(UsageError, match="attemptNumber"):
        jobctl.enqueue("webhook-retry", "retry-webhook", HOOK | {"attemptNumber": -1})


def test_many_threads_share_one_runtime(producer_env: redis.Redis) -> None:
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda _i: jobctl.enqueue("webhook-retry", "retry-webhook", HOOK).id, range(400)))
    assert sorted(queued(producer_env)) == sorted(ids) and len(set(ids)) == 400
    assert jobctl._runtime is not None
    assert len(jobctl._runtime.redis.connection_pool._available_connections) <= 16


def test_a_forked_child_builds_its_own_runtime(producer_env: redis.Redis) -> None:
    parent = jobctl.enqueue("webhook-retry", "retry-webhook", HOOK).id
    pid = os.fork()
    if pid == 0:  # the child: enqueue over its own connections, report through the exit code
        try:
            ok = jobctl._runtime is None and bool(jobctl.enqueue("webhook-retry", "retry-webhook", HOOK).id)
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert jobctl.enqueue("webhook-retry", "retry-webhook", HOOK).id  # the parent's runtime still works
    assert len(queued(producer_env)) == 3 and queued(producer_env)[0] == parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_real_wsgi_server_enqueues_each_request_once(producer_env: redis.Redis, redis_url: str,
                                                        tmp_path: Path) -> None:
    """gunicorn, preloaded app, 2 worker processes x 4 threads: 2,000 requests give 2,000 jobs."""
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert gunicorn, "gunicorn is a dev dependency"
    port = _free_port()
    env = {**os.environ, "JOBCTL_REDIS_URL": redis_url, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([gunicorn, "--preload", "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{port}",
                               "tests.support.producer_app:app"], cwd=tmp_path, env=env,
                              stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 20
        while True:
            try:
                requests.post(f"http://127.0.0.1:{port}/?n=warmup", timeout=2).raise_for_status()
                break
            except requests.ConnectionError:
                assert time.time() < deadline and server.poll() is None, "gunicorn did not start"
                time.sleep(0.1)
        session = requests.Session()

        def post(n: int) -> str:
            reply = session.post(f"http://127.0.0.1:{port}/?n={n}", timeout=10)
            reply.raise_for_status()
            return str(reply.json()["id"])

        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(post, range(2000)))
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert len(set(ids)) == 2000
    waiting = queued(producer_env)
    assert len(waiting) == 2002 and len(set(waiting)) == 2002  # + the preload and the warm-up: none lost, none doubled
    assert set(ids) <= set(waiting)
    events = {producer_env.hget(keys.job(i), "data") for i in ids[:50]}
    assert len(events) == 50


def _hook_of_size(n: int) -> dict[str, object]:
    """A retry-webhook payload whose stored `data` field is exactly n bytes."""
    from jobctl.jobs import encode_data

    base = len(encode_data("retry-webhook", {**HOOK, "eventData": {"blob": ""}}))
    return {**HOOK, "eventData": {"blob": "x" * (n - base)}}


def test_a_payload_over_the_size_cap_is_refused_and_nothing_is_written(producer_env: redis.Redis,
                                                                        cli_env: dict[str, str],
                                                                        tmp_path: Path) -> None:
    from jobctl.jobs import encode_data
    from jobctl.jsontree import MAX_BYTES

    at_cap = _hook_of_size(MAX_BYTES)
    assert len(encode_data("retry-webhook", at_cap)) == MAX_BYTES
    assert jobctl.enqueue("webhook-retry", "retry-webhook", at_cap).status == "queued"
    before = producer_env.dbsize()
    with pytest.raises(UsageError, match=r"^invalid payload for retry-webhook: 1,048,577 bytes of JSON, more than "
                                         r"the 1 MiB a payload may hold \(keep large content in storage"):
        jobctl.enqueue("webhook-retry", "retry-webhook", _hook_of_size(MAX_BYTES + 1))
    assert producer_env.dbsize() == before
    # a file of payloads: every line is checked before anything is written (SPEC: enqueue --file)
    lines = [json.dumps(HOOK), json.dumps(_hook_of_size(MAX_BYTES + 1)), json.dumps(HOOK)]
    (tmp_path / "jobs.jsonl").write_text("\n".join(lines) + "\n")
    out = subprocess.run([str(Path(sys.executable).parent / "jobctl"), "enqueue", "webhook-retry", "retry-webhook",
                          "--file", str(tmp_path / "jobs.jsonl")], env=cli_env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.startswith("error: 1 invalid line(s), nothing enqueued: line 2: 1,048,577 bytes of JSON")
    assert producer_env.dbsize() == before
