"""The leaderboard of an augmented-classifier sweep (rows with an ``n_augment`` column, bench.sweep.classifier): one
row per point (DLVM family and N), accuracies in percent as mean ± 95% CI half-width over seeds (t-distribution, n - 1
degrees of freedom, as bench.results.leaderboard), the course project's Tables 7 and 8 beside them, each augmented
point against the plain CNN (difference of means, Welch's t-test), and a figure of accuracy against the attack
radius. Written: ``<results>/leaderboards/<sweep>.csv`` and ``.md``, ``<results>/figures/<sweep>/robustness.png``.

The course project's numbers (IE506 2023, final_report.pdf) are one run each, from a different protocol: the best
test accuracy over its 10 epochs (chosen on the test set), 60,000 training images, its LAE's posterior
N(encoder(x), 0.05^2 I), and a PGD whose steps its report does not state (its code's default: 3 steps of 0.01
without random start); ours: the last epoch, a fixed test protocol, 40-step PGD with random start."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bench.registry import APGD_EPS, CLF_EPS, METRICS, clf_name
from bench.results import findings
from bench.results.figures import pyplot, save_png
from bench.results.studies import provenance
from bench.results.verdict import versus
from lae.utils import atomic_write_text

# The course project's Table 7 (clean accuracy, %) and Table 8 (PGD accuracy, %, at eps 0.01 / 0.1 / 0.2 / 0.3).
COURSE_CLEAN = {("none", 0): 95.66, ("lae", 2): 94.21, ("vae", 2): 93.99, ("lae", 5): 92.91, ("vae", 5): 92.61}
COURSE_PGD = {
    ("none", 0): {0.01: 94.69, 0.1: 70.85, 0.2: 13.18, 0.3: 0.16},
    ("lae", 2): {0.01: 93.03, 0.1: 66.42, 0.2: 11.31, 0.3: 0.33},
    ("vae", 2): {0.01: 92.66, 0.1: 63.40, 0.2: 11.16, 0.3: 0.35},
    ("lae", 5): {0.01: 91.31, 0.1: 62.62, 0.2: 10.60, 0.3: 0.41},
    ("vae", 5): {0.01: 90.83, 0.1: 60.89, 0.2: 10.32, 0.3: 0.41},
}
ACCURACIES = tuple(m.name for m in METRICS.values() if m.group == "classifier" and m.unit == "fraction")

COST_COLUMNS = {  # the DLVMs and the cost table: column -> header
    "val_loss": "DLVM val loss (nats)",
    "mh_accept": "MH accept",
    "final_step_size": "ALD step at the end",
    "phi_msjd": "Phi jump per step",
    "dlvm_seconds": "DLVM train (s)",
    "train_seconds": "CNN train (s)",
    "eval_seconds": "attacks (s)",
}
CHAIN_COLUMNS = ("final_step_size", "phi_msjd")  # LAE's; rows made before they were added (77c725e) lack them
OTHERS = (*COST_COLUMNS, "clf_train_loss")


def is_classifier(rows: pd.DataFrame) -> bool:
    """Whether a study's rows are an augmented-classifier sweep's."""
    return "n_augment" in rows.columns


def mean_ci(values) -> tuple[float, float]:
    """(mean, 95% CI half-width) of the finite values: t-distribution with n - 1 degrees of freedom (the leaderboards'
    interval); half-width nan below two values."""
    from scipy.stats import t

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) < 2:
        return (float(v[0]) if len(v) else math.nan), math.nan
    return float(v.mean()), float(t.ppf(0.975, len(v) - 1)) * float(v.std(ddof=1)) / math.sqrt(len(v))


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, N) in N order, "none" first: counts, then <metric>_mean / _ci95."""
    out = []
    for (variant, n), g in rows.groupby(["variant", "n_augment"], sort=False):
        ok = g[g["status"] == "complete"]
        rec = {"model": g["model"].iloc[0], "variant": variant, "axis": "n_augment", "axis_value": float(n)}
        rec.update(n_seeds=int(ok["seed"].nunique()), n_failed=int((g["status"] == "fail").sum()), n_pruned=0)
        for m in ACCURACIES + OTHERS:
            if m in ok.columns:
                rec[f"{m}_mean"], rec[f"{m}_ci95"] = mean_ci(ok[m].astype(float))
        out.append(rec)
    table = pd.DataFrame(out)
    # by N, the plain CNN first, then the DLVMs by name: an order that does not depend on which row file came first
    return table.sort_values(
        ["axis_value", "variant"], key=lambda c: c if c.name == "axis_value" else c.replace("none", "")
    )


