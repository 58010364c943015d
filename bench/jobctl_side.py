"""The jobctl side: the same no-op drain as the peers, plus two jobctl-only measurements.

- `Jobctl`: a Pool of 2 processes on `image-processing` (50 slots, no rate limit, from a
  bench jobctl.toml); enqueue through `jobctl.producer.enqueue` / `enqueue_many`. Progress is
  LLEN of the queue list + ZCARD of the started registry (`rq:wip:`): jobctl takes a job from
  one to the other and finishes it out of the registry inside its Lua scripts, so their sum is
  exactly what is left.
- `measure_io`: one process, 50 slots, each job one HTTP GET of a local server that answers in
  50 ms; ideal 50 / 0.05 s = 1,000 jobs/s. Beside it, the same GETs from a bare pool of 50 threads
  in one process: the ceiling that the HTTP client's CPU and the server leave on this machine.
- `measure_idle`: the real CLI `jobctl --redis-url URL work --all`, idle for 3 s: its process tree.

jobctl is imported only when a measurement runs: while the worker rewrite is under way an import
error fails the jobctl rows alone.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import redis

from bench.drain import Drain, Probe, drain
from bench.procs import Group, SystemFailed
from bench.slow_http import fetcher, pool_rate
from bench.system import (
    PAYLOAD,
    PYTHON,
    ROOT,
    Figures,
    Params,
    Round,
    check_drain,
    check_probe,
    describe,
    drain_figures,
)

QUEUE = "image-processing"  # no rate limit once the bench config says so: measures the runtime
JOB = "process-image"
SLOTS = 50
BENCH_TOML = f'[queues.{QUEUE}]\nconcurrency = {SLOTS}\nrate_limit = "none"\n'
HTTP_DELAY_S = 0.05
IDLE_WAIT_S = 3.0


def data_dir() -> str:
    """A fresh directory for jobctl's data (SQLite) and HOME, outside the user's."""
    return tempfile.mkdtemp(prefix="jobctl-bench-")


class Jobctl:
    """jobctl's Pool with `processes` processes; `http` makes each job one GET of that URL."""

    name = "jobctl"

    def __init__(self, p: Params, processes: int = 2, http: str | None = None, http_client: str = "keepalive") -> None:
        from jobctl import config, keys
        from jobctl.runtime import Runtime

        self.p, self.processes, self.http, self.http_client = p, processes, http, http_client
        self.config_path = Path(data_dir()) / "jobctl.toml"
        self.config_path.write_text(BENCH_TOML)
        data = data_dir()
        settings = config.load(env={"JOBCTL_REDIS_URL": p.url, "JOBCTL_DATA_DIR": data, "HOME": data},
                               config=self.config_path)
        self.rt = Runtime(settings)
        level = settings.queues.get(QUEUE).level()
        self.probe = Probe((("llen", keys.queue_list(level)), ("zcard", keys.wip(level))), True)
        self.group: Group | None = None

    def enqueue_single(self, n: int) -> float:
        """`enqueue(rt, queue, job, payload)` n times."""
        from jobctl.producer import enqueue

        self.rt.redis.ping()
        t = time.perf_counter()
        for _ in range(n):
            enqueue(self.rt, QUEUE, JOB, PAYLOAD)
        return n / (time.perf_counter() - t)

    def enqueue_bulk(self, n: int) -> float:
        """`enqueue_many(rt, queue, job, payloads)` (it writes batches of 500 itself)."""
        from jobctl.producer import enqueue_many

        t = time.perf_counter()
        enqueue_many(self.rt, QUEUE, JOB, [PAYLOAD] * n)
        return n / (time.perf_counter() - t)

    def workers(self) -> Group:
        """`python -m bench.serve jobctl`: the Pool, its processor passed in-process."""
        cmd = [PYTHON, "-m", "bench.serve", "jobctl", "--redis", self.p.url, "--config", str(self.config_path),
               "--processes", str(self.processes)]
        if self.http:
            cmd += ["--http", self.http, "--http-client", self.http_client]
        self.group = Group(self.name, [cmd], cwd=ROOT)
        return self.group

    def notes(self) -> list[str]:
        """Which Pool signature the workers used."""
        out = self.group.output() if self.group else ""
        return [line.removeprefix("BENCH ") for line in out.splitlines() if line.startswith("BENCH ")][:1]


