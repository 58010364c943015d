"""The peers a user would pick instead of jobctl, each driven the way its documentation shows.

| system | workers | enqueue one / bulk | progress probe (O(1) reads) |
| --- | --- | --- | --- |
| BullMQ | 1 node process, concurrency 50 | `add` / `addBulk` x 1,000 | left: LLEN `bull:Q:wait`, `bull:Q:active` |
| Dramatiq | 2 processes x 8 threads (CLI) | `send` / `group().run()` | left: HLEN `dramatiq:Q.msgs`, `Q.DQ.msgs` |
| RQ | 2 `SimpleWorker`s, JSON | `enqueue` / `enqueue_many` x 1,000 | done: ZCARD finished + failed registry |

BullMQ moves a job wait -> active -> completed inside its Lua scripts, so wait + active is what is
left. Dramatiq keeps every message in the `.msgs` hash from enqueue until its ack (HDEL), whether
queued or prefetched; retries go through the delay queue's hash. RQ's LMOVE and its started
registry are not updated together, so its progress is read from the finished registry instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import redis

from bench.drain import Probe
from bench.procs import Group, SystemFailed
from bench.system import PAYLOAD, PYTHON, ROOT, Notes, Params

if TYPE_CHECKING:
    from dramatiq.brokers.redis import RedisBroker

NODE_DIR = Path(__file__).resolve().parent / "node"
BULL_QUEUE = "bench"
BULK_CHUNK = 1000


def ensure_node() -> None:
    """Install bench/node's pinned packages on first use (npm ci, quiet)."""
    if (NODE_DIR / "node_modules" / "bullmq").is_dir():
        return
    if not shutil.which("node") or not shutil.which("npm"):
        raise SystemFailed("node and npm are needed for the BullMQ side")
    verb = "ci" if (NODE_DIR / "package-lock.json").exists() else "install"
    done = subprocess.run(["npm", verb, "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemFailed(f"npm {verb} in {NODE_DIR} failed: {done.stderr.strip()[-300:]}")


class BullMQ(Notes):
    """BullMQ for Node, one worker process with concurrency 50."""

    name = "BullMQ"

    def __init__(self, p: Params, concurrency: int = 50) -> None:
        ensure_node()
        self.p = p
        self.concurrency = concurrency
        self.probe = Probe((("llen", f"bull:{BULL_QUEUE}:wait"), ("llen", f"bull:{BULL_QUEUE}:active")), True)

    def _produce(self, n: int, mode: str) -> float:
        cmd = ["node", "produce.mjs", "--url", self.p.url, "--queue", BULL_QUEUE, "--n", str(n), "--mode", mode,
               "--chunk", str(BULK_CHUNK), "--payload", json.dumps(PAYLOAD), "--max-s", str(int(self.p.timeout_s))]
        done = subprocess.run(cmd, cwd=NODE_DIR, capture_output=True, text=True, timeout=self.p.timeout_s + 10)
        if done.returncode:
            raise SystemFailed(f"produce.mjs exited with {done.returncode}: {done.stderr.strip()[-300:]}")
        return float(json.loads(done.stdout.strip().splitlines()[-1])["jobs_s"])

    def enqueue_single(self, n: int) -> float:
        """`await queue.add(...)` n times in a row."""
        return self._produce(n, "single")

    def enqueue_bulk(self, n: int) -> float:
        """`await queue.addBulk(...)` in chunks of 1,000."""
        return self._produce(n, "bulk")

    def workers(self) -> Group:
        """node work.mjs: one Worker, concurrency 50."""
        cmd = ["node", "work.mjs", "--url", self.p.url, "--queue", BULL_QUEUE, "--concurrency", str(self.concurrency),
               "--max-s", str(int(self.p.timeout_s) + 60)]
        return Group(self.name, [cmd], cwd=NODE_DIR)


class Dramatiq(Notes):
    """Dramatiq's RedisBroker, the `dramatiq` CLI with 2 processes of 8 threads."""

    name = "Dramatiq"

    def __init__(self, p: Params) -> None:
        from bench.dramatiq_app import QUEUE, make_actor

        self.p = p
        self.actor = make_actor(p.url)
        self.probe = Probe((("hlen", f"dramatiq:{QUEUE}.msgs"), ("hlen", f"dramatiq:{QUEUE}.DQ.msgs")), True)

    def enqueue_single(self, n: int) -> float:
        """`actor.send(payload)` n times."""
        cast("RedisBroker", self.actor.broker).client.ping()
        t = time.perf_counter()
        for _ in range(n):
            self.actor.send(PAYLOAD)
        return n / (time.perf_counter() - t)

    def enqueue_bulk(self, n: int) -> float:
        """`group(messages).run()`: Dramatiq's many-messages API (one script call per message)."""
        import dramatiq

        t = time.perf_counter()
        dramatiq.group([self.actor.message(PAYLOAD) for _ in range(n)], broker=self.actor.broker).run()
        return n / (time.perf_counter() - t)

    def workers(self) -> Group:
        """dramatiq bench.dramatiq_app:setup --processes 2 --threads 8."""
        cmd = [PYTHON, "-m", "dramatiq", "bench.dramatiq_app:setup", "--processes", "2", "--threads", "8",
               "--path", str(ROOT)]
        return Group(self.name, [cmd], env={**os.environ, "BENCH_REDIS_URL": self.p.url}, cwd=ROOT)


class PlainRQ(Notes):
    """RQ 3 itself: two SimpleWorker processes, JSON serializer (jobctl never pickles)."""

    name = "RQ"

    def __init__(self, p: Params) -> None:
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.p = p
        self.queue = Queue("bench", connection=redis.Redis.from_url(p.url), serializer=JSONSerializer)
        self.probe = Probe((("zcard", self.queue.finished_job_registry.key),
                            ("zcard", self.queue.failed_job_registry.key)), False)

    def enqueue_single(self, n: int) -> float:
        """`queue.enqueue(noop, payload)` n times."""
        from bench.noop import noop

        self.queue.connection.ping()
        t = time.perf_counter()
        for _ in range(n):
            self.queue.enqueue(noop, PAYLOAD)
        return n / (time.perf_counter() - t)

    def enqueue_bulk(self, n: int) -> float:
        """`queue.enqueue_many` in chunks of 1,000."""
        from rq import Queue

        from bench.noop import noop

        t = time.perf_counter()
        for start in range(0, n, BULK_CHUNK):
            size = min(BULK_CHUNK, n - start)
            self.queue.enqueue_many([Queue.prepare_data(noop, (PAYLOAD,)) for _ in range(size)])
        return n / (time.perf_counter() - t)

    def workers(self) -> Group:
        """Two `python -m bench.serve rq` processes."""
        cmd = [PYTHON, "-m", "bench.serve", "rq", "--redis", self.p.url]
        return Group(self.name, [cmd, cmd], cwd=ROOT)