def _int(r, column: str) -> str:
    v = r.get(column)
    return "—" if v is None or pd.isna(v) else str(int(v))


def _pct(r, metric: str) -> str:
    mean, ci = r.get(f"{metric}_mean", math.nan), r.get(f"{metric}_ci95", math.nan)
    if not np.isfinite(mean):
        return "—"
    return f"{100 * mean:.2f}" + (f" ± {100 * ci:.2f}" if np.isfinite(ci) else "")


def _course(table: dict, r, eps: float | None = None) -> str:
    v = table.get((r["variant"], int(r["axis_value"])))
    v = v if eps is None or v is None else v.get(eps)
    return "—" if v is None else f"{v:.2f}"


def versus_none(rows: pd.DataFrame, r, metric: str) -> str:
    """'+1.23 pp (p 0.04)': this point's mean minus the plain CNN's, Welch's p over seeds."""
    ok = rows[rows["status"] == "complete"]
    a = ok[(ok["variant"] == r["variant"]) & (ok["n_augment"] == r["axis_value"])][metric].astype(float)
    b = ok[ok["n_augment"] == 0][metric].astype(float)
    if (dp := versus(a, b)) is None:
        return "—"
    d, p = dp
    return f"{100 * d:+.2f} pp" + (f" (p {p:.2g})" if np.isfinite(p) else "")


