"""Findings: each comparison's interval, Welch's and Holm's p, the estimator-error rule, replication, embedding."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from test_leaderboard import write_rows

from bench.results import experiments, findings, leaderboard, store


def test_holm_matches_the_step_down_rule():
    # sorted p 0.01, 0.02, 0.04 over m = 3: 0.03, max(0.03, 0.04), max(0.04, 0.04); nan is not in the family
    assert findings.holm([0.04, 0.01, math.nan, 0.02]) == pytest.approx([0.04, 0.03, math.nan, 0.04], nan_ok=True)
    assert findings.holm([0.5, 0.9]) == [1.0, 1.0]


def test_welch_interval_covers_the_difference_with_the_satterthwaite_dof():
    from scipy.stats import ttest_ind

    a, b = np.array([1.0, 2.0, 3.5]), np.array([0.0, 0.2, 0.1, 0.4])
    lo, hi = findings.welch_interval(a, b)
    assert lo < a.mean() - b.mean() < hi and (lo + hi) / 2 == pytest.approx(a.mean() - b.mean())
    # 0 lies inside the 95% interval exactly when Welch's two-sided p is above 0.05
    p = ttest_ind(a, b, equal_var=False).pvalue
    assert (lo > 0) == (p < 0.05)
    assert findings.welch_interval(a[:1], b) == (math.nan, math.nan) or np.isnan(findings.welch_interval(a[:1], b)[0])


def _permutation_p(a, b):
    """Fisher's randomization test by enumeration: the share of relabellings whose |mean difference| reaches the
    observed one."""
    pooled, observed = np.array(a + b, dtype=float), abs(np.mean(a) - np.mean(b))
    splits = list(itertools.combinations(range(len(pooled)), len(a)))
    diffs = [pooled[list(s)].mean() - np.delete(pooled, list(s)).mean() for s in splits]
    return sum(abs(d) >= observed - 1e-12 for d in diffs) / len(splits)


def test_two_constant_samples_get_the_exact_permutation_p_not_zero():
    """A count such as gen_classes can be the same at every seed (10, 10, 10 against 9, 9, 9): Welch's t is then
    undefined. Its p is the exact randomization p, 2 / C(6, 3) = 0.1 at 3 seeds a side (never significant) and
    2 / C(10, 5) at 5, not the 0 a t of zero variance gives."""
    from bench.results.verdict import welch_p

    assert welch_p([10, 10, 10], [9, 9, 9]) == pytest.approx(0.1)
    assert welch_p([10] * 5, [9] * 5) == pytest.approx(2 / 252)
    assert welch_p([7, 7, 7], [7, 7, 7]) == 1.0
    # the closed form is the enumeration's, equal and unequal sizes alike
    for a, b in [([10] * 3, [9] * 3), ([10] * 5, [9] * 5), ([3] * 4, [8] * 2), ([1] * 2, [0] * 5), ([2] * 3, [2] * 3)]:
        assert welch_p(a, b) == pytest.approx(_permutation_p(a, b)), (a, b)
    # the enumeration itself, counted by hand: of the 20 splits of 1..6 into three and three only {1,2,3} and {4,5,6}
    # reach |difference| 3; |difference| 1 is reached by 14 (all but the 6 at 1/3)
    assert _permutation_p([1, 2, 3], [4, 5, 6]) == pytest.approx(2 / 20)
    assert _permutation_p([1, 2, 6], [3, 4, 5]) == pytest.approx(14 / 20)
    # one constant side keeps Welch's test
    assert 0 < welch_p([10, 10, 10], [8, 9, 7]) < 0.1


def test_findings_are_holm_corrected_undecided_under_estimator_error_and_replicated(tmp_path):
    write_rows(
        tmp_path,
        {
            ("lae", 1e-4): [-100.0, -100.2, -99.9],  # 1.17 nats ahead of the VAE, p ~ 3e-4
            ("lae", 1e-3): [-101.0, -103.5, -99.5],  # level with it
            ("vae", None): [-101.2, -101.0, -101.4],
        },
        extra={("lae", 1e-4): {"test_loglik_is": -100.1, "bdmc_gap": 0.05}, ("vae", None): {"bdmc_gap": 0.05}},
    )
    found = findings.study_findings(store.read_rows(tmp_path, "toy"))
    ll = [f for f in found if f.metric == "test_loglik_ais"]
    assert [(f.axis_value, f.a, f.b) for f in ll] == [(1e-4, "lae", "vae"), (1e-3, "lae", "vae")]
    ahead, level = ll
    assert ahead.verdict == "significant" and ahead.p_holm == pytest.approx(min(1, 2 * ahead.p))
    assert level.verdict == "not significant" and ahead.lo > 0 > level.lo
    # per trial the larger of |IS - AIS| (0.1, 0.1, 0.2) and the BDMC gap (0.05), averaged over the group's trials
    assert ahead.error == pytest.approx(0.4 / 3)

    # the same difference, but an AIS whose BDMC gap is 0.5 nats: 1.17 < 4 x 0.5, undecided
    write_rows(
        tmp_path,
        {("lae", 1e-4): [-100.0, -100.2, -99.9], ("vae", None): [-101.2, -101.0, -101.4]},
        extra={("lae", 1e-4): {"bdmc_gap": 0.5}},
        dataset="fashion-mnist",
    )
    rows = store.read_rows(tmp_path, "toy")
    both = findings.sweep_findings(rows, ["toy.default.mnist", "toy.default.fashion-mnist"])
    other = [f for f in both["toy.default.fashion-mnist"] if f.metric == "test_loglik_ais"]
    assert other[0].verdict == findings.UNDECIDED and other[0].p < 0.05
    mine = [f for f in both["toy.default.mnist"] if f.metric == "test_loglik_ais"]
    assert mine[0].replication == "fashion-mnist: +1.17, undecided: estimator error; does not replicate"
    assert mine[1].replication == ""  # no 1e-3 on fashion-mnist

    leaderboard.build(tmp_path, figures=False)
    md = (tmp_path / "leaderboards" / "toy.md").read_text()
    section = md.split("## Findings")[1].split("\n## ")[0]
    assert "| 0.0001 | lae | vae | 3 vs 3 | +1.17 [" in section and "**significant**" in section
    assert "Commits: abc (" in md
    table = pd.read_csv(tmp_path / "leaderboards" / "findings" / "toy.csv")
    assert set(table["verdict"]) >= {"significant", "not significant"} and "p_holm" in table


def test_an_is_above_ais_in_one_seed_and_below_in_another_does_not_cancel_out_of_the_estimator_error(tmp_path):
    """The group's means of IS and AIS agree here (IS - AIS = +1, -1, 0), yet two of its three trials are 1 nat off:
    the error is the mean of the trials' bounds (1, 1, and 0.01 from the BDMC gap), so a 2-nat lead (< 4 x 0.67) is
    undecided, where |mean IS - mean AIS| (0) would have called it significant."""
    write_rows(tmp_path, {("lae", 1e-4): [-100.0, -100.1, -99.9], ("vae", None): [-102.0, -102.1, -101.9]})
    rows = store.read_rows(tmp_path, "toy")
    lae = rows["variant"] == "lae"
    rows.loc[lae, "test_loglik_is"] = rows.loc[lae, "test_loglik_ais"] + np.array([1.0, -1.0, 0.0])
    rows["bdmc_gap"] = 0.01
    (lead,) = [f for f in findings.study_findings(rows) if f.metric == "test_loglik_ais"]
    assert lead.diff == pytest.approx(2.0) and lead.p < 1e-3
    assert lead.error == pytest.approx(2.01 / 3) and lead.verdict == findings.UNDECIDED


def test_the_pages_embed_findings_between_markers(tmp_path):
    write_rows(tmp_path, {("lae", 1e-4): [-100.0, -100.2, -99.9], ("vae", None): [-101.2, -101.0, -101.4]})
    page = tmp_path / "README.md"
    page.write_text(
        "prose\n<!-- findings sweep=toy metrics=test_loglik_ais -->\nstale\n<!-- end findings -->\n"
        "<!-- findings metrics=test_loglik_ais -->\n<!-- end findings -->\n"
    )
    assert experiments.fill(tmp_path) == [page]
    text = page.read_text()
    assert "stale" not in text and text.startswith("prose\n") and "Findings of study `toy.default.mnist`" in text
    assert "| 0.0001 | lae | vae | 3 vs 3 | +1.17" in text and "probe_acc" not in text
    assert "*Bad findings comment: a block needs sweep=.*" in text


def test_against_keeps_the_control_comparisons_and_holm_still_counts_the_whole_family(tmp_path):
    groups = {("lae", 1e-4): [-100.0, -100.2, -99.9], ("vae", None): [-101.2, -101.0, -101.4]}
    write_rows(tmp_path, {**groups, ("frozen", None): [-100.1, -100.4, -100.0]})
    page = tmp_path / "README.md"
    page.write_text("<!-- findings sweep=toy metrics=test_loglik_ais against=frozen -->\n<!-- end findings -->\n")
    experiments.fill(tmp_path)
    text = page.read_text()
    assert "| 0.0001 | lae | frozen | 3 vs 3 |" in text and "| lae | vae |" not in text
    assert "1 comparisons, Holm over all 2 of this study's comparisons of LAE" in text


def test_the_controls_against_the_baselines_are_their_own_holm_family(tmp_path):
    # frozen is level with LAE and 1 nat above the VAE: "is LAE's lead over the VAE the autoencoder's?" is answered by
    # frozen against vae, in a family of its own, so LAE's two comparisons keep Holm over 2, not 3
    write_rows(
        tmp_path,
        {
            ("lae", 1e-4): [-100.0, -100.2, -99.9],
            ("vae", None): [-101.2, -101.0, -101.4],
            ("frozen", None): [-100.1, -100.4, -100.0],
        },
    )
    found = [f for f in findings.study_findings(store.read_rows(tmp_path, "toy")) if f.metric == "test_loglik_ais"]
    assert {(f.a, f.b, f.family) for f in found} == {
        ("lae", "vae", "lae"),
        ("lae", "frozen", "lae"),
        ("frozen", "vae", "controls"),
    }
    lae_vae = next(f for f in found if f.b == "vae" and f.a == "lae")
    assert lae_vae.p_holm == pytest.approx(2 * lae_vae.p)  # the smaller of LAE's two p, times 2 (not 3)
    control = next(f for f in found if f.family == "controls")
    assert control.p_holm == pytest.approx(control.p) and control.diff == pytest.approx(1.0333, abs=1e-3)
    assert control.verdict == "significant"
    page = tmp_path / "README.md"
    marker = "<!-- findings sweep=toy metrics=test_loglik_ais family=controls -->"
    page.write_text(marker + "\n<!-- end findings -->\n")
    experiments.fill(tmp_path)
    text = page.read_text()
    assert "| frozen | vae | 3 vs 3 | +1.03" in text and "| lae |" not in text
    assert "1 comparisons, Holm over all 1 of this study's comparisons of the controls with the baselines" in text


def test_a_metric_that_fewer_seeds_have_shows_its_own_n(tmp_path):
    write_rows(tmp_path, {("lae", 1e-4): [-100.0, -100.2]}, seeds=(0, 1), extra={("lae", 1e-4): {"gen_fd": 50.0}})
    write_rows(tmp_path, {("lae", 1e-4): [-99.9]}, seeds=(2,))  # an older row without gen_fd
    leaderboard.build(tmp_path, figures=False)
    md = (tmp_path / "leaderboards" / "toy.md").read_text()
    quality = md.split("## Sample quality")[1].split("\n## ")[0]
    assert "| lae | 0.0001 | 3 | **50.00 ± 0** (n 2) |" in quality
    likelihood = md.split("## Likelihood")[1].split("\n## ")[0]
    assert "(n " not in likelihood


def test_replication_says_replicates_reversed_or_not():
    def one(diff, verdict):
        return findings.Finding("test_loglik_ais", 16.0, "lae", "vae", math.nan, 3, 3, diff, *[math.nan] * 5, verdict)

    mine = [one(2.0, "significant")]
    for theirs, word in [
        (one(1.0, "significant"), "replicates"),
        (one(-1.0, "significant"), "reversed"),
        (one(1.0, "not significant"), "does not replicate"),
    ]:
        assert findings.replicate(mine, [theirs], "fashion-mnist")[0].replication.endswith("; " + word)
    level = [one(0.1, "not significant")]
    assert findings.replicate(level, level, "x")[0].replication == "x: +0.1, not significant; neither significant"
    assert findings.replicate(mine, [one(1.0, "significant")._replace(b="iwae")], "x")[0].replication == ""


def test_page_cells_keep_three_significant_digits_below_one_hundredth():
    # an adapted ALD step (4.46e-07) is not "0.000"; larger values keep fixed decimals
    assert experiments.cell(4.46e-07, 2.2e-07, percent=False) == "4.46e-07 ± 2.2e-07"
    assert experiments.cell(0.495, 0.0066, percent=False) == "0.495 ± 0.007"
    assert experiments.cell(-112.73, 0.61, percent=False) == "-112.73 ± 0.61"
