"""Sweeps end to end: the smoke sweep on real MNIST, specs, bad input, divergence, the tuning sweep."""

from __future__ import annotations

import json
import math
import os

import optuna
import pandas as pd
import pytest
from conftest import bench_cli

from bench import sweep
from bench.errors import BenchError
from bench.results import store

METRICS_REQUIRED = (
    [
        "test_loglik_ais",
        "test_loglik_is",
        "test_elbo",
        "test_bpd_ais",
        "probe_acc",
        "gen_samples_per_s",
        "posterior_samples_per_s",
        "adv_acc_clean",
    ]
    + [f"adv_acc_{a}_{e:g}" for a in ("fgsm", "pgd") for e in (0.05, 0.1, 0.2, 0.3)]
    + ["eval_threads", "eval_seconds"]
)
COLUMNS_REQUIRED = list(store.REQUIRED_COLUMNS) + METRICS_REQUIRED + ["python_version", "numpy_version", "machine"]


def grid_keys(spec_path, budget="smoke"):
    spec = sweep.load_spec(str(spec_path))
    b = spec.budget(budget)
    return {sweep.params_key({"point": p.label, "seed": s}) for p in spec.points(b) for s in b.seeds}


@pytest.mark.slow
def test_smoke_sweep_end_to_end_on_mnist(tmp_path):
    """The real `ald_stepsize` smoke budget on real MNIST: one row per grid point with every required column and
    every metric filled, leaderboards and figures written; a second run resumes and trains nothing."""
    out = tmp_path / "results"
    run = bench_cli("sweep", "ald_stepsize", "--budget", "smoke", "--results", out, "--dataset", "mnist")
    assert run.returncode == 0, run.stderr
    rows = store.read_rows(out, "ald_stepsize")
    spec = sweep.load_spec("ald_stepsize")
    assert set(rows["params"]) == grid_keys(spec.path)
    assert len(rows) == len(spec.points(spec.budget("smoke")))
    missing = [c for c in COLUMNS_REQUIRED if c not in rows.columns]
    assert not missing, missing
    assert (rows["status"] == "complete").all(), rows[["point", "error"]]
    lae = rows[rows["model"] == "lae"]
    # every metric filled, except where the metric is undefined (bench.metrics): the ELBO of LAE and its controls (no
    # encoder distribution) and bits/dim of binarized data (8-bit data only)
    no_elbo = rows["model"].isin(["lae", "frozen", "map"])
    undefined = {"test_elbo": no_elbo, "test_bpd_ais": rows["likelihood"] == "bernoulli"}
    for col in METRICS_REQUIRED + ["val_loss", "train_seconds"]:
        nan = undefined.get(col, pd.Series(False, index=rows.index))
        assert rows.loc[~nan, col].map(math.isfinite).all() and rows.loc[nan, col].isna().all(), col
    assert lae["mh_accept"].between(0, 1).all() and rows[rows["model"] == "vae"]["mh_accept"].isna().all()
    assert (lae["final_step_size"] > 0).all() and (lae["phi_msjd"] >= 0).all()  # what the chain did (LAE only)
    adaptive = lae[lae["variant"] == "lae adaptive"]
    assert (adaptive["final_step_size"] != 1e-5).all() and (adaptive["phi_msjd"] > 0).all()  # adapted, and moving
    others = rows[rows["model"] != "lae"]
    assert others[["final_step_size", "phi_msjd"]].isna().all().all()
    assert rows[rows["model"].isin(["frozen", "map"])]["mh_accept"].isna().all()  # the controls have no chain
    assert (rows["schema_version"] == store.SCHEMA_VERSION).all()
    assert set(rows["dataset"]) == {"mnist"} and set(rows["likelihood"]) == {"bernoulli"}
    swept = rows[rows["variant"] == "lae"]  # the LAE that follows the axis ("lae adaptive" is a reference row)
    assert sorted(swept["step_size"]) == sorted(spec.budget("smoke").values)
    for name in ("ald_stepsize.csv", "ald_stepsize.md", "README.md"):
        assert (out / "leaderboards" / name).stat().st_size > 0
    table = pd.read_csv(out / "leaderboards" / "ald_stepsize.csv")
    assert len(table) == len(rows) and (table["n_seeds"] == 1).all()
    assert (out / "figures" / "ald_stepsize" / "test_loglik_ais.png").stat().st_size > 1000
    again = bench_cli("sweep", "ald_stepsize", "--budget", "smoke", "--results", out, "--dataset", "mnist")
    assert again.returncode == 0 and " seed=" not in again.stdout  # nothing left to train
    assert len(store.read_rows(out, "ald_stepsize", dedupe=False)) == len(rows)


