"""The reference pages in docs/ are generated (`python -m jobctl.docgen`) and must match the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jobctl import docgen

ROOT = Path(__file__).resolve().parents[1]


def test_committed_pages_match_the_code() -> None:
    stale = docgen.stale()
    assert not stale, (f"docs/ is out of date with the code: {', '.join(stale)}. Regenerate with "
                       f"`{docgen.REGENERATE}` and commit docs/.")


def test_every_setting_and_policy_field_is_described() -> None:
    pages = docgen.pages()
    for name in ("settings.md", "queues.md"):
        assert "(undocumented" not in pages[name], f"{name}: describe the new entry in jobctl/docgen.py"


def test_every_command_has_a_page_with_usage_options_and_exit_codes() -> None:
    pages = docgen.pages()
    from jobctl import cli

    for name in cli.COMMANDS:
        page = pages[f"commands/{name}.md"]
        assert f"Usage: jobctl {name}" in page and "Exit codes:" in page
        assert f"[`jobctl {name}`](commands/{name}.md)" in pages["index.md"]
    assert "`--json` prints" in pages["commands/stats.md"] and "`p95_ms_1h`" in pages["commands/stats.md"]
    assert "3 UNKNOWN" in pages["commands/health.md"] and "2 usage" not in pages["commands/health.md"]
    assert "| `rq:job:{id}` | hash |" in pages["redis-keys.md"]
    assert "| `maxWidth` | yes | integer (>= 1, <= 10000) |" in pages["jobs.md"]


def test_check_flags_edited_missing_and_orphan_pages_and_write_restores(tmp_path: Path) -> None:
    assert docgen.main(["--out", str(tmp_path)]) == 0
    assert docgen.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "commands" / "stats.md").write_text("hand-edited\n")
    (tmp_path / "settings.md").unlink()
    (tmp_path / "commands" / "gone.md").write_text("a command that no longer exists\n")
    assert sorted(docgen.stale(tmp_path)) == ["commands/gone.md", "commands/stats.md", "settings.md"]
    proc = subprocess.run([sys.executable, "-m", "jobctl.docgen", "--check", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1 and "stale: docs/commands/stats.md" in proc.stderr
    assert f"regenerate with: {docgen.REGENERATE}" in proc.stderr
    docgen.main(["--out", str(tmp_path)])
    assert docgen.stale(tmp_path) == [] and not (tmp_path / "commands" / "gone.md").exists()


@pytest.mark.parametrize("page", ["index.md", "jobs.md", "settings.md", "queues.md", "redis-keys.md"])
def test_pages_say_they_are_generated(page: str) -> None:
    assert docgen.NOTE in docgen.pages()[page]
