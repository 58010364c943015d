"""Declare what you import: every third-party import in jobctl/ against pyproject.toml's dependencies.

Imports are read with `ast` from every module (function-level and TYPE_CHECKING imports included),
mapped to their distribution through the installed metadata, and compared with [project]
dependencies; the web dashboard's modules may also use the `dashboard` extra. The other way round,
every declared runtime dependency must be imported somewhere, except the few that are loaded
indirectly (listed below with the reason), so nothing like rq-scheduler (which installs freezegun,
a clock-mocking test library) rides along unused.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jobctl"
DASHBOARD_FILES = ("web/", "dashboard.py", "commands/dashboard.py")  # may use the `dashboard` extra
# declared, never imported by name: who loads them
INDIRECT = {
    "email-validator": "pydantic's EmailStr imports it",
    "psycopg": "SQLAlchemy's postgresql+psycopg dialect loads it from a postgresql:// URL",
    "rq": "jobctl writes RQ 3's data model itself; it installs the rq CLI and API the README's RQ tools use",
}


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    """`redis[hiredis]>=5.0,<9` -> `redis`."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    assert match, req
    return canonical(match.group(1))


@cache
def project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]


def declared(extra: str | None = None) -> set[str]:
    """The runtime dependencies, or those of one extra."""
    proj = project()
    reqs = proj["dependencies"] if extra is None else proj["optional-dependencies"][extra]  # type: ignore[index]
    return {requirement_name(r) for r in reqs}  # type: ignore[union-attr]


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module name -> the jobctl files importing it (stdlib and jobctl itself left out)."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "jobctl" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(rel)
    return found


def distribution_of(module: str) -> set[str]:
    """The installed distributions providing `module` (empty when it is not installed)."""
    return {canonical(d) for d in packages_distributions().get(module, [])}


def test_every_import_is_declared() -> None:
    core, dashboard = declared(), declared("dashboard")
    problems = []
    for module, files in sorted(third_party_imports().items()):
        dists = distribution_of(module)
        if not dists:
            problems.append(f"{module} (imported by {', '.join(sorted(files))}) is not installed")
            continue
        allowed = core | dashboard if all(f.startswith(DASHBOARD_FILES) for f in files) else core
        if not dists & allowed:
            where = "the dashboard extra or " if allowed is not core else ""
            problems.append(f"{module} ({'/'.join(sorted(dists))}), imported by {', '.join(sorted(files))}, "
                            f"is not declared in {where}[project] dependencies of pyproject.toml")
    assert not problems, "\n".join(problems)


def test_every_runtime_dependency_is_imported_or_explained() -> None:
    imported = {d for module in third_party_imports() for d in distribution_of(module)}
    unused = sorted(declared() - imported - set(INDIRECT))
    assert not unused, f"declared in [project] dependencies but imported nowhere in jobctl/: {unused}"
    assert set(INDIRECT) <= declared(), "an INDIRECT entry is no longer declared: drop it"


def test_croniter_declared_and_rq_scheduler_gone() -> None:
    assert "croniter" in declared()  # jobctl/schedules.py; it used to arrive only through rq's requirement
    everything = declared().union(*(declared(extra) for extra in project()["optional-dependencies"]))  # type: ignore[arg-type]
    assert "rq-scheduler" not in everything and "freezegun" not in everything
