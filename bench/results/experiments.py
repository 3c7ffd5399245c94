"""The tables of ``<results>/experiments.md``, filled from the results store by ``python -m bench leaderboard``
(bench/commands/leaderboard.py, after the leaderboards).

The page's prose is written by hand; its tables are not. Each is a block between two HTML comments,

    <!-- table sweep=n_steps metrics=gen_fd,gen_precision,gen_recall values=2 -->
    ... (rewritten on every build)
    <!-- end table -->

whose opening comment says what to show: the sweep (its leaderboard's study: bench.results.studies.pick_study),
the metrics (registry names), optionally `values=` (the swept values kept; comma-separated; the baselines, which have
no swept value, are always kept), `percent=1` (fractions as percentages) and `versus=none` (the augmented
classifier's difference to the plain CNN, with Welch's p). One row per model variant and swept value, each metric as
mean ± the half-width of its 95% interval over the seeds (t with n - 1 degrees of freedom), as in the leaderboards. A
block whose sweep has no rows says so. A page without blocks is left alone.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from bench.registry import METRICS
from bench.results import classifier_board, leaderboard, store
from bench.results.studies import pick_study
from lae.utils import atomic_write_text

BLOCK = re.compile(r"(<!-- table (?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)


def parse(args: str) -> dict[str, str]:
    """'sweep=n_steps metrics=a,b' -> {'sweep': 'n_steps', 'metrics': 'a,b'}; ValueError on a malformed word."""
    out = {}
    for word in args.split():
        key, sep, value = word.partition("=")
        if not sep or not value:
            raise ValueError(f"expected key=value, got {word!r}")
        out[key] = value
    if "sweep" not in out or "metrics" not in out:
        raise ValueError("a table needs sweep= and metrics=")
    unknown = [m for m in out["metrics"].split(",") if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}")
    return out


def cell(mean: float, ci: float, percent: bool) -> str:
    if mean is None or not np.isfinite(mean):
        return "—"
    k = 100.0 if percent else 1.0
    digits = 2 if percent or abs(mean) >= 1 else 3
    text = f"{k * mean:.{digits}f}"
    return text + (f" ± {k * ci:.{digits}f}" if ci is not None and np.isfinite(ci) else "")


def render(results: Path, args: dict[str, str]) -> str:
    """The markdown table one block asks for (see the module docstring)."""
    sweep, metrics = args["sweep"], args["metrics"].split(",")
    rows = store.read_rows(results, sweep)
    study = pick_study(rows) if not rows.empty else None
    if study is None:
        return f"*No rows yet: run `python -m bench sweep {sweep} --budget default --workers 2`.*\n"
    rows = rows[rows["study"] == study]
    classifier = classifier_board.is_classifier(rows)
    table = (classifier_board.summarize if classifier else leaderboard.summarize)(rows)
    if "values" in args:
        keep = [float(v) for v in args["values"].split(",")]
        table = table[table["axis_value"].isna() | table["axis_value"].isin(keep) | (table["variant"] == "none")]
    percent = args.get("percent") == "1"
    unit = " (%)" if percent else ""
    axis = rows["axis"].iloc[0]
    head = ["model", axis, "seeds", *[f"{m}{unit}" for m in metrics]]
    versus = args.get("versus") == "none" and classifier
    if versus:
        head += [f"{m} vs N = 0" for m in metrics]
    lines = [f"Study `{study}` (rows: `results/parquet/{sweep}/`; table: `results/leaderboards/{sweep}.md`).", ""]
    lines += ["| " + " | ".join(head) + " |", "|---|---|---:|" + "---:|" * (len(head) - 3)]
    for _, r in table.iterrows():
        cells = [r["variant"], leaderboard.fmt_axis(r["axis_value"]), str(int(r["n_seeds"]))]
        cells += [cell(r.get(f"{m}_mean", math.nan), r.get(f"{m}_ci95", math.nan), percent) for m in metrics]
        if versus:
            zero = r["axis_value"] == 0
            cells += ["—" if zero else classifier_board.versus_none(rows, r, m) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fill(results: str | Path) -> Path | None:
    """Rewrite every table block of ``<results>/experiments.md`` from the store; -> the page, or None when it is
    missing or has no blocks. A malformed block's opening comment is reported in its body, not raised."""
    page = Path(results) / "experiments.md"
    if not page.is_file():
        return None
    text = page.read_text()

    def one(match: re.Match) -> str:
        try:
            body = render(Path(results), parse(match["args"]))
        except ValueError as exc:
            body = f"*Bad table comment: {exc}.*\n"
        return match.group(1) + body + match.group(4)

    new, n = BLOCK.subn(one, text)
    if n == 0:
        return None
    if new != text:
        atomic_write_text(page, new)
    return page