def http_port(server: Group, wait_s: float = 10.0) -> int:
    """The port the slow HTTP server printed."""
    deadline = time.perf_counter() + wait_s
    while time.perf_counter() < deadline:
        first = server.output().split("\n", 1)
        if len(first) == 2 and first[0].strip().isdigit():
            return int(first[0])
        server.check()
        time.sleep(0.05)
    raise SystemFailed(f"the slow HTTP server printed no port within {wait_s:.0f} s: {server.tail()}")


def io_timeout_s(n: int) -> float:
    """Long enough for a quarter of the ideal rate, plus start-up."""
    return 10.0 + 4 * n * HTTP_DELAY_S / SLOTS


def measure_io(client: redis.Redis, p: Params, n: int, http_client: str, rec: Round) -> None:
    """I/O-bound jobs on ONE jobctl process with 50 slots; figures and errors go into rec."""
    server_cmd = [PYTHON, "-m", "bench.slow_http", "--delay-ms", str(HTTP_DELAY_S * 1000), "--max-s", "600"]
    try:
        with Group("slow HTTP server", [server_cmd], cwd=ROOT) as server:
            url = f"http://127.0.0.1:{http_port(server)}/"
            rec.figures["io_reference_jobs_s"] = pool_rate(fetcher(url, http_client), min(n, 1000), SLOTS)
            system = Jobctl(p, processes=1, http=url, http_client=http_client)
            client.flushdb()
            system.enqueue_bulk(n)
            check_probe(system.probe, client, n)
            d = drain(client, system.workers, system.probe, n, io_timeout_s(n))
            rec.notes += [*system.notes(), f"HTTP client: {http_client}"]
            rec.samples = [(round(t, 4), done) for t, done in d.samples]
        rec.figures.update(io_figures(d, rec.figures["io_reference_jobs_s"]))
        rec.warnings += d.warnings
        check_drain(d, "I/O drain")
    except Exception as exc:
        rec.error = describe(exc)
    finally:
        client.flushdb()


def io_figures(d: Drain, reference: float | None) -> Figures:
    """jobs/s, % of the ideal, % of the bare thread pool, memory."""
    rate = d.jobs_s if d.jobs_s is not None else d.average_jobs_s
    mem = drain_figures(d)
    return {"io_jobs_s": rate, "io_ideal_pct": 100 * rate * HTTP_DELAY_S / SLOTS,
            "io_reference_pct": 100 * rate / reference if reference else None, "io_wall_s": d.wall_s,
            "io_pss_mib": mem["pss_mib"], "io_rss_mib": mem["rss_mib"]}


def measure_idle(client: redis.Redis, p: Params, rec: Round) -> None:
    """`jobctl --redis-url URL work --all` idle for 3 s: processes, PSS and RSS of its tree; then SIGTERM."""
    exe = Path(PYTHON).parent / "jobctl"
    data = data_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")} | {"HOME": data,
                                                                                  "JOBCTL_DATA_DIR": data}
    try:
        if not exe.exists():
            raise SystemFailed(f"{exe} not found (pip install -e . in the venv)")
        client.flushdb()
        with Group("jobctl work --all", [[str(exe), "--redis-url", p.url, "work", "--all"]], env=env, cwd=data) as g:
            time.sleep(IDLE_WAIT_S)
            g.check()
            mem = g.memory()
            stop_s = g.stop(grace_s=30.0)
            code = g.procs[0].returncode
        rec.figures.update({"idle_processes": float(mem.processes), "idle_pss_mib": mem.pss_mib,
                            "idle_rss_mib": mem.rss_mib, "idle_stop_s": stop_s})
        rec.notes.append(f"exit code after SIGTERM: {code}")
    except Exception as exc:
        rec.error = describe(exc)
    finally:
        client.flushdb()