def test_every_committed_spec_loads_and_has_three_budgets():
    names = sweep.spec_names()
    for required in ("ald_stepsize", "chain_count", "latent_dim", "encoder_depth", "ald_stepsize_tune"):
        assert required in names
    for name in names:
        spec = sweep.load_spec(name)
        assert set(spec.budgets) == set(sweep.BUDGETS)
        assert len(spec.budget("default").seeds) >= 3 or spec.kind == "tune"
        if spec.kind == "grid" and spec.trial != "classifier":  # the classifier sweep: LAE and VAE DLVMs
            models = {m["model"] for m in spec.models}
            assert {"lae", "vae", "iwae", "lvae"} <= models, name
    chain = sweep.load_spec("chain_count")
    matched = [p for p in chain.points(chain.budget("default")) if p.model == "iwae"]
    assert [p.overrides["k"] for p in matched] == list(chain.values)  # IWAE with k = n_chains


def test_grid_sweep_records_every_point_once_and_a_divergence_as_failed(tiny_spec, tmp_path):
    """A huge unadjusted step makes LAE diverge (a runaway or non-finite loss): that trial is 'fail' with its reason,
    the rest run."""
    spec = tiny_spec(values=(1e-4, 1e2), mh=False)
    summary = sweep.run_sweep(str(spec), "smoke", results=tmp_path / "r", progress=False)
    rows = store.read_rows(tmp_path / "r", "tiny")
    assert set(rows["params"]) == grid_keys(spec) and len(rows) == 6
    bad = rows[rows["step_size"] == 1e2]
    assert (bad["status"] == "fail").all() and bad["error"].str.startswith("diverged: ").all()
    assert (rows[rows["step_size"] != 1e2]["status"] == "complete").all()
    assert summary["trials"] == {"complete": 4, "fail": 2}
    again = sweep.run_sweep(str(spec), "smoke", results=tmp_path / "r", progress=False)  # a failure is final
    assert again["trials"] == summary["trials"]


def test_tuning_sweep_uses_tpe_and_reports_each_epoch(tmp_path):
    spec_path = tmp_path / "tune.toml"
    spec_path.write_text("""
description = "tune test"
kind = "tune"
dataset = "digits"
[search.step_size]
low = 1e-6
high = 1e-2
log = true
[pruner]
n_startup_trials = 2
n_warmup_steps = 0
[fixed]
hidden = 64
batch_size = 50
latent_dim = 4
[[models]]
model = "lae"
[budget.smoke]
train_size = 300
val_size = 100
epochs = 2
seeds = 1
n_trials = 4
metrics = "smoke"
[budget.default]
epochs = 2
seeds = 1
n_trials = 4
metrics = "smoke"
[budget.full]
epochs = 2
seeds = 1
n_trials = 4
metrics = "smoke"
""")
    summary = sweep.run_sweep(str(spec_path), "smoke", results=tmp_path / "r", progress=False)
    assert sum(summary["trials"].values()) == 4
    study = optuna.load_study(
        study_name="tune.smoke.digits", storage=sweep.open_storage(sweep.default_storage(tmp_path / "r", "tune"))
    )
    for t in study.trials:
        assert t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        assert 1 <= len(t.intermediate_values) <= 2 and 1e-6 <= t.params["step_size"] <= 1e-2
    rows = store.read_rows(tmp_path / "r", "tune")
    assert len(rows) == 4 and set(rows["status"]) <= {"complete", "pruned"}
    assert rows["step_size"].nunique() == 4


