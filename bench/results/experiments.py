"""The tables of ``<results>/experiments.md`` and ``<results>/README.md`` (``PAGES``), filled from the results store
by ``python -m bench leaderboard`` (bench/commands/leaderboard.py, after the leaderboards).

The page's prose is written by hand; its tables are not. Each is a block between two HTML comments,

    <!-- table sweep=n_steps metrics=gen_fd,gen_precision,gen_recall values=2 -->
    ... (rewritten on every build)
    <!-- end table -->

whose opening comment says what to show: the sweep (its leaderboard's study: bench.results.studies.pick_study), the
metrics (registry names), optionally `values=` (the swept values kept; comma-separated; the baselines, which have no
swept value, are always kept), `percent=1` (fractions as percentages), `digits=N` (decimals; default 2, or 3 below 1),
`versus=none` (the augmented classifier's difference to the plain CNN, with Welch's p), `versus=VARIANT` (in a grid
sweep: each row's difference to that variant, with Welch's p over the seeds) and `paper=variant:value,...` (a first
column of published numbers, as given, e.g. `lae:1.177±0.001`). One row per model variant and swept value, each metric
as mean ± the half-width of its 95% interval over the seeds (t with n - 1 degrees of freedom), as in the leaderboards. A
block whose sweep has no rows says so. A page without blocks is left alone.

The findings (bench.results.findings: each comparison with its interval, Welch's and Holm's p, the estimator-error
rule and the replication on the other dataset) are embedded the same way,

    <!-- findings sweep=latent_dim metrics=test_loglik_ais values=32 dataset=mnist -->
    ... (rewritten on every build)
    <!-- end findings -->

with `metrics=` (optional: default all the study has), `values=` (the swept values kept; comparisons without one are
always kept), `against=` (the compared-with variants kept, e.g. `against=frozen,map`: LAE against its controls) and
`models=` (the comparing variants kept), `family=` (the Holm family shown: `lae`, the default, LAE's comparisons;
`controls`, LAE's controls against the baselines; `all`) and `dataset=` (the sweep's study on that dataset; default:
its leaderboard's).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.registry import METRICS
from bench.results import classifier_board, findings, leaderboard, store
from bench.results.studies import pick_study
from bench.results.verdict import versus
from lae.utils import atomic_write_text

PAGES = ("experiments.md", "README.md")
BLOCK = re.compile(r"(<!-- table (?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)
FINDINGS = re.compile(r"(<!-- findings (?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- end findings -->)", re.S)


def parse(args: str, needs: tuple[str, ...] = ("sweep", "metrics")) -> dict[str, str]:
    """'sweep=n_steps metrics=a,b' -> {'sweep': 'n_steps', 'metrics': 'a,b'}; ValueError on a malformed word."""
    out = {}
    for word in args.split():
        key, sep, value = word.partition("=")
        if not sep or not value:
            raise ValueError(f"expected key=value, got {word!r}")
        out[key] = value
    if any(k not in out for k in needs):
        raise ValueError(f"a block needs {' and '.join(k + '=' for k in needs)}")
    out.setdefault("metrics", ",".join(findings.METRICS_COMPARED))
    unknown = [m for m in out["metrics"].split(",") if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}")
    if not out.get("digits", "0").isdigit():
        raise ValueError(f"digits= takes a whole number, got {out['digits']!r}")
    if any(":" not in item for item in out.get("paper", ":").split(",")):
        raise ValueError(f"paper= takes variant:value pairs, got {out['paper']!r}")
    return out


def cell(mean: float, ci: float, percent: bool, digits: int | None = None) -> str:
    if mean is None or not np.isfinite(mean):
        return "—"
    k = 100.0 if percent else 1.0
    if digits is None and 0 < abs(k * mean) < 1e-2:  # a step size of 4e-07: three significant digits, not 0.000
        return f"{k * mean:.3g}" + (f" ± {k * ci:.2g}" if ci is not None and np.isfinite(ci) else "")
    digits = digits if digits is not None else 2 if percent or abs(mean) >= 1 else 3
    text = f"{k * mean:.{digits}f}"
    return text + (f" ± {k * ci:.{digits}f}" if ci is not None and np.isfinite(ci) else "")


def render(results: Path, args: dict[str, str]) -> str:
    """The markdown table one block asks for (see the module docstring)."""
    sweep, metrics = args["sweep"], args["metrics"].split(",")
    rows = store.read_rows(results, sweep)
    study = pick_study(rows) if not rows.empty else None
    if study is None:
        return f"*No rows yet: run `python -m bench sweep {sweep} --budget default --workers 2`.*\n"
    rows = findings.with_derived(rows[rows["study"] == study])
    classifier = classifier_board.is_classifier(rows)
    table = (classifier_board.summarize if classifier else leaderboard.summarize)(rows)
    if "values" in args:
        keep = [float(v) for v in args["values"].split(",")]
        table = table[table["axis_value"].isna() | table["axis_value"].isin(keep) | (table["variant"] == "none")]
    percent = args.get("percent") == "1"
    digits = int(args["digits"]) if "digits" in args else None
    unit = " (%)" if percent else ""
    axis = rows["axis"].iloc[0]
    paper = dict(item.split(":", 1) for item in args["paper"].split(",")) if "paper" in args else None
    head = ["model", axis, "seeds", *(["the paper"] if paper else []), *[f"{m}{unit}" for m in metrics]]
    versus = args.get("versus") == "none" and classifier
    other = args.get("versus") if not classifier and args.get("versus") not in (None, "none") else None
    if versus:
        head += [f"{m} vs N = 0" for m in metrics]
    if other:
        head += [f"{m} vs {other}" for m in metrics]
    lines = [f"Study `{study}` (rows: `results/parquet/{sweep}/`; table: `results/leaderboards/{sweep}.md`).", ""]
    lines += ["| " + " | ".join(head) + " |", "|---|---|---:|" + "---:|" * (len(head) - 3)]
    for _, r in table.iterrows():
        cells = [r["variant"], leaderboard.fmt_axis(r["axis_value"]), str(int(r["n_seeds"]))]
        cells += [paper.get(r["variant"], "—").replace("±", " ± ")] if paper else []
        cells += [
            cell(r.get(f"{m}_mean", math.nan), r.get(f"{m}_ci95", math.nan), percent, digits) + leaderboard.fewer(r, m)
            for m in metrics
        ]
        if versus:
            zero = r["axis_value"] == 0
            cells += ["—" if zero else classifier_board.versus_none(rows, r, m) for m in metrics]
        if other:
            cells += [versus_variant(rows, r, other, m, digits) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def versus_variant(rows, r, variant: str, metric: str, digits: int | None) -> str:
    """'+0.012 (p 0.03)': this row's mean minus ``variant``'s (its baseline row: no swept value), Welch's p over the
    seeds; '—' for the variant itself or when either side has no value."""
    ok = rows[rows["status"] == "complete"]
    if metric not in ok:
        return "—"
    same = ok["axis_value"].isna() if pd.isna(r["axis_value"]) else ok["axis_value"] == r["axis_value"]
    a = ok[(ok["variant"] == r["variant"]) & same][metric].astype(float)
    b = ok[ok["variant"] == variant][metric].astype(float)
    if r["variant"] == variant or (dp := versus(a, b)) is None:
        return "—"
    d, p = dp
    text = f"{d:+.{digits if digits is not None else 2 if abs(d) >= 1 else 3}f}"
    return text + (f" (p {p:.2g})" if np.isfinite(p) else " (one seed: no test)")


def render_findings(results: Path, args: dict[str, str]) -> str:
    """The findings one block asks for (see the module docstring)."""
    sweep = args["sweep"]
    rows = store.read_rows(results, sweep)
    study = pick_study(rows, dataset=args.get("dataset")) if not rows.empty else None
    if study is None:
        return f"*No rows yet: run `python -m bench sweep {sweep} --budget default --workers 2`.*\n"
    found = findings.sweep_findings(rows, [study])[study]
    axis = rows.loc[rows["study"] == study, "axis"].iloc[0]
    head = f"Findings of study `{study}` (all of them: `results/leaderboards/`, section Findings)."
    words = {key: args[key].split(",") for key in ("metrics", "values", "against", "models") if key in args}
    keep = findings.Selection(
        metrics=words.get("metrics"),
        values=[float(v) for v in words["values"]] if "values" in words else None,
        against=words.get("against"),
        models=words.get("models"),
        family=None if args.get("family") == "all" else args.get("family", "lae"),
    )
    body = findings.lines(found, axis, leaderboard.fmt_axis, keep)
    return "\n".join([head, "", *body]).rstrip("\n") + "\n"


def fill(results: str | Path) -> list[Path]:
    """Rewrite every table block of each page of ``PAGES`` under ``results`` from the store; -> the pages rewritten or
    already current (a missing page or one without blocks is left out). A malformed block's opening comment is
    reported in its body, not raised."""
    return [page for name in PAGES if (page := _fill_page(Path(results) / name)) is not None]


def _fill_page(page: Path) -> Path | None:
    if not page.is_file():
        return None
    text = page.read_text()

    def one(match: re.Match) -> str:
        try:
            body = render(page.parent, parse(match["args"]))
        except ValueError as exc:
            body = f"*Bad table comment: {exc}.*\n"
        return match.group(1) + body + match.group(4)

    def found(match: re.Match) -> str:
        try:
            body = render_findings(page.parent, parse(match["args"], ("sweep",)))
        except ValueError as exc:
            body = f"*Bad findings comment: {exc}.*\n"
        return match.group(1) + body + match.group(4)

    new, n = BLOCK.subn(one, text)
    new, m = FINDINGS.subn(found, new)
    if n + m == 0:
        return None
    if new != text:
        atomic_write_text(page, new)
    return page
