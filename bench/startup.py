"""Start-up of whole `jobctl` processes beside RQ's own CLI, in the same run, on the same Redis (issue 13).

    python -m bench.startup [--redis redis://127.0.0.1:6379/9] [--repeat 9] [--json FILE|-] [--source DIR]

THE REDIS DATABASE GIVEN (default 9) IS FLUSHED before and after.

Every command is a fresh process (`subprocess.run`, wall clock from spawn to exit), run --repeat times;
the rounds are interleaved (every command once per round, the order rotated), so load on a shared
machine hits all alike. Printed: the median of each, the same-run ratios and the targets:

| command | target |
| --- | --- |
| `jobctl --help` | <= 0.2 s |
| a completion request (`_JOBCTL_COMPLETE=complete_bash`, as completions/jobctl.bash sends it) | <= 0.2 s |
| `jobctl stats --json` | <= 1.0x `rq info` |
| `jobctl enqueue` of one job | <= 1.0x `rq enqueue` (JSON serializer) |

`rq enqueue` validates nothing; `jobctl enqueue` validates the payload with its pydantic model (a
send-email's address with email-validator). The report also measures what those imports alone cost
(`validation imports`, a process that validates one EmailStr field) and gives `jobctl enqueue` less
that cost, beside `rq enqueue`.

The settings are those of a deployment: a data directory with its dead-letter store created
(`jobctl db init`), so `stats` reads real dead-letter counts. `python -X importtime` says what a
command spends its start-up on (see the README). `--source DIR` measures the `jobctl` package found in
DIR instead of this one, e.g. an older commit (`git archive COMMIT | tar -x -C DIR`), for a
before/after comparison in one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

BIN = Path(sys.executable).parent
EMAIL = json.dumps({"to": "a@example.com", "subject": "Hi", "template": "welcome"})


def commands(url: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Name -> (argv, extra environment) of every measured process."""
    jobctl, rq = str(BIN / "jobctl"), str(BIN / "rq")

    def complete(words: str) -> dict[str, str]:
        return {"_JOBCTL_COMPLETE": "complete_bash", "COMP_WORDS": words,
                "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}

    return {
        "python -c pass": ([sys.executable, "-c", "pass"], {}),
        "jobctl --help": ([jobctl, "--help"], {}),
        "jobctl --version": ([jobctl, "--version"], {}),
        "complete: commands": ([jobctl], complete("jobctl ")),
        "complete: queue names": ([jobctl], complete("jobctl enqueue ")),
        "complete: job names": ([jobctl], complete("jobctl enqueue email ")),
        "jobctl stats --json": ([jobctl, "stats", "--json"], {}),
        "rq info": ([rq, "info", "-u", url], {}),
        "jobctl enqueue": ([jobctl, "enqueue", "email", "send-email", "--data", EMAIL], {}),
        "rq enqueue": ([rq, "enqueue", "-u", url, "-S", "json", "-q", "bench-startup", "bench.noop.noop"], {}),
        # what validating a send-email payload loads, which `rq enqueue` (no validation) does not
        "validation imports": ([sys.executable, "-c", VALIDATION], {}),
    }


VALIDATION = ("from pydantic import BaseModel, EmailStr\n"
              "class M(BaseModel):\n    to: EmailStr\n"
              "M.model_validate({'to': 'a@example.com'})")


TARGETS: list[tuple[str, str | None, float]] = [  # (command, versus, most seconds or most ratio)
    ("jobctl --help", None, 0.2),
    ("complete: commands", None, 0.2),
    ("complete: queue names", None, 0.2),
    ("complete: job names", None, 0.2),
    ("jobctl stats --json", "rq info", 1.0),
    ("jobctl enqueue", "rq enqueue", 1.0),
]


def run_once(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one process (run in the data directory, away from any jobctl.toml); it must exit 0."""
    t = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=env["JOBCTL_DATA_DIR"], capture_output=True, timeout=60, check=False)
    took = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} exited {done.returncode}: {done.stderr.decode()[-300:]}")
    return took


def measure(url: str, repeat: int, data_dir: str, source: str | None = None) -> dict[str, list[float]]:
    """Every command `repeat` times, interleaved; name -> seconds of each run."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCTL_", "_JOBCTL_", "COMP_"))}
    base |= {"JOBCTL_REDIS_URL": url, "JOBCTL_DATA_DIR": data_dir, "NO_COLOR": "1", "COLUMNS": "100"}
    # bytecode as an installed package has it (pip compiles at install; RQ's is in site-packages): with
    # PYTHONDONTWRITEBYTECODE, as on CI machines, an editable or --source tree would be compiled from
    # source by every run, about a third of jobctl's own start-up
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    if source:
        base["PYTHONPATH"] = str(Path(source).resolve())  # found before the editable install of this tree
    cmds = commands(url)
    subprocess.run([str(BIN / "jobctl"), "db", "init"], env=base, capture_output=True, check=True, timeout=60)
    names = list(cmds)
    for name in names:  # warm the file cache and the bytecode once, unmeasured
        run_once(cmds[name][0], base | cmds[name][1])
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            argv, extra = cmds[name]
            times[name].append(run_once(argv, base | extra))
        print(f"[round {r + 1}/{repeat}] done", file=sys.stderr, flush=True)
    return times


