"""Leaderboards: mean and t-interval over seeds, best per column, markdown, index page, figures, reproduce report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.results import leaderboard, reproduce, store


def write_rows(results, values: dict, seeds=(0, 1, 2), status=None, extra=None, budget="default", dataset="mnist"):
    """values: (variant, axis_value) -> list of test_loglik_ais per seed; extra: (variant, axis_value) -> more
    columns of those rows."""
    trial = 0
    for (variant, x), lls in values.items():
        for seed, ll in zip(seeds, lls):
            params = f'{{"point": "{variant} {x}", "seed": {seed}}}'
            st = (status or {}).get((variant, x, seed), "complete")
            store.write_row(
                results,
                {
                    "sweep": "toy",
                    "study": f"toy.{budget}.{dataset}",
                    "budget": budget,
                    "trial": trial,
                    "params": params,
                    "point": f"{variant} {x}",
                    "variant": variant,
                    "model": variant,
                    "axis": "step_size",
                    "axis_value": math.nan if x is None else x,
                    "status": st,
                    "error": None if st == "complete" else "diverged",
                    "dataset": dataset,
                    "seed": seed,
                    "epochs": 3,
                    "batch_size": 100,
                    "hidden": 256,
                    "test_loglik_ais": ll if st == "complete" else math.nan,
                    "test_bpd_ais": -ll / 1000,
                    "val_loss": -ll,
                    "train_seconds": 10.0 + trial,
                    "git_commit": "abc",
                    "torch_version": "2.13",
                    "optuna_version": "5.0",
                    "threads": 2,
                    "machine": "x86_64 test",
                    **(extra or {}).get((variant, x), {}),
                },
            )
            trial += 1


def test_mean_ci_matches_the_t_distribution():
    mean, half, n = leaderboard.mean_ci([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3)
    assert half == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))  # t_{0.975, 2} * sd / sqrt(n)
    assert leaderboard.mean_ci([5.0])[1] != leaderboard.mean_ci([5.0])[1]  # NaN: no interval from one seed
    assert leaderboard.mean_ci([1.0, float("nan"), 3.0])[2] == 2
    assert leaderboard.mean_ci([])[2] == 0


def test_table_rows_best_marks_and_failed_counts(tmp_path):
    write_rows(
        tmp_path,
        {("lae", 1e-4): [-100, -101, -102], ("lae", 1e-3): [-95, -96, -200], ("vae", None): [-99, -99.5, -100]},
        status={("lae", 1e-3, 2): "fail"},
    )
    written = leaderboard.build(tmp_path, figures=True).paths
    table = pd.read_csv(tmp_path / "leaderboards" / "toy.csv")
    assert list(zip(table["variant"], table["axis_value"].fillna(-1))) == [("lae", 1e-4), ("lae", 1e-3), ("vae", -1)]
    lae3 = table.iloc[1]
    assert lae3["n_seeds"] == 2 and lae3["n_failed"] == 1  # the failed seed is counted, not averaged
    assert lae3["test_loglik_ais_mean"] == pytest.approx(-95.5)
    assert list(table["test_loglik_ais_best"]) == [False, True, False]  # higher is better
    assert list(table["test_bpd_ais_best"]) == [False, True, False]  # lower is better (complete seeds only)
    assert list(table["train_seconds_best"]) == [True, False, False]
    assert "val_loss_best" not in table  # each family's own objective: never ranked across families
    md = (tmp_path / "leaderboards" / "toy.md").read_text()
    assert "**-95.50 ± " in md and "| vae | — | 3 |" in md and "1 failed" in md and "diverged" in md
    assert "toy.default.mnist" in md
    index = (tmp_path / "leaderboards" / "README.md").read_text()
    assert "[toy.md](toy.md)" in index and "| 9 |" in index
    fig = tmp_path / "figures" / "toy" / "test_loglik_ais.png"
    assert fig in written and fig.read_bytes()[:4] == b"\x89PNG"


def test_the_largest_budget_is_shown(tmp_path):
    write_rows(tmp_path, {("lae", 1e-4): [-100, -101, -102]})
    store.write_row(
        tmp_path,
        {
            "sweep": "toy",
            "study": "toy.smoke.mnist",
            "budget": "smoke",
            "trial": 0,
            "params": "x",
            "status": "complete",
            "dataset": "mnist",
        },
    )
    rows = store.read_rows(tmp_path, "toy")
    assert leaderboard.pick_study(rows) == "toy.default.mnist"


def test_compare_reports_identical_and_differing_metrics(tmp_path):
    write_rows(tmp_path / "a", {("lae", 1e-4): [-100, -101, -102]})
    write_rows(tmp_path / "b", {("lae", 1e-4): [-100, -101, -102.5]})
    a, b = store.read_rows(tmp_path / "a"), store.read_rows(tmp_path / "b")
    report, ok = reproduce.compare(a, a.copy())
    assert ok and "test_loglik_ais" in report and "match" in report
    report, ok = reproduce.compare(a, b)
    assert not ok
    line = next(ln for ln in report.splitlines() if ln.startswith("test_loglik_ais"))
    assert "2/3" in line and "DIFFERS" in line and "0.5" in line
    timing = next(ln for ln in report.splitlines() if ln.startswith("train_seconds"))
    assert "timing" in timing


def test_leaderboard_cli_rebuilds(tmp_path):
    from conftest import bench_cli

    write_rows(tmp_path, {("lae", 1e-4): [-100, -101, -102], ("lae", 1e-3): [-99, -98, -97]})
    run = bench_cli("leaderboard", "--results", tmp_path, "--no-figures")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "leaderboards" / "toy.md").exists() and not (tmp_path / "figures").exists()
    bad = bench_cli("leaderboard", "nope", "--results", tmp_path)
    assert bad.returncode == 2 and "nope" in bad.stderr and "toy" in bad.stderr and "Traceback" not in bad.stderr
    assert np.isfinite(pd.read_csv(tmp_path / "leaderboards" / "toy.csv")["test_loglik_ais_ci95"]).all()


def test_verdict_names_the_winner_and_tests_its_lead(tmp_path):
    write_rows(
        tmp_path,
        {
            ("lae", 1e-4): [-100.0, -100.2, -99.9],  # clearly ahead of the VAE at 1e-4
            ("lae", 1e-3): [-101.0, -103.5, -99.5],  # level with it at 1e-3
            ("vae", None): [-101.2, -101.0, -101.4],
        },
    )
    leaderboard.build(tmp_path, figures=False)
    md = (tmp_path / "leaderboards" / "toy.md").read_text()
    verdict = md.split("## Verdict")[1].split("\n## ")[0]
    lines = [ln for ln in verdict.splitlines() if ln.startswith("- ")]
    assert len(lines) == 2  # one per swept value
    assert "0.0001" in lines[0] and "best **lae**" in lines[0] and "Welch's p = " in lines[0]
    assert "uncorrected, 3 vs 3 seeds" in lines[0] and "LAE leads" in lines[0]
    from scipy.stats import ttest_ind

    p = ttest_ind([-100.0, -100.2, -99.9], [-101.2, -101.0, -101.4], equal_var=False).pvalue
    assert f"Welch's p = {p:.2g} uncorrected" in lines[0]
    assert "0.001" in lines[1] and "significant" not in verdict  # deciding is the findings' (Holm-corrected) job
    assert "best **vae**" in lines[1] and "LAE (lae) 2 of 2" in lines[1]


def test_one_seed_has_no_interval_no_best_and_no_test(tmp_path):
    write_rows(tmp_path, {("lae", 1e-4): [-100.0], ("vae", None): [-101.0]}, seeds=(0,))
    leaderboard.build(tmp_path, figures=False)
    md = (tmp_path / "leaderboards" / "toy.md").read_text()
    table = pd.read_csv(tmp_path / "leaderboards" / "toy.csv")
    assert "±" not in md.split("## Verdict")[1] and "**-" not in md and "no interval and no best" in md
    assert "one seed, no test" in md
    assert not any(c.endswith("_best") for c in table.columns)


def test_rows_whose_estimators_disagree_or_whose_bdmc_gap_is_loose_are_marked(tmp_path):
    write_rows(
        tmp_path,
        {("lae", 1e-4): [-100.0, -100.5, -101.0], ("lae", 1e-3): [-99.0, -99.5, -100.0], ("vae", None): [-101.0] * 3},
        extra={
            ("lae", 1e-4): {"test_loglik_is": -98.0, "bdmc_gap": 0.1},  # IS 2.5 nats above AIS
            ("lae", 1e-3): {"test_loglik_is": -99.4, "bdmc_gap": 0.2},  # agrees, tight: not marked
            ("vae", None): {"test_loglik_is": -101.1, "bdmc_gap": 1.7},  # a short AIS schedule: loose bound
        },
    )
    leaderboard.build(tmp_path, figures=False)
    md = (tmp_path / "leaderboards" / "toy.md").read_text()
    assert md.count(" †") == 2
    notes = md.split("† Likelihood not trusted")[1].split("\n## ")[0]
    # per seed max(|IS - AIS|, gap): 2, 2.5, 3 (mean 2.5); 0.4, 0.2, 0.6 (mean 0.4: not marked); 1.7 each
    assert "lae at 0.0001: estimator error 2.50 nats (IS - AIS +2.50 and BDMC gap 0.10 nats on average" in notes
    assert "vae at —: estimator error 1.70 nats (IS - AIS -0.10 and BDMC gap 1.70" in notes and "0.001" not in notes


def test_the_study_is_chosen_and_named(tmp_path):
    from conftest import bench_cli

    write_rows(tmp_path, {("lae", 1e-4): [-100.0, -101.0, -102.0]})
    write_rows(tmp_path, {("lae", 1e-4): [-110.0]}, seeds=(0,), budget="smoke")
    run = bench_cli("leaderboard", "--results", tmp_path, "--no-figures")
    assert run.returncode == 0 and "toy.md: study toy.default.mnist" in run.stdout  # the largest budget
    run = bench_cli("leaderboard", "--results", tmp_path, "--no-figures", "--budget", "smoke")
    assert run.returncode == 0 and "toy.md: study toy.smoke.mnist" in run.stdout, run.stdout + run.stderr
    md = (tmp_path / "leaderboards" / "toy.md").read_text()
    assert "toy.smoke.mnist" in md and "not converged" in md
    run = bench_cli("leaderboard", "--results", tmp_path, "--no-figures", "--study", "toy.default.mnist")
    assert run.returncode == 0 and "study toy.default.mnist" in run.stdout
    bad = bench_cli("leaderboard", "--results", tmp_path, "--study", "toy.full.mnist")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "toy.full.mnist" in bad.stderr


def test_another_datasets_study_gets_its_own_table_and_never_replaces_the_default(tmp_path):
    from conftest import bench_cli

    write_rows(tmp_path, {("lae", 1e-4): [-100.0, -101.0, -102.0]})
    write_rows(
        tmp_path,
        {("lae", 1e-4): [-250.0, -251.0, -252.0], ("vae", None): [-249.0, -250.0, -251.0]},
        dataset="fashion-mnist",
    )  # more rows than mnist's: mnist stays the default table all the same
    run = bench_cli("leaderboard", "--results", tmp_path, "--no-figures")
    assert run.returncode == 0, run.stderr
    assert "toy.md: study toy.default.mnist" in run.stdout
    assert "toy.fashion-mnist.md: study toy.default.fashion-mnist" in run.stdout
    boards = tmp_path / "leaderboards"
    assert "-101.00" in (boards / "toy.md").read_text() and "-251.00" not in (boards / "toy.md").read_text()
    assert "-251.00" in (boards / "toy.fashion-mnist.md").read_text()
    index = (boards / "README.md").read_text()
    assert "`toy.default.mnist`" in index and "`toy.default.fashion-mnist`" in index
    before = (boards / "toy.md").read_text()
    run = bench_cli("leaderboard", "--results", tmp_path, "--no-figures", "--dataset", "fashion-mnist")
    assert run.returncode == 0 and "toy.fashion-mnist.md: study toy.default.fashion-mnist" in run.stdout
    assert (boards / "toy.md").read_text() == before


def test_the_experiments_page_tables_are_filled_from_the_rows_and_its_prose_kept(tmp_path):
    from bench.results import experiments

    write_rows(
        tmp_path,
        {
            ("lae", 1e-4): [-100.0, -101.0, -103.0],
            ("lae", 1e-3): [-90.0, -91.0, -92.0],
            ("vae", None): [-99.0, -99.5, -100.0],
        },
    )
    prose = "# Page\n\nHand-written prose stays.\n\n"
    page = tmp_path / "experiments.md"
    page.write_text(
        prose
        + "<!-- table sweep=toy metrics=test_loglik_ais values=0.0001 -->\nstale\n<!-- end table -->\n"
        + "<!-- table sweep=toy metrics=no_such_metric -->\n<!-- end table -->\n"
        + "<!-- table sweep=other metrics=test_loglik_ais -->\n<!-- end table -->\ntail\n"
    )
    from conftest import bench_cli

    run = bench_cli("leaderboard", "--results", tmp_path, "--no-figures")
    assert run.returncode == 0 and f"{page}: tables rebuilt" in run.stdout, run.stderr
    text = page.read_text()
    assert text.startswith(prose) and text.endswith("<!-- end table -->\ntail\n") and "stale" not in text
    half = 4.302652729911275 * np.std([-100.0, -101.0, -103.0], ddof=1) / math.sqrt(3)
    assert f"| lae | 0.0001 | 3 | -101.33 ± {half:.2f} |" in text
    assert "| vae | — | 3 | -99.50 ± 1.24 |" in text and "| lae | 0.001 |" not in text  # values= keeps 1e-4
    assert "*Bad table comment: unknown metric(s) no_such_metric.*" in text
    assert "*No rows yet: run `python -m bench sweep other --budget default --workers 2`.*" in text
    again = page.read_text()
    assert experiments.fill(tmp_path) == [page] and page.read_text() == again  # idempotent
    page.write_text(prose)  # no table blocks: left alone
    assert experiments.fill(tmp_path) == [] and page.read_text() == prose
    assert experiments.fill(tmp_path / "nowhere") == []

    readme = tmp_path / "README.md"  # results/README.md: the paper study's table, against the VAE, published numbers
    readme.write_text(
        "<!-- table sweep=toy metrics=test_loglik_ais values=0.001 digits=3 versus=vae paper=vae:-98±1,lae:-90 -->\n"
        "<!-- end table -->\n"
    )
    assert experiments.fill(tmp_path) == [readme]
    text = readme.read_text()
    from scipy.stats import ttest_ind

    p = ttest_ind([-90.0, -91.0, -92.0], [-99.0, -99.5, -100.0], equal_var=False).pvalue
    assert "| model | step_size | seeds | the paper | test_loglik_ais | test_loglik_ais vs vae |" in text
    assert f"| lae | 0.001 | 3 | -90 | -91.000 ± 2.484 | +8.500 (p {p:.2g}) |" in text
    assert "| vae | — | 3 | -98 ± 1 | -99.500 ± 1.242 | — |" in text


def test_the_header_names_every_commit_and_machine_with_its_rows(tmp_path):
    """A study whose trials ran on two CPUs (rows differ by rounding across CPUs) says so, with counts; a machine
    every row shares is named alone."""
    write_rows(tmp_path / "one", {("lae", 1e-4): [-100.0, -100.2, -99.9], ("vae", None): [-101.2, -101.0, -101.4]})
    leaderboard.build(tmp_path / "one", figures=False)
    header = (tmp_path / "one" / "leaderboards" / "toy.md").read_text().split("\n## ")[0]
    assert "Commits: abc (6 rows); 2 thread(s) per trial on x86_64 test; torch 2.13" in header
    write_rows(
        tmp_path / "two",
        {("lae", 1e-4): [-100.0, -100.2, -99.9], ("vae", None): [-101.2, -101.0, -101.4]},
        extra={("lae", 1e-4): {"git_commit": "def", "machine": "x86_64 other", "threads": 1}},
    )
    leaderboard.build(tmp_path / "two", figures=False)
    header = (tmp_path / "two" / "leaderboards" / "toy.md").read_text().split("\n## ")[0]
    assert "Commits: def (3 rows), abc (3 rows); 1 (3 rows), 2 (3 rows) thread(s) per trial on " in header
    assert "x86_64 other (3 rows), x86_64 test (3 rows); torch 2.13" in header
    # the index page says the same for every table, so one page names what made every published study
    index = (tmp_path / "two" / "leaderboards" / "README.md").read_text()
    made = "def (3 rows), abc (3 rows); 1 (3 rows), 2 (3 rows) thread(s) per trial on "
    assert f"| `toy.default.mnist` | 6 | {made}" in index
