"""Leaderboards from the results store: one table per sweep, one row per model variant and swept value.

Each metric is the mean over seeds of the complete trials and the half-width of its 95% confidence interval,
t-distribution with n-1 degrees of freedom (``t_{0.975,n-1} * sd / sqrt(n)``; none for a single seed), with the seed
count ``n``. The columns, their units, sections and directions (higher or lower is better) are bench.registry's
``METRICS``; the best mean of each ranked column is marked: ``<metric>_best`` in the CSV, bold in the markdown.
Written: ``<results>/leaderboards/<sweep>.csv`` and ``.md``, its findings (bench.results.findings) also as
``leaderboards/findings/<sweep>.csv``, the index ``README.md``, and the figures
(``bench.results.figures``) under ``<results>/figures/<sweep>/``; the markdown links the pictures a sweep wrote for the
first seed of each point (``bench.results.pictures.picture_dir``). Models in the family registry's order, LAE first.

Which study a sweep's table shows: the one asked for (``study``, or the rows of ``budget`` / ``dataset``), else the
largest budget present (full > default > smoke), then the first dataset in the registry's order (mnist,
fashion-mnist, digits), then the study with the most rows; the study name is printed in the table's header. The
other datasets' studies at that budget get tables of their own, ``<sweep>.<dataset>.md`` (figures under
``figures/<sweep>.<dataset>/``), and so does a study asked for on another dataset: it never replaces ``<sweep>.md``.
The table opens with the verdict (bench.results.verdict): per swept value the best model on the
headline metric, whether its lead is significant, and where LAE stands; rows whose likelihood estimators disagree or
whose BDMC bound is loose are marked. With one seed there is no interval and no best; validation losses are each
family's own objective and are never ranked across families.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from bench.registry import METRICS, MODELS, Metric
from bench.results import classifier_board, findings, store
from bench.results import figures as figures_lib
from bench.results import pictures as pictures_lib
from bench.results.studies import board_name, other_datasets, pick_study, provenance, write_index
from bench.results.verdict import ERROR_TOL, HEADLINE, estimator_flags, group_error, verdict_lines
from lae.utils import atomic_write_text

# Leaderboard sections (bench.registry's Metric.section), in table order, with their titles.
SECTIONS = {
    "likelihood": "Likelihood (test set; validation loss is the training objective)",
    "representation": "Representation",
    "robustness": "Adversarial robustness of the linear probe",
    "quality": "Sample quality (generated vs test images in a classifier's features)",
    "speed": "Sampler and speed",
}
# The table's metric columns: section by section, registry order within a section.
COLUMNS: tuple[Metric, ...] = tuple(m for section in SECTIONS for m in METRICS.values() if m.section == section)
MODEL_ORDER = {m: i for i, m in enumerate(sorted(MODELS, key=lambda m: m != "lae"))}  # lae, then the registry's order


def t_quantile(p: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, dof))


def mean_ci(values) -> tuple[float, float, int]:
    """(mean, 95% CI half-width, n) of the finite values; half-width NaN when n < 2."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    if len(v) == 1:
        return float(v[0]), math.nan, 1
    return float(v.mean()), t_quantile(0.975, len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v)), len(v)


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, axis_value) of one study: counts, then <metric>_mean / _ci95 / _n (the seeds with a
    value: fewer than n_seeds where older rows lack a metric) / _best; the derived columns too (with_derived)."""
    rows = findings.with_derived(rows)
    metrics = [m.name for m in COLUMNS if m.name in rows.columns]
    out = []
    for (variant, value), g in rows.groupby(["variant", rows["axis_value"].fillna(-math.inf)], sort=False):
        ok = g[g["status"] == "complete"]
        rec = {
            "model": g["model"].iloc[0],
            "variant": variant,
            "axis": g["axis"].iloc[0],
            "axis_value": math.nan if value == -math.inf else value,
            "n_seeds": int(ok["seed"].nunique()),
            "n_failed": int((g["status"] == "fail").sum()),
            "n_pruned": int((g["status"] == "pruned").sum()),
        }
        for m in metrics:
            mean, ci, n = mean_ci(ok[m].astype(float))
            rec[f"{m}_mean"], rec[f"{m}_ci95"], rec[f"{m}_n"] = mean, ci, n
        rec["estimator_error"] = group_error(ok)  # nats per image; the findings' and the † marks'
        out.append(rec)
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["_order"] = table["model"].map(MODEL_ORDER).fillna(9)
    table = table.sort_values(["_order", "variant", "axis_value"], na_position="first").drop(columns="_order")
    for m in COLUMNS:
        col = f"{m.name}_mean"
        if col not in table or m.better is None or table["n_seeds"].max() < 2:  # one seed: no "best"
            continue
        finite = table[col][np.isfinite(table[col].astype(float))]
        best = finite.max() if m.better == "max" else finite.min()
        table[f"{m.name}_best"] = np.isfinite(table[col].astype(float)) & (table[col] == best) if len(finite) else False
    return table.reset_index(drop=True)


def fmt_axis(x: float) -> str:
    """A swept value as written in the spec: integers without decimals, others to 3 significant digits."""
    if not np.isfinite(x):
        return "—"
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e6 else f"{x:.3g}"


def fmt(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    a = abs(x)  # 3 decimals below 10: per-dimension likelihoods differ in the third (the LAE paper's 1.177, 1.189)
    return f"{x:.0f}" if a >= 1000 else f"{x:.2f}" if a >= 10 else f"{x:.3f}" if a >= 1 else f"{x:.3g}"


def fewer(r: pd.Series, metric: str) -> str:
    """' (n 2)' when the metric has a value for fewer of the row's seeds than its n column shows, else ''."""
    k = r.get(f"{metric}_n", r["n_seeds"])
    return f" (n {int(k)})" if 0 < k < r["n_seeds"] else ""


