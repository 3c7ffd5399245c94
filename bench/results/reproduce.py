"""The reproduce check (`python -m bench sweep NAME --reproduce`): a regenerated study's rows against the
committed ones, metric by metric. Deterministic metrics must be bit-identical; timing metrics
(bench.registry.TIMING) cannot be and are reported, not judged."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.registry import METRICS, TIMING
from bench.results.leaderboard import COLUMNS

# What is compared: the leaderboard's metric columns (in table order), the augmented classifier's (a column absent
# from both row sets is skipped), then the evaluation's thread count.
COMPARED: tuple[str, ...] = (
    tuple(m.name for m in COLUMNS)
    + tuple(m.name for m in METRICS.values() if m.group == "classifier")
    + ("eval_threads",)
)


def compare(committed: pd.DataFrame, fresh: pd.DataFrame) -> tuple[str, bool]:
    """Per metric: how many regenerated values equal the committed ones exactly, and the largest difference.
    Rows are matched on `params`. Returns (report, all deterministic metrics equal and every committed trial
    regenerated)."""
    merged = committed.merge(fresh, on="params", suffixes=("_old", "_new"))
    lines = [
        f"{len(merged)} of {len(committed)} committed trials regenerated "
        f"(status equal: {int((merged['status_old'] == merged['status_new']).sum())})"
    ]
    notes = []
    for col, label in (("machine", "machine"), ("threads", "threads per trial"), ("torch_version", "torch")):
        old, new = set(committed[col].astype(str)), set(fresh[col].astype(str))
        if old != new:
            notes.append(f"{label} differs ({', '.join(sorted(old))} -> {', '.join(sorted(new))})")
    ok = len(merged) == len(committed)
    lines.append(f"{'metric':28s} {'identical':>10s} {'max |diff|':>12s}  verdict")
    for m in COMPARED:
        if f"{m}_old" not in merged:
            continue
        a, b = merged[f"{m}_old"].astype(float).to_numpy(), merged[f"{m}_new"].astype(float).to_numpy()
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        diff = np.nanmax(np.abs(a - b)) if np.isfinite(a - b).any() else 0.0
        if m in TIMING:
            verdict = "timing: not reproducible by nature"
        elif same.all():
            verdict = "match"
        else:
            verdict = "DIFFERS"
            ok = False
        lines.append(f"{m:28s} {int(same.sum()):>4d}/{len(same):<5d} {diff:12.4g}  {verdict}")
    if notes:
        lines.append(
            "note: identical numbers need the same machine type, thread count and library versions; here "
            + "; ".join(notes)
        )
    return "\n".join(lines), ok
