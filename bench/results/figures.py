"""Figures (matplotlib, Agg backend): each metric against the swept value, one PNG per metric under
``<results>/figures/<sweep>/<metric>.png``. Variants that follow the swept axis are lines with a 95% confidence band
over seeds (t-distribution, see ``bench.results.leaderboard``, the only caller); flat baselines (no such knob) are
horizontal lines with their band, drawn alongside. A tuning sweep (one trial per value) is a scatter of its trials,
pruned ones hollow. Units and directions: bench.registry's METRICS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.registry import METRICS
from lae.utils import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, **savefig) -> Path:
    """Write `fig` to `path` as a PNG atomically (lae.utils.atomic_path), then close it. The temporary name ends in
    .tmp, so the format is given, not inferred. savefig: more savefig arguments (dpi, metadata)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **savefig)
    pyplot().close(fig)
    return path


def plot_sweep(rows: pd.DataFrame, table: pd.DataFrame, out: Path) -> list[Path]:
    """One figure per metric of the leaderboard `table` (columns ``<metric>_mean``, ``_ci95``, rows as
    ``summarize`` makes them) with finite values; `rows` are the study's trials. Returns the paths written
    (atomically)."""
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    axis = rows["axis"].iloc[0]
    tune = "point" not in rows["params"].iloc[0]
    x_all = table["axis_value"].astype(float)
    x_pos = x_all[np.isfinite(x_all)]
    log_x = len(x_pos) > 1 and (x_pos > 0).all() and x_pos.max() / x_pos.min() >= 20
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    written = []
    for m in METRICS.values():
        metric, better, unit = m.name, m.better, m.unit
        col = f"{metric}_mean"
        if col not in table or not np.isfinite(table[col].astype(float)).any():
            continue
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        if tune:
            for status, face in (("complete", None), ("pruned", "none")):
                g = rows[rows["status"] == status]
                ax.scatter(
                    g["axis_value"],
                    g[metric],
                    label=f"lae ({status})",
                    facecolors=face,
                    edgecolors=colors[0],
                    color=colors[0] if face is None else None,
                )
        else:
            for i, (variant, g) in enumerate(table.groupby("variant", sort=False)):
                c = colors[i % len(colors)]
                mean, ci = g[col].astype(float).to_numpy(), g[f"{metric}_ci95"].astype(float).fillna(0).to_numpy()
                x = g["axis_value"].astype(float).to_numpy()
                if not np.isfinite(x).any():  # a flat baseline
                    if np.isfinite(mean[0]):
                        ax.axhline(mean[0], color=c, linestyle="--", label=f"{variant} (no {axis})")
                        ax.axhspan(mean[0] - ci[0], mean[0] + ci[0], color=c, alpha=0.12)
                    continue
                order = np.argsort(x)
                ax.plot(x[order], mean[order], marker="o", color=c, label=variant)
                ax.fill_between(x[order], (mean - ci)[order], (mean + ci)[order], color=c, alpha=0.2)
        if log_x:
            ax.set_xscale("log")
            ax.set_xlim(x_pos.min() / 2, x_pos.max() * 2)  # also when only flat baselines have this metric
        elif len(x_pos):
            pad = 0.05 * max(x_pos.max() - x_pos.min(), 1)
            ax.set_xlim(x_pos.min() - pad, x_pos.max() + pad)
        ax.set_xlabel(axis)
        direction = "" if better is None else f", {'higher' if better == 'max' else 'lower'} is better"
        ax.set_ylabel(f"{metric} ({unit}){direction}")
        ax.set_title(f"{rows['sweep'].iloc[0]}: {metric} ({rows['study'].iloc[0]})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(save_png(fig, out / f"{metric}.png"))
    return written
