"""Where a bad key of a sweep spec is: its line in the TOML text, for the one-line errors of bench.sweep.spec (and of
the classifier part, bench.sweep.classifier_spec)."""

from __future__ import annotations

import re
from pathlib import Path

from bench.errors import BenchError


def line_of(text: str, table: str, key: str) -> str:
    """' (line N)' of ``key = ...`` inside ``[table]`` (or at the top level), '' when not found."""
    lines, inside = text.splitlines(), table == ""
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith("["):
            inside = s.strip("[] ") == table
        elif inside and re.match(rf"{re.escape(key)}\s*=", s):
            return f" (line {i})"
    return ""


def spec_error(path: Path, text: str, key: str, why: str, table: str = "") -> BenchError:
    """``<path> (line N): <key>: <why>``, the line of the key's last dotted part found inside ``[table]`` (an inline
    table's key: the line of its parent)."""
    parts = [p.split("[")[0] for p in key.split(".")]
    where = next((w for part in reversed(parts) if (w := line_of(text, table, part))), "")
    return BenchError(f"{path}{where}: {key}: {why}")