# ------------------------------------------------------------------------------------------------------ bad input
def _one_line_error(run):
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, run.stderr
    return lines[0]


def test_unknown_sweep_lists_the_known_ones(tmp_path):
    line = _one_line_error(bench_cli("sweep", "no_such_sweep", "--results", tmp_path))
    assert "no_such_sweep" in line and "ald_stepsize" in line and "chain_count" in line


def test_malformed_spec_names_file_and_line(tmp_path, tiny_spec):
    path = tiny_spec()
    text = path.read_text().splitlines()
    assert text[4].startswith("dataset =")
    text[4] = "dataset = digits"  # line 5: an unquoted string
    path.write_text("\n".join(text))
    line = _one_line_error(bench_cli("sweep", path, "--results", tmp_path / "r"))
    assert str(path) in line and "line 5" in line
    assert not (tmp_path / "r" / "parquet").exists()


@pytest.mark.parametrize(
    "edit, expect",
    [
        (("epochs = 1", "epochs = 0"), "budget.smoke.epochs"),
        (("values = [0.0001, 0.001]", "values = [0.0001, -1.0]"), "step_size must be a positive finite number"),
        (("hidden = 64", "hidden = 64\nwidth = 3"), "fixed.width"),
        (('metrics = "smoke"', "metrics = 3"), "budget.smoke.metrics"),
    ],
)
def test_invalid_values_are_rejected_before_training(tmp_path, tiny_spec, edit, expect):
    path = tiny_spec()
    path.write_text(path.read_text().replace(*edit, 1))
    line = _one_line_error(bench_cli("sweep", path, "--results", tmp_path / "r"))
    assert expect in line and str(path) in line
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written


def test_unreachable_storage_is_one_line_without_the_password(tmp_path, tiny_spec):
    url = "postgresql://lae:s3cretPW@127.0.0.1:9/nowhere"  # psycopg 3, SQLAlchemy 2.1's driver for postgresql://
    run = bench_cli("sweep", tiny_spec(), "--storage", url, "--results", tmp_path / "r", timeout=120)
    line = _one_line_error(run)
    assert "cannot open storage" in line and "s3cretPW" not in run.stderr + run.stdout and "***" in line


def test_bad_workers_and_budget_are_rejected(tmp_path, tiny_spec):
    assert "--workers" in _one_line_error(bench_cli("sweep", tiny_spec(), "--workers", "0", "--results", tmp_path))
    assert "--budget" in _one_line_error(bench_cli("sweep", "ald_stepsize", "--budget", "huge"))
    with pytest.raises(BenchError, match="no budget"):
        sweep.load_spec("ald_stepsize").budget("tiny")


def test_list_shows_axes_and_budgets():
    run = bench_cli("list")
    assert run.returncode == 0, run.stderr
    for text in (
        "ald_stepsize",
        "chain_count",
        "latent_dim",
        "encoder_depth",
        "ald_stepsize_tune",
        "step_size in",
        "n_chains in",
        "smoke:",
        "default:",
        "full:",
        "iwae k=n_chains (k follows)",
    ):
        assert text in run.stdout, text


