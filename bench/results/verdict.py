"""What a leaderboard says before its tables: who won at each swept value, whether the lead is real, where LAE
stands, and which likelihoods cannot be trusted to the stated precision.

- Winner: the highest mean of the headline metric (``HEADLINE``, test log-likelihood by AIS) among the variants at
  that swept value and the flat baselines (trained once per seed, shown at every value).
- The lead: Welch's t-test (two-sided, unequal variances) of the winner's per-seed values against the runner-up's,
  its p given uncorrected and never called significant here (bench.results.findings corrects each study's comparisons
  for multiplicity and decides them); with fewer than two seeds on either side there is no test, and the verdict
  says so. ``ALPHA`` is the findings' level.
- Estimator error (``group_error``): per trial the larger of |IS - AIS| and the BDMC gap (``bdmc_gap``, the bound on
  the AIS error), per group the mean over its trials; a table row whose error exceeds ``ERROR_TOL`` nats is marked †
  and explained under the table, and bench.results.findings calls a comparison it decides undecided.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy.stats import ttest_ind

HEADLINE = "test_loglik_ais"
ALPHA = 0.05
ERROR_TOL = 0.5  # nats per image: an estimator error above this marks a row
ESTIMATOR_COLUMNS = ("test_loglik_ais", "test_loglik_is", "bdmc_gap")  # AIS, IS, BDMC gap: nats per image


def constant_p(a, b) -> float:
    """The exact two-sided permutation p (Fisher's randomization test on the difference of means) of two samples that
    are each constant, a at x and b at y != x: only the observed split, and its mirror when the sizes are equal, reach
    |x - y|, so p = (2 if n_a == n_b else 1) / C(n_a + n_b, n_a): 0.1 at 3 seeds a side, 0.0079 at 5. 1 when x == y."""
    if np.asarray(a, dtype=float)[0] == np.asarray(b, dtype=float)[0]:
        return 1.0
    return (2 if len(a) == len(b) else 1) / math.comb(len(a) + len(b), len(a))


def welch_p(a, b) -> float:
    """Two-sided p-value of Welch's t-test between two samples; nan with fewer than two values on either side.
    Where both samples are constant (a count such as gen_classes, 10 at every seed against 9) Welch's t is undefined
    and the exact permutation p (``constant_p``) stands in: it is not 0, and at 3 seeds a side it is 0.1."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
        return constant_p(a, b)
    with warnings.catch_warnings():  # one constant side (gen_classes 7, 7, 7, 7, 7): scipy warns, the p is right
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(a, b, equal_var=False).pvalue)


def versus(a, b) -> tuple[float, float] | None:
    """(mean(a) - mean(b), Welch's p) of two samples of per-seed values; None when either is empty or the
    difference is not finite. p is nan with fewer than two values on either side (welch_p)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b) or not np.isfinite(a.mean() - b.mean()):
        return None
    return float(a.mean() - b.mean()), welch_p(a, b)


def group_error(trials: pd.DataFrame) -> float:
    """One group's estimator error, nats per image: the mean over its trials of max(|IS - AIS|, BDMC gap), each
    trial's bound on its AIS error from what it measured. It bounds the error of the group's mean likelihood (an IS
    above AIS in one seed and below it in another cannot cancel out); nan where no trial has either."""
    ais, is_, gap = (
        trials[m].astype(float) if m in trials else pd.Series(np.nan, trials.index) for m in ESTIMATOR_COLUMNS
    )
    per_trial = pd.concat([(is_ - ais).abs(), gap], axis=1).max(axis=1, skipna=True).dropna()
    return float(per_trial.mean()) if len(per_trial) else math.nan


def estimator_flags(table: pd.DataFrame) -> dict[int, str]:
    """Table row index -> why its likelihood is flagged (its ``estimator_error`` column, from group_error, above
    ERROR_TOL, with the two parts on average); rows not flagged are absent."""
    flags = {}
    for i, r in table.iterrows():
        error = r.get("estimator_error", math.nan)
        if not (np.isfinite(error) and error > ERROR_TOL):
            continue
        diff = r.get("test_loglik_is_mean", math.nan) - r.get(f"{HEADLINE}_mean", math.nan)
        gap = r.get("bdmc_gap_mean", math.nan)
        parts = ([f"IS - AIS {diff:+.2f}"] if np.isfinite(diff) else []) + (
            [f"BDMC gap {gap:.2f}"] if np.isfinite(gap) else []
        )
        flags[i] = f"estimator error {error:.2f} nats ({' and '.join(parts)} nats on average over its seeds)"
    return flags


def _values(rows: pd.DataFrame, variant: str, axis_value: float) -> np.ndarray:
    ok = rows[(rows["status"] == "complete") & (rows["variant"] == variant)]
    same = ok["axis_value"].isna() if not np.isfinite(axis_value) else ok["axis_value"] == axis_value
    v = ok.loc[same, HEADLINE].astype(float).to_numpy()
    return v[np.isfinite(v)]


def verdict_lines(rows: pd.DataFrame, table: pd.DataFrame, fmt_axis) -> list[str]:
    """One markdown bullet per swept value: the winner on the headline metric, the test of its lead over the
    runner-up, and LAE's place (the best LAE variant)."""
    if f"{HEADLINE}_mean" not in table or "point" not in str(rows["params"].iloc[0]):
        return ["- A tuning study: one trial per sampled value, no per-value verdict (see the figures)."]
    axis = rows["axis"].iloc[0]
    finite = table[np.isfinite(table[f"{HEADLINE}_mean"].astype(float))]
    flat = finite[finite["axis_value"].isna()]
    values = sorted(v for v in finite["axis_value"].dropna().unique())
    lines = []
    for v in values or [math.nan]:
        here = pd.concat([finite[finite["axis_value"] == v], flat]) if values else flat
        ranked = here.sort_values(f"{HEADLINE}_mean", ascending=False)
        if ranked.empty:
            continue
        best = ranked.iloc[0]
        where = f"`{axis}` = {fmt_axis(v)}" if values else "all models"
        text = f"- {where}: best **{best['variant']}** ({best[f'{HEADLINE}_mean']:.2f} nats)"
        if len(ranked) > 1:
            second = ranked.iloc[1]
            lead = best[f"{HEADLINE}_mean"] - second[f"{HEADLINE}_mean"]
            a = _values(rows, best["variant"], best["axis_value"])
            b = _values(rows, second["variant"], second["axis_value"])
            p = welch_p(a, b)
            test = (
                "one seed, no test"
                if math.isnan(p)
                else f"Welch's p = {p:.2g} uncorrected, {len(a)} vs {len(b)} seeds (the findings correct for "
                "multiplicity)"
            )
            text += f", {lead:.2f} ahead of {second['variant']}: {test}"
        lae = [i for i, (_, r) in enumerate(ranked.iterrows()) if r["model"] == "lae"]
        if lae and lae[0] > 0:
            r = ranked.iloc[lae[0]]
            behind = best[f"{HEADLINE}_mean"] - r[f"{HEADLINE}_mean"]
            text += f"; LAE ({r['variant']}) {lae[0] + 1} of {len(ranked)}, {behind:.2f} nats behind"
        elif lae:
            text += "; LAE leads"
        lines.append(text + ".")
    return lines