def report(medians: dict[str, float], repeat: int) -> str:
    """The table of medians and the targets, pass or fail."""
    lines = [f"Start-up of whole processes, median of {repeat} interleaved runs (wall seconds)", "",
             "| command | median s |", "| --- | --- |"]
    lines += [f"| `{n}` | {m:.3f} |" for n, m in medians.items()]
    lines += ["", "| target | measured | verdict |", "| --- | --- | --- |"]
    for name, versus, most in TARGETS:
        if versus is None:
            got, want = f"{medians[name]:.3f} s", f"<= {most:.1f} s"
            ok = medians[name] <= most
        else:
            ratio = medians[name] / medians[versus]
            got, want = f"{ratio:.2f}x `{versus}`", f"<= {most:.1f}x `{versus}`"
            ok = ratio <= most
        lines.append(f"| `{name}` {want} | {got} | {'pass' if ok else 'FAIL'} |")
    floor = medians["validation imports"] - medians["python -c pass"]
    rest = (medians["jobctl enqueue"] - floor) / medians["rq enqueue"]
    lines += ["", f"`jobctl enqueue` less the validation imports (pydantic, pydantic-core, email-validator: "
              f"{floor * 1000:.0f} ms): {rest:.2f}x `rq enqueue`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Flush the database, measure, flush again, print the report (and the JSON)."""
    ap = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/9", help="Redis URL; its database is FLUSHED")
    ap.add_argument("--repeat", type=int, default=9, help="runs of each command (at least 7; default 9)")
    ap.add_argument("--json", metavar="FILE", help="write every run and the medians as JSON ('-': stdout)")
    ap.add_argument("--source", metavar="DIR", help="measure the jobctl package in DIR (an older checkout)")
    args = ap.parse_args(argv)
    if args.repeat < 7:
        ap.error("--repeat must be at least 7 (medians of 7 or more)")
    client = redis.Redis.from_url(args.redis, socket_timeout=10)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        sys.exit(f"bench.startup: Redis at {args.redis} does not answer: {exc}")
    try:
        with tempfile.TemporaryDirectory(prefix="jobctl-startup-") as data_dir:
            times = measure(args.redis, args.repeat, data_dir, args.source)
    finally:
        client.flushdb()
    medians = {n: statistics.median(t) for n, t in times.items()}
    doc = {"repeat": args.repeat, "runs": times, "medians": medians}
    if args.json == "-":
        print(json.dumps(doc, indent=2))
        return
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    print(report(medians, args.repeat))


if __name__ == "__main__":
    main()