def test_study_params_are_the_grid(tiny_spec, tmp_path):
    """Optuna's view: one COMPLETE trial per (point, seed), sampled by GridSampler."""
    spec = tiny_spec()
    sweep.run_sweep(str(spec), "smoke", results=tmp_path / "r", progress=False)
    study = optuna.load_study(
        study_name="tiny.smoke.digits", storage=sweep.open_storage(sweep.default_storage(tmp_path / "r", "tiny"))
    )
    complete = [json.dumps(t.params, sort_keys=True) for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(complete) == sorted(grid_keys(spec))  # each grid point complete exactly once
    assert len(study.trials) == len(complete)  # nothing asked twice, nothing left waiting
    assert all(t.user_attrs["lae:pid"] > 0 and t.user_attrs["lae:host"] for t in study.trials)  # each one claimed
    assert os.path.exists(tmp_path / "r" / "optuna" / "tiny.journal")


def test_a_grown_grid_resumes_and_runs_only_its_new_trials(tiny_spec, tmp_path):
    """Seeds and a value added to a spec after it ran (issue 23 added seeds 3 and 4): Optuna cannot resume the old
    study with other choices for `point` and `seed`, so the grid gets its own study in the same journal; the rows keep
    the study's name, and only the new (point, seed) pairs are trained."""
    results = tmp_path / "r"
    sweep.run_sweep(str(tiny_spec(values=(1e-4,), seeds=1)), "smoke", results=results, progress=False)
    before = store.read_rows(results, "tiny")
    assert len(before) == 2  # lae at 1e-4 and vae, seed 0
    grown = tiny_spec(values=(1e-4, 1e-3), seeds=2)
    sweep.run_sweep(str(grown), "smoke", results=results, progress=False)
    rows = store.read_rows(results, "tiny")
    assert sorted(rows["params"]) == sorted(grid_keys(grown))  # 6 rows: every (point, seed) once
    assert set(rows["study"]) == {"tiny.smoke.digits"}
    kept = rows.merge(before, on="params", suffixes=("", "_old"))
    assert len(kept) == 2 and (kept["timestamp"] == kept["timestamp_old"]).all()  # the first two not retrained
    storage = sweep.open_storage(sweep.default_storage(results, "tiny"))
    names = optuna.study.get_all_study_names(storage)
    assert len(names) == 2 and names[0] == "tiny.smoke.digits" and names[1].startswith("tiny.smoke.digits@")
    assert len(optuna.load_study(study_name=names[1], storage=storage).trials) == 4  # the new trials only


def test_reproduce_regenerates_identical_numbers(tiny_spec, tmp_path):
    """Same seeds, machine and thread count: every deterministic metric of a rerun equals the recorded one."""
    spec = tiny_spec(seeds=1)
    first = bench_cli("sweep", spec, "--results", tmp_path / "r", "--no-leaderboard", "--threads", "1")
    assert first.returncode == 0, first.stderr
    run = bench_cli("sweep", spec, "--results", tmp_path / "r", "--reproduce", "--no-progress")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 of 3 committed trials regenerated" in run.stdout and "with 1 thread(s)" in run.stdout
    verdicts = {ln.split()[0]: ln for ln in run.stdout.splitlines() if ln.startswith(("test_", "val_", "probe"))}
    assert verdicts["test_loglik_ais"].endswith("match") and verdicts["val_loss"].endswith("match")
    assert "timing" in next(ln for ln in run.stdout.splitlines() if ln.startswith("train_seconds"))


def test_impossible_data_sizes_are_one_line_before_any_worker_starts(tmp_path):
    line = _one_line_error(bench_cli("sweep", "ald_stepsize", "--dataset", "digits", "--results", tmp_path / "r"))
    assert "train_size=2000" in line
    assert not (tmp_path / "r").exists()


def test_first_runs_the_named_points_before_the_others(tiny_spec, tmp_path):
    """--first: the VAE's seeds, then the LAE point at step 1e-3, then the rest (one worker: trial order is run order);
    a name that selects no point, or a tuning sweep, is one line before anything trains."""
    spec = tiny_spec()
    sweep.run_sweep(str(spec), "smoke", results=tmp_path / "r", progress=False, first=("vae", "lae step_size=0.001"))
    study = optuna.load_study(
        study_name="tiny.smoke.digits", storage=sweep.open_storage(sweep.default_storage(tmp_path / "r", "tiny"))
    )
    order = [t.params["point"] for t in sorted(study.trials, key=lambda t: t.number)]
    assert order == ["vae"] * 2 + ["lae step_size=0.001"] * 2 + ["lae step_size=0.0001"] * 2
    line = _one_line_error(bench_cli("sweep", spec, "--first", "vae,nope", "--results", tmp_path / "s"))
    assert "--first 'nope' names no point of tiny" in line and "lae step_size=0.0001, lae step_size=0.001, vae" in line
    assert not (tmp_path / "s").exists()
    line = _one_line_error(bench_cli("sweep", "ald_stepsize_tune", "--first", "lae", "--results", tmp_path / "s"))
    assert "tuning sweep" in line
