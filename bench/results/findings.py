"""Findings: every comparison a study makes, tested, corrected for multiplicity and checked against estimator error.

Which comparisons (per study, per metric of ``METRICS_COMPARED`` that its complete rows have), in two families:
- ``lae``, the study's question:
  - each LAE group (variant, swept value) against every other family's group at the same swept value or without one
    (the baselines trained once per seed, and LAE's controls ``frozen`` and ``map``);
  - each pair of LAE variants at the same swept value (``lae mh`` against ``lae no mh`` at one step size);
  - in the augmented-classifier study, every group against the plain CNN (variant ``none``);
- ``controls``: each of LAE's no-sampling controls (``CONTROL_FAMILIES``: the families whose config is a
  lae.controls.ControlConfig) against every baseline group at the same swept value or without one: whether what LAE
  gains over the VAE family the autoencoder it also is gains too.

For each: the difference of the means (a - b, in the metric's unit), its 95% interval (Welch-Satterthwaite degrees of
freedom), Welch's two-sided p (the exact permutation p where both groups are constant, ``verdict.constant_p``), and
Holm's adjusted p over its *family*: all comparisons of one metric and one family
in that study (a second question does not weaken the first's tests). "significant" only where the adjusted p is
below ``ALPHA``.

Estimator error (likelihood metrics estimated by AIS, ``ESTIMATED``): per trial the larger of |IS - AIS| and the BDMC
gap, per group the mean of its trials' (``bench.results.verdict.group_error``); nats per image, converted to the
metric's unit. A comparison whose |difference| is less than ``ERROR_FACTOR`` times the larger error of its two groups
is "undecided: estimator error", whatever its p.

Replication: where the sweep has the same comparison (metric, swept value, both variants) in a study on another
dataset at the same budget, the finding gives that difference and verdict, and says whether it replicates (both
significant, same sign), is reversed, or does not replicate.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from bench.registry import METRICS, PIXELS
from bench.results.verdict import ALPHA, group_error, welch_p
from lae.controls import ControlConfig
from lae.families import FAMILIES
from lae.utils import atomic_write_text

# The metrics compared, in this order (those a study has): the headline likelihood first.
METRICS_COMPARED: tuple[str, ...] = (
    "test_loglik_ais",
    "test_npd_paper",
    "probe_acc",
    "adv_acc_fgsm_0.1",
    "adv_acc_pgd_0.1",
    "gen_fd",
    "gen_classes",
    "gen_class_kl",
    "clf_test_acc",
    "clf_acc_pgd_0.1",
)
# Metrics estimated by AIS -> factor from nats per image to their unit (given the image's dimension P).
ESTIMATED = {
    "test_loglik_ais": lambda p: 1.0,
    "test_npd_ais": lambda p: 1.0 / p,
    "test_bpd_ais": lambda p: 1.0 / (p * math.log(2)),
}
ERROR_FACTOR = 4.0
CONTROL_VARIANTS = ("none",)  # every group is compared with these (the augmented classifier's plain CNN)
UNDECIDED = "undecided: estimator error"
CONTROL_FAMILIES = tuple(name for name, family in FAMILIES.items() if issubclass(family.config, ControlConfig))
FAMILY_TEXT = {"lae": "comparisons of LAE", "controls": "comparisons of the controls with the baselines"}


class Finding(NamedTuple):
    metric: str
    axis_value: float  # nan: a comparison between groups without a swept value
    a: str  # variant: LAE's, or the augmented classifier's when compared with its plain CNN
    b: str  # the variant it is compared with
    b_value: float  # b's swept value (nan: a baseline without the knob)
    n_a: int
    n_b: int
    diff: float  # mean(a) - mean(b), in the metric's unit
    lo: float  # 95% interval of the difference (nan with fewer than 2 seeds on a side)
    hi: float
    p: float  # Welch's two-sided p
    p_holm: float  # Holm-adjusted over the study's comparisons of this metric
    error: float  # the larger estimator error of the two groups, in the metric's unit (nan: not estimated)
    verdict: str  # "significant" | "not significant" | UNDECIDED | "one seed: no test"
    replication: str = ""  # the same comparison on another dataset ("" where there is none)
    family: str = "lae"  # the Holm family (FAMILY_TEXT): "lae" or "controls"


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The `level` interval of mean(a) - mean(b), Welch-Satterthwaite degrees of freedom; (nan, nan) with fewer than
    two values on a side."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    from scipy.stats import t

    va, vb, d = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b), a.mean() - b.mean()
    if (se := math.sqrt(va + vb)) == 0:
        return float(d), float(d)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(t.ppf(0.5 + level / 2, dof)) * se
    return float(d - half), float(d + half)


def holm(p: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (nan stays nan and is not counted in the family)."""
    idx = [i for i, v in enumerate(p) if np.isfinite(v)]
    order = sorted(idx, key=lambda i: p[i])
    m, out, running = len(order), [math.nan] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def _groups(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, swept value) of the complete trials: model, variant, axis_value."""
    ok = rows[rows["status"] == "complete"]
    return ok.drop_duplicates(["variant", "axis_value"])[["model", "variant", "axis_value"]].reset_index(drop=True)


def _same(a: float, b: float) -> bool:
    return (pd.isna(a) and pd.isna(b)) or a == b


def pairs(rows: pd.DataFrame) -> list[tuple[tuple[str, float], tuple[str, float], str]]:
    """The compared groups ((variant, value), (variant, value), family) of one study, in the module docstring's
    rules."""
    g = _groups(rows)
    out = []
    lae = g[g["model"] == "lae"].sort_values(["variant", "axis_value"])
    others = g[g["model"] != "lae"]
    for _, a in lae.iterrows():
        for _, b in others.iterrows():
            if _same(a["axis_value"], b["axis_value"]) or pd.isna(b["axis_value"]) or b["variant"] in CONTROL_VARIANTS:
                out.append(((a["variant"], a["axis_value"]), (b["variant"], b["axis_value"]), "lae"))
        for _, b in lae.iterrows():
            later = b["variant"] > a["variant"]
            if later and _same(a["axis_value"], b["axis_value"]):
                out.append(((a["variant"], a["axis_value"]), (b["variant"], b["axis_value"]), "lae"))
    for _, a in others.iterrows():  # the other families against the controls (the augmented classifier's VAE)
        for _, b in g[g["variant"].isin(CONTROL_VARIANTS)].iterrows():
            if a["variant"] not in CONTROL_VARIANTS:
                out.append(((a["variant"], a["axis_value"]), (b["variant"], b["axis_value"]), "lae"))
    controls = others[others["model"].isin(CONTROL_FAMILIES)].sort_values(["variant", "axis_value"])
    baselines = others[~others["model"].isin(CONTROL_FAMILIES) & ~others["variant"].isin(CONTROL_VARIANTS)]
    for _, a in controls.iterrows():
        for _, b in baselines.iterrows():
            if _same(a["axis_value"], b["axis_value"]) or pd.isna(b["axis_value"]):
                out.append(((a["variant"], a["axis_value"]), (b["variant"], b["axis_value"]), "controls"))
    return out


def _trials(ok: pd.DataFrame, group: tuple[str, float]) -> pd.DataFrame:
    """The rows of one group: a variant at a swept value (nan: the variant's rows without one)."""
    variant, value = group
    same = ok["axis_value"].isna() if pd.isna(value) else ok["axis_value"] == value
    return ok.loc[(ok["variant"] == variant) & same]


def _values(ok: pd.DataFrame, group: tuple[str, float], metric: str) -> np.ndarray:
    v = _trials(ok, group)[metric].astype(float).to_numpy()
    return v[np.isfinite(v)]


def estimator_error(ok: pd.DataFrame, group: tuple[str, float]) -> float:
    """One group's estimator error, nats per image (bench.results.verdict.group_error)."""
    return group_error(_trials(ok, group))


def study_findings(rows: pd.DataFrame) -> list[Finding]:
    """The findings of one study's rows (module docstring), metric by metric, Holm over each metric's families."""
    ok = rows[rows["status"] == "complete"]
    if ok.empty:
        return []
    ok = with_derived(ok)
    compared = pairs(rows)
    pixels = PIXELS.get(str(ok["dataset"].iloc[0]), math.nan) if "dataset" in ok else math.nan
    out = []
    for metric in METRICS_COMPARED:
        if metric not in ok or not np.isfinite(ok[metric].astype(float)).any():
            continue
        families: dict[str, list[Finding]] = {}
        for ga, gb, name in compared:
            a, b = _values(ok, ga, metric), _values(ok, gb, metric)
            if not len(a) or not len(b):
                continue
            diff = float(a.mean() - b.mean())
            lo, hi = welch_interval(a, b)
            error = math.nan
            if metric in ESTIMATED:
                error = max(estimator_error(ok, ga), estimator_error(ok, gb)) * ESTIMATED[metric](pixels)
            p = welch_p(a, b)  # Holm's p and the verdict follow once the whole family is known
            f = Finding(metric, ga[1], ga[0], gb[0], gb[1], len(a), len(b), diff, lo, hi, p, p, error, "", family=name)
            families.setdefault(name, []).append(f)
        for family in families.values():
            for f, adjusted in zip(family, holm([f.p for f in family])):
                out.append(_decided(f._replace(p_holm=adjusted)))
    return out


def _decided(f: Finding) -> Finding:
    """f with its verdict: undecided by the estimator-error rule, else by Holm's p (no test with one seed)."""
    if np.isfinite(f.error) and abs(f.diff) < ERROR_FACTOR * f.error:
        verdict = UNDECIDED
    elif not np.isfinite(f.p):
        verdict = "one seed: no test"
    else:
        verdict = "significant" if f.p_holm < ALPHA else "not significant"
    return f._replace(verdict=verdict)


def with_derived(rows: pd.DataFrame) -> pd.DataFrame:
    """rows with the derived likelihood columns (bench.registry, group "derived"): nats per dimension from nats per
    image (test_npd_ais = -test_loglik_ais / P) and from bits per dimension (test_npd_paper = test_bpd_paper ln 2)."""
    rows = rows.copy()
    pixels = rows["dataset"].map(PIXELS).astype(float) if "dataset" in rows else math.nan
    if "test_loglik_ais" in rows:
        rows["test_npd_ais"] = -rows["test_loglik_ais"].astype(float) / pixels
    if "test_bpd_paper" in rows:
        rows["test_npd_paper"] = rows["test_bpd_paper"].astype(float) * math.log(2)
    return rows


def _key(f: Finding) -> tuple:
    return (f.metric, -math.inf if pd.isna(f.axis_value) else f.axis_value, f.a, f.b, f.family)


def replicate(mine: list[Finding], theirs: list[Finding], dataset: str) -> list[Finding]:
    """`mine` with each finding's replication on `dataset` (whose findings are `theirs`) filled in."""
    other, out = {_key(f): f for f in theirs}, []
    for f in mine:
        if (g := other.get(_key(f))) is None:
            out.append(f)
            continue
        both = [f.verdict, g.verdict].count("significant")
        word = "does not replicate" if both == 1 else "neither significant" if not both else "replicates"
        word = "reversed" if both == 2 and np.sign(f.diff) != np.sign(g.diff) else word
        out.append(f._replace(replication=f"{dataset}: {fmt_num(g.diff, signed=True)}, {g.verdict}; {word}"))
    return out


def sweep_findings(rows: pd.DataFrame, studies: list[str]) -> dict[str, list[Finding]]:
    """study -> its findings, for `studies` of one sweep's rows, each with its replication on the sweep's studies of
    the same budget on other datasets (any study of the rows, shown or not)."""
    out = {}
    for study in studies:
        mine = rows[rows["study"] == study]
        found = study_findings(mine)
        first = mine.iloc[0]
        same = rows[(rows["budget"] == first["budget"]) & (rows["dataset"] != first["dataset"])]
        for dataset, theirs in same.groupby("dataset", sort=False):
            for other in theirs["study"].unique():
                found = replicate(found, study_findings(theirs[theirs["study"] == other]), dataset)
        out[study] = found
    return out


def write_csv(found: list[Finding], path: Path) -> Path:
    """The findings as a CSV, one row per comparison (Finding's fields as columns)."""
    return atomic_write_text(path, pd.DataFrame(found, columns=Finding._fields).to_csv(index=False))


def fmt_num(x: float, signed: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    a = abs(x)
    text = f"{x:+.2f}" if a >= 1 else f"{x:+.3g}" if a else "+0"
    return text if signed else text.lstrip("+")


def fmt_p(p: float) -> str:
    return "—" if not np.isfinite(p) else f"{p:.2g}"


def section(found: list[Finding], axis: str, fmt_axis) -> list[str]:
    """A leaderboard's "Findings" section: what the columns mean, then `lines`."""
    return [
        "## Findings",
        "",
        "Every comparison of this study (bench.results.findings): difference of the means (the model minus the one it "
        "is compared with), its 95% interval (Welch), Welch's p and Holm's adjusted p over the study's comparisons of "
        "the metric in its family (LAE against every group; LAE's controls against the baselines); **significant** "
        "only where the adjusted p is below 0.05. A likelihood difference under "
        f"{ERROR_FACTOR:g} times the larger estimator error of its two groups (the larger of |IS - AIS| and the BDMC "
        "gap) is undecided.",
        "",
        *lines(found, axis, fmt_axis),
    ]


class Selection(NamedTuple):
    """Which findings a page shows (None: all): metrics, swept values (comparisons without one are always kept),
    compared-with variants (`against`), comparing variants (`models`) and Holm family ("lae" or "controls")."""

    metrics: list[str] | None = None
    values: list[float] | None = None
    against: list[str] | None = None
    models: list[str] | None = None
    family: str | None = None

    def admits(self, f: Finding) -> bool:
        """Whether finding f is one this selection keeps (its metric aside: lines() walks the metrics in order)."""
        return (
            (self.values is None or pd.isna(f.axis_value) or f.axis_value in self.values)
            and (self.against is None or f.b in self.against)
            and (self.models is None or f.a in self.models)
            and (self.family is None or f.family == self.family)
        )


EVERYTHING = Selection()


def lines(found: list[Finding], axis: str, fmt_axis, keep: Selection = EVERYTHING) -> list[str]:
    """The findings as markdown: per metric a summary line and a table (one row per comparison), those `keep` selects
    (the summary line still counts each whole family, over which Holm's p is adjusted)."""
    if not found:
        return ["No comparison (fewer than two groups with complete rows)."]
    out = []
    kept = [f for f in found if keep.admits(f)]
    for metric in [m for m in METRICS_COMPARED if keep.metrics is None or m in keep.metrics]:
        mine = [f for f in kept if f.metric == metric]
        if not mine:
            continue
        m = METRICS[metric]
        counts = {v: sum(f.verdict == v for f in mine) for v in ("significant", UNDECIDED)}
        direction = {"max": "higher is better", "min": "lower is better"}.get(m.better, "")
        sizes = {f.family: sum(g.metric == metric and g.family == f.family for g in found) for f in mine}
        holm_over = "; ".join(f"Holm over all {n} of this study's {FAMILY_TEXT[k]}" for k, n in sizes.items())
        out += [
            f"**`{metric}`** ({m.unit}, {direction}): {len(mine)} comparisons, {holm_over}; "
            f"{counts['significant']} significant"
            + (f", {counts[UNDECIDED]} undecided by estimator error" if counts[UNDECIDED] else "")
            + ".",
            "",
        ]
        replicated, estimated = any(f.replication for f in mine), metric in ESTIMATED
        head = ["`" + axis + "`", "model", "against", "n", "difference (95% CI)", "Welch p", "Holm p"]
        head += ["estimator error"] if estimated else []
        head += ["verdict"] + (["on the other dataset"] if replicated else [])
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for f in mine:
            ci = f" [{fmt_num(f.lo, True)}, {fmt_num(f.hi, True)}]" if np.isfinite(f.lo) else ""
            b = f.b if _same(f.axis_value, f.b_value) or pd.isna(f.b_value) else f"{f.b} ({fmt_axis(f.b_value)})"
            cells = [fmt_axis(f.axis_value), f.a, b, f"{f.n_a} vs {f.n_b}", fmt_num(f.diff, True) + ci]
            cells += [fmt_p(f.p), fmt_p(f.p_holm)] + ([fmt_num(f.error)] if estimated else [])
            verdict = f"**{f.verdict}**" if f.verdict == "significant" else f.verdict
            cells += [verdict] + ([f.replication or "—"] if replicated else [])
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return out or ["No comparison on the metrics asked for."]
