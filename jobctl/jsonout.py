"""JSON on stdout, without Rich: `--json` output of commands whose start-up counts (issue 13).

`jobctl.render` re-exports `print_json`, so every command prints JSON the same way; `stats --json`
imports this module alone and never loads Rich's console (~25 ms of start-up).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(doc: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(doc, default=str, ensure_ascii=False) + "\n")
