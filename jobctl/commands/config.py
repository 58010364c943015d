"""`jobctl config show`: every setting jobctl reads, its effective value and where that value came from."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from jobctl import render
from jobctl.runtime import Runtime

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(help="Effective settings.", no_args_is_help=True)

SHOW_HELP = (  # paragraphs on one line each: command help is Rich, which keeps a paragraph's line breaks
    "The effective settings, each with its source, passwords and secrets masked.\n\n"
    "One row per setting jobctl reads (docs/settings.md): its value and where it came from: `env VARIABLE`, "
    "`file` (the settings table of the config file shown as `config_path`), `option --redis-url`, "
    "`option --database-url` or `option --config`, or `default`. Secrets (API keys, tokens, passwords, webhook "
    "secrets, alert webhook URLs) show as `****`; URLs show with their password and query masked.\n\n"
    "`--json` prints one object: each setting by name (the masked value as text, numbers as numbers, "
    "`retention_days` as an object, null when unset), plus `sources`: setting name -> "
    '`{"source": "env", "variable": ...}`, `{"source": "file", "path": ...}`, '
    '`{"source": "option", "option": ...}` or `{"source": "default"}`.'
)

COLUMN_GAPS = 6  # what the table adds between its three columns
MIN_VALUE_WIDTH = 16
_BREAK_AFTER = re.compile(r"(?<=[/@:?&=,. ])")  # a value may wrap after these, never inside `****`
MASK = "****"


def cell(value: object, name: str = "") -> str:
    """One setting's public value as table text."""
    if value is None:
        return "—"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, int) and name.endswith("_bytes") and value >= 2**20:
        return f"{value} ({value / 2**20:.1f} MiB)".replace(".0 MiB", " MiB")
    return str(value)


def fold(text: str, width: int) -> str:
    """`text` in lines of at most `width`, broken after a separator (`/`, `@`, `:`, `.`, ...) where one fits,
    never inside a `****` mask."""
    pieces = [p for part in re.split(f"({re.escape(MASK)})", text) if part
              for p in ([part] if part == MASK else _BREAK_AFTER.split(part)) if p]
    lines, line = [], ""
    for piece in pieces:
        if line and len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        piece = piece if line else piece.lstrip()  # a wrapped line starts with no space
        while piece != MASK and len(line) + len(piece.rstrip()) > width:  # one piece longer than a line
            lines.append(piece[:width])
            piece = piece[width:]
        line += piece
    return "\n".join([*lines, line.rstrip()])


def settings_table(rows: Sequence[tuple[str, str, str]], width: int) -> Table:
    """(setting, value, source) rows as a table `width` columns wide, each value folded to fit."""
    from rich import box
    from rich.table import Table

    name_w = max(len(r[0]) for r in rows)
    source_w = max(len(r[2]) for r in rows)
    value_w = max(width - name_w - source_w - COLUMN_GAPS, MIN_VALUE_WIDTH)
    t = Table(title="Settings", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
              header_style="bold")
    for col in ("setting", "value", "source"):
        t.add_column(col, no_wrap=True)
    for name, value, source in rows:
        t.add_row(name, fold(value, value_w), source)
    return t


@app.command("show", help=SHOW_HELP)
def show(ctx: typer.Context, as_json: Annotated[bool, typer.Option(
        "--json", help='Print JSON: the settings by name, plus "sources" (where each came from).')] = False) -> None:
    """The effective settings and their sources, secrets masked."""
    rt: Runtime = ctx.obj
    values = rt.settings.public()
    if as_json:
        render.print_json({**values, "sources": rt.settings.public_sources()})
        return
    console = render.stdout()
    rows = [(name, cell(value, name), rt.settings.source(name).label()) for name, value in values.items()]
    console.print(settings_table(rows, console.width))