def markdown(sweep: str, study: str, rows: pd.DataFrame, table: pd.DataFrame, found: list | None = None) -> str:
    first = rows.iloc[0]
    dlvm = rows[rows["n_augment"] > 0]
    d = dlvm.iloc[0] if len(dlvm) else first
    statuses = ", ".join(f"{v} {k}" for k, v in rows["status"].value_counts().items())
    train = "all" if pd.isna(first.get("train_size")) else f"{int(first['train_size']):,}"
    eps = [e for e in CLF_EPS if clf_name("pgd", e) in rows and rows[clf_name("pgd", e)].notna().any()]
    lines = [
        f"# Leaderboard: `{sweep}` (the DLVM-augmented classifier)",
        "",
        f"Study `{study}`: {len(rows)} trials ({statuses}), dataset {first['dataset']}, {train} training images, seeds "
        f"{sorted(int(s) for s in rows['seed'].unique())}. The course project's CNN: Adam lr {first['clf_lr']:g}, "
        f"batch {int(first['clf_batch_size'])}, {int(first['clf_epochs'])} epoch(s); N decoded posterior images per "
        f"training image. DLVMs: {d.get('architecture')} networks, depth {_int(d, 'encoder_depth')}, hidden "
        f"{_int(d, 'hidden')}, latent {_int(d, 'latent_dim')}, {_int(d, 'epochs')} epoch(s). Cells: accuracy in %, "
        f"mean ± 95% CI half-width (t-distribution) over the complete seeds; the course project's number (one run, "
        f"its own protocol: see bench/results/classifier_board.py) in the `course` columns.",
        "",
        f"Commits: {provenance(rows)}; torch {first['torch_version']}. Trials are named by study, point and seed.",
        "",
        "## Clean accuracy (%) and each augmented point against the plain CNN (N = 0)",
        "",
        "| DLVM | N | n | test split | attacked subset | course (Table 7) | vs N = 0: test | vs N = 0: PGD 0.1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in table.iterrows():
        n = f"{r['n_seeds']}" + (f" ({r['n_failed']} failed)" if r["n_failed"] else "")
        head = f"| {r['variant']} | {int(r['axis_value'])} | {n} |"
        vs = [versus_none(rows, r, m) if r["axis_value"] > 0 else "—" for m in ("clf_test_acc", "clf_acc_pgd_0.1")]
        lines.append(
            f"{head} {_pct(r, 'clf_test_acc')} | {_pct(r, 'clf_acc_clean')} | {_course(COURSE_CLEAN, r)} | "
            + " | ".join(vs)
            + " |"
        )
    lines += ["", "## PGD accuracy (%), 40 steps with random start; the course project's Table 8 beside it", ""]
    lines += ["| DLVM | N | " + " | ".join(f"eps {e:g} | course" for e in eps) + " |"]
    lines += ["|---|---:|" + "---:|---:|" * len(eps)]
    for _, r in table.iterrows():
        cells = [f"{_pct(r, clf_name('pgd', e))} | {_course(COURSE_PGD, r, e)}" for e in eps]
        lines.append(f"| {r['variant']} | {int(r['axis_value'])} | " + " | ".join(cells) + " |")
    attacks = [("fgsm", e) for e in eps] + [("apgd", e) for e in APGD_EPS]
    lines += ["", "## FGSM and APGD-CE accuracy (%)", ""]
    lines += ["| DLVM | N | " + " | ".join(f"{a.upper()} {e:g}" for a, e in attacks) + " |"]
    lines += ["|---|---:|" + "---:|" * len(attacks)]
    for _, r in table.iterrows():
        cells = [_pct(r, clf_name(a, e)) for a, e in attacks]
        lines.append(f"| {r['variant']} | {int(r['axis_value'])} | " + " | ".join(cells) + " |")
    lines += ["", "## The DLVMs and the cost", ""]
    shown = [m for m in CHAIN_COLUMNS if f"{m}_mean" in table and table[f"{m}_mean"].notna().any()]  # no empty column
    columns = {m: label for m, label in COST_COLUMNS.items() if m not in CHAIN_COLUMNS or m in shown}
    lines += ["| DLVM | N | " + " | ".join(columns.values()) + " |", "|---|---:|" + "---:|" * len(columns)]
    for _, r in table.iterrows():
        cells = [r.get(f"{m}_mean", math.nan) for m in columns]
        text = " | ".join("—" if not np.isfinite(c) else f"{c:.3g}" if abs(c) < 10 else f"{c:.0f}" for c in cells)
        lines.append(f"| {r['variant']} | {int(r['axis_value'])} | {text} |")
    failed = rows[rows["status"] == "fail"]
    if len(failed):
        lines += ["", "## Failed trials", ""]
        lines += [f"- {r['point']} seed {int(r['seed'])}: {r['error']}" for _, r in failed.iterrows()]
    if found is not None:
        lines += ["", "## Findings", "", "Each comparison, Holm-adjusted per metric (bench.results.findings).", ""]
        lines += findings.lines(found, "n_augment", lambda v: "—" if pd.isna(v) else f"{v:g}")
    lines += ["", "## Figure", "", f"![accuracy under attack](../figures/{sweep}/robustness.png)", ""]
    return "\n".join(lines)


def plot(rows: pd.DataFrame, table: pd.DataFrame, out: Path) -> Path:
    """Accuracy (%) against the L-inf radius, eps 0 = clean on the attacked subset: PGD per point (band: 95% CI),
    the course project's Table 8 dashed in the same colour."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    eps = [0.0] + [e for e in CLF_EPS if table.get(f"{clf_name('pgd', e)}_mean", pd.Series([])).notna().any()]
    for i, (_, r) in enumerate(table.iterrows()):
        names = ["clf_acc_clean"] + [clf_name("pgd", e) for e in eps[1:]]
        mean = np.array([100 * r.get(f"{m}_mean", math.nan) for m in names])
        ci = np.nan_to_num(np.array([100 * r.get(f"{m}_ci95", math.nan) for m in names]))
        c, label = colors[i % len(colors)], f"{r['variant']} N={int(r['axis_value'])}"
        ax.plot(eps, mean, marker="o", color=c, label=label)
        ax.fill_between(eps, mean - ci, mean + ci, color=c, alpha=0.15)
        course = COURSE_PGD.get((r["variant"], int(r["axis_value"])))
        if course:
            xs = [0.0, *course]
            ax.plot(xs, [COURSE_CLEAN[(r["variant"], int(r["axis_value"]))], *course.values()], "x--", color=c)
    ax.set_xlabel("L-inf radius eps (0: clean)")
    ax.set_ylabel("accuracy (%) under PGD, higher is better")
    ax.set_title(f"{rows['sweep'].iloc[0]} ({rows['study'].iloc[0]}); dashed: the course project", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, out / "robustness.png")


def build(
    results: str | os.PathLike,
    sweep: str,
    study: str,
    rows: pd.DataFrame,
    figures: bool = True,
    name: str = "",
    found: list | None = None,
) -> list[Path]:
    """Write one study's table (`<name>.csv`, `.md`; name: the sweep's by default) and figure; -> the paths."""
    out, name = Path(results) / "leaderboards", name or sweep
    table = summarize(rows)
    csv = out / f"{name}.csv"
    atomic_write_text(csv, table.assign(sweep=sweep, study=study).to_csv(index=False))
    atomic_write_text(out / f"{name}.md", markdown(sweep, study, rows, table, found))
    written = [csv, out / f"{name}.md"]
    if figures and table["n_seeds"].sum() > 0:
        (Path(results) / "figures" / name).mkdir(parents=True, exist_ok=True)
        written.append(plot(rows, table, Path(results) / "figures" / name))
    return written