def markdown(
    sweep: str,
    study: str,
    rows: pd.DataFrame,
    table: pd.DataFrame,
    pictures: list[str] = (),
    found: list[findings.Finding] | None = None,
) -> str:
    """The sweep's table as markdown: a header (study, setup, provenance), the verdict and the findings (`found`,
    bench.results.findings), one table per section, the failed trials, the lines of the pictures section
    (`pictures`) and the headline figure."""
    axis = rows["axis"].iloc[0]
    first = rows.iloc[0]
    statuses = ", ".join(f"{v} {k}" for k, v in rows["status"].value_counts().items())
    seeds = int(table["n_seeds"].max()) if len(table) else 0
    cells = (
        "Cells: mean ± 95% CI half-width (t-distribution) over the n complete seeds; **bold**: best in its column"
        if seeds >= 2
        else "Cells: one seed's value (one seed: no interval and no best)"
    )
    lines = [
        f"# Leaderboard: `{sweep}`",
        "",
        f"Study `{study}`: {len(rows)} trials ({statuses}), "
        f"dataset {first['dataset']}, {int(first['epochs'])} epoch(s), batch {int(first['batch_size'])}, "
        f"hidden {int(first['hidden'])}, seeds {sorted(int(s) for s in rows['seed'].unique())}. "
        f"{cells}. Swept: `{axis}`; `—` in that column: a baseline without the knob, trained once per seed.",
        "",
        f"Commits: {provenance(rows)}; torch {first['torch_version']}, optuna {first['optuna_version']}. "
        "Trials are named by study, point and seed.",
        "",
        f"## Verdict (`{HEADLINE}`, higher is better)",
        "",
        *verdict_lines(rows, table, fmt_axis),
        "",
    ]
    lines += findings.section(found, axis, fmt_axis) if found is not None else []
    if first["budget"] == "smoke":
        lines += [
            "**Smoke budget: these likelihoods are cheap estimates, not converged ones** (short AIS, few "
            "images); compare models with the default budget's tables.",
            "",
        ]
    flags = estimator_flags(table)
    for section, title in SECTIONS.items():
        cols = [
            (m.name, m.unit)
            for m in COLUMNS
            if m.section == section
            and f"{m.name}_mean" in table
            and np.isfinite(table[f"{m.name}_mean"].astype(float)).any()
        ]  # all-NaN columns (bpd of binary data)
        if not cols:
            continue
        units = {u for _, u in cols}
        heads = [m if len(units) == 1 else f"{m} ({u})" for m, u in cols]
        title += f" ({units.pop()})" if len(units) == 1 else ""
        lines += [
            f"## {title}",
            "",
            "| model | " + axis + " | n | " + " | ".join(heads) + " |",
            "|---|---:|---:|" + "---:|" * len(cols),
        ]
        for _, r in table.iterrows():
            cells = []
            for m, _ in cols:
                text = fmt(r[f"{m}_mean"]) + (f" ± {fmt(r[f'{m}_ci95'])}" if np.isfinite(r[f"{m}_ci95"]) else "")
                text = f"**{text}**" if r.get(f"{m}_best", False) is True else text
                text += fewer(r, m)
                cells.append(text + (" †" if m == HEADLINE and r.name in flags else ""))
            n = (
                f"{r['n_seeds']}"
                + (f" ({r['n_failed']} failed)" if r["n_failed"] else "")
                + (f" ({r['n_pruned']} pruned)" if r["n_pruned"] else "")
            )
            lines.append(f"| {r['variant']} | {fmt_axis(r['axis_value'])} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
        if section == "likelihood" and flags:
            lines += [
                f"† Likelihood not trusted to {ERROR_TOL} nats: its estimator error, the mean over its seeds of "
                "the larger of |IS - AIS| and the BDMC gap, is above that:",
                "",
            ]
            lines += [
                f"- {table.loc[i, 'variant']} at {fmt_axis(table.loc[i, 'axis_value'])}: {why}."
                for i, why in flags.items()
            ]
            lines.append("")
    failed = rows[rows["status"] == "fail"]
    if len(failed):
        lines += ["## Failed trials", ""]
        lines += [f"- {r['point']} seed {int(r['seed'])}: {r['error']}" for _, r in failed.iterrows()]
        lines.append("")
    lines += [
        *pictures,
        "## Figures",
        "",
        f"![test log-likelihood](../figures/{sweep}/test_loglik_ais.png)",
        "",
        f"All metrics: [`results/figures/{sweep}/`](../figures/{sweep}/).",
        "",
    ]
    return "\n".join(lines)


class Built(NamedTuple):
    paths: list[Path]  # tables (.csv, .md), figures and the index page, as written
    studies: dict[str, str]  # sweep -> the study its table shows


def build(
    results: str | os.PathLike = "results",
    sweeps: list[str] | None = None,
    figures: bool = True,
    study: str | None = None,
    budget: str | None = None,
    dataset: str | None = None,
) -> Built:
    """Rebuild the leaderboards (and figures) of ``sweeps`` (default: every sweep with rows; with ``study``, its
    sweep) and the index page. study / budget / dataset choose the study each table shows (module docstring)."""
    results = Path(results)
    base = store.parquet_dir(results)
    if sweeps is None:
        if study is not None:
            sweeps = [study.split(".")[0]]
        else:
            sweeps = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    written, studies, made = [], {}, {}
    for sweep in sweeps:
        rows = store.read_rows(results, sweep)
        if rows.empty:
            continue
        shown = study if study is not None and study in set(rows["study"]) else None
        shown = shown or (None if study is not None else pick_study(rows, budget, dataset))
        if shown is None:
            continue
        more = other_datasets(rows, shown) if study is None and dataset is None else []
        found = findings.sweep_findings(rows, [shown, *more])
        for one in [shown, *more]:
            name, mine = board_name(rows, sweep, one), rows[rows["study"] == one]
            written += _board(results, sweep, one, mine, name, figures, found[one])
            written.append(findings.write_csv(found[one], results / "leaderboards" / "findings" / f"{name}.csv"))
            studies[name] = one
            made[one] = provenance(mine)
    if studies:  # nothing built (no readable rows): the command refuses, and no file changes
        written.append(write_index(results, made))
    return Built(written, studies)


def _board(
    results: Path, sweep: str, study: str, rows: pd.DataFrame, name: str, figures: bool, found: list
) -> list[Path]:
    """One study's table (`<results>/leaderboards/<name>.csv`, `.md`) and figures (`figures/<name>/`), with its
    findings (`found`)."""
    if classifier_board.is_classifier(rows):  # the augmented classifier's own table
        return classifier_board.build(results, sweep, study, rows, figures, name, found)
    out = results / "leaderboards"
    table = summarize(rows)
    csv = out / f"{name}.csv"
    table.insert(0, "study", study)
    table.insert(0, "sweep", sweep)
    atomic_write_text(csv, table.to_csv(index=False))
    points = rows.drop_duplicates("point").assign(_o=rows["model"].map(MODEL_ORDER).fillna(9))
    points = points.sort_values(["_o", "variant", "axis_value"], na_position="first")
    points = [(r["point"], r["variant"], fmt_axis(r["axis_value"])) for _, r in points.iterrows()]
    shots = pictures_lib.leaderboard_lines(results, sweep, study, rows["axis"].iloc[0], points)
    atomic_write_text(out / f"{name}.md", markdown(sweep, study, rows, table, shots, found))
    written = [csv, out / f"{name}.md"]
    if figures:
        written += figures_lib.plot_sweep(rows, table, results / "figures" / name)
    return written
