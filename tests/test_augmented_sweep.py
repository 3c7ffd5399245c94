"""The augmented-classifier sweep end to end on real MNIST (`python -m bench sweep augmented_classifier --budget
smoke`, two workers), its DLVM cache across trials, its leaderboard, and bad specs (one line, exit status 2)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from conftest import ROOT, bench_cli

from bench import sweep
from bench.errors import BenchError
from bench.registry import APGD_EPS, clf_name
from bench.results import store

SPEC = (ROOT / "sweeps" / "augmented_classifier.toml").read_text()


@pytest.mark.slow
def test_smoke_sweep_end_to_end_trains_each_dlvm_once(tmp_path):
    """Every point of the smoke grid (N = 0; LAE and VAE at N = 2 and 5) gets one complete row with its metrics; each
    DLVM is trained by exactly one trial and loaded by the other (two workers share the cache); the leaderboard shows
    the course project's Tables 7 and 8; a second run trains nothing."""
    out = tmp_path / "results"
    run = bench_cli("sweep", "augmented_classifier", "--budget", "smoke", "--results", out, "--workers", "2")
    assert run.returncode == 0, run.stderr
    rows = store.read_rows(out, "augmented_classifier")
    spec = sweep.load_spec("augmented_classifier")
    budget = spec.budget("smoke")
    assert sorted(rows["point"]) == sorted(p.label for p in spec.points(budget)) and len(rows) == 5
    assert (rows["status"] == "complete").all(), rows[["point", "error"]]
    eps = budget.metric_settings["adv_eps"]
    metrics = ["clf_test_acc", "clf_acc_clean"] + [clf_name(a, e) for a in ("fgsm", "pgd") for e in eps]
    metrics += [clf_name("apgd", e) for e in APGD_EPS]
    assert rows[metrics].map(lambda v: 0 <= v <= 1).all().all()
    assert rows["clf_images_seen"].tolist() == [1000 * (1 + n) for n in rows["n_augment"]]
    plain, dlvm = rows[rows["n_augment"] == 0], rows[rows["n_augment"] > 0]
    assert list(plain["model"]) == ["none"] and plain["dlvm_hash"].isna().all() and plain["val_loss"].isna().all()
    for family, g in dlvm.groupby("model"):
        assert sorted(g["dlvm_source"]) == ["cache", "trained"], family  # trained once, reused once
        assert g["dlvm_hash"].nunique() == 1 and g["val_loss"].map(math.isfinite).all()
    lae_rows = dlvm[dlvm["model"] == "lae"]  # what its chain did, as in a latent trial's row
    assert lae_rows["mh_accept"].between(0, 1).all() and (lae_rows["final_step_size"] > 0).all()
    assert (lae_rows["phi_msjd"] >= 0).all() and dlvm[dlvm["model"] != "lae"]["phi_msjd"].isna().all()
    assert sorted(p.name for p in (out / "dlvm").glob("*.pt")) == sorted(
        f"{m}-{h}.pt" for m, h in dlvm.groupby("model")["dlvm_hash"].first().items()
    )
    board = (out / "leaderboards" / "augmented_classifier.md").read_text()
    assert "95.66" in board and "70.85" in board  # the course project's Table 7 and Table 8 beside ours
    cost = board.split("## The DLVMs and the cost")[1].split("\n## ")[0]
    assert "| MH accept | ALD step at the end | Phi jump per step |" in cost
    lae_line = next(line for line in cost.splitlines() if line.startswith("| lae | 2 |"))
    assert float(lae_line.split(" | ")[4]) == pytest.approx(lae_rows["final_step_size"].mean(), rel=1e-2)
    table = pd.read_csv(out / "leaderboards" / "augmented_classifier.csv")
    assert len(table) == 5 and (table["n_seeds"] == 1).all()
    # by N, the plain CNN first, then the DLVMs by name, whichever trial finished first
    assert list(zip(table["axis_value"], table["variant"])) == [
        (0, "none"),
        (2, "lae"),
        (2, "vae"),
        (5, "lae"),
        (5, "vae"),
    ]
    assert (out / "figures" / "augmented_classifier" / "robustness.png").stat().st_size > 1000
    again = bench_cli("sweep", "augmented_classifier", "--budget", "smoke", "--results", out)
    assert again.returncode == 0 and " seed=" not in again.stdout  # nothing left to train
    assert len(store.read_rows(out, "augmented_classifier", dedupe=False)) == 5


BAD = [
    ('trial = "classifier"', 'trial = "classify"', "trial: must be one of latent, classifier"),
    ('trial = "classifier"', 'trial = "classifier"\nkind = "tune"', "a classifier sweep is a grid"),
    ("values = [0, 2, 5]", "values = [0, 2.5]", "n_augment values must be non-negative integers"),
    ("lr = 1e-4\n", "lr = -1e-4\n", "classifier.lr: lr must be a positive finite number"),
    ("lr = 1e-4\n", "lr = 1e-4\nmomentum = 0.9\n", "classifier.momentum: unknown setting"),
    ("batch_size = 128  # =", "batch_size = 100  # =", "ALD's step size is tied to its batch size"),
    ('dataset = "mnist"', 'dataset = "digits"', "the CNN takes 28 x 28 images"),
    ("adv_eps = [0.1, 0.3]", "adv_eps = [0.1, 0.15]", "the classifier's radii are among"),
    ('axis = "n_augment"', 'axis = "latent_dim"', 'a classifier sweep varies n_augment: axis = "n_augment"'),
]


@pytest.mark.parametrize(("old", "new", "why"), BAD, ids=[b[2].split(":")[0][:30] for b in BAD])
def test_bad_classifier_spec_is_one_error_naming_the_key(tmp_path, old, new, why):
    assert old in SPEC
    path = tmp_path / "bad.toml"
    path.write_text(SPEC.replace(old, new, 1))
    with pytest.raises(BenchError) as info:
        sweep.load_spec(str(path))
    assert why in str(info.value) and str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_bad_classifier_spec_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    """Nothing trains and nothing is written: one `error:` line on stderr, exit status 2."""
    path = tmp_path / "bad.toml"
    path.write_text(SPEC.replace("lr = 1e-4\n", "lr = 0\n", 1))
    run = bench_cli("sweep", path, "--budget", "smoke", "--results", tmp_path / "r")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ") and "lr must be a positive" in run.stderr
    assert not (tmp_path / "r" / "parquet").exists()
    latent = (ROOT / "sweeps" / "ald_stepsize.toml").read_text() + "\n[classifier]\nlr = 1e-4\n"
    with pytest.raises(BenchError, match='only a sweep with trial = "classifier" has a'):
        (tmp_path / "latent.toml").write_text(latent)
        sweep.load_spec(str(tmp_path / "latent.toml"))
