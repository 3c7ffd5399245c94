"""Families and datasets from other packages: the example VampPrior package (examples/vampprior) installed into a
scratch folder and run through the real CLI (train, evaluate, a smoke sweep, the leaderboard, the conformance kit);
a dataset plugin; the built-in npz dataset and its one-line errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lae import data
from lae.config import ConfigError, RunConfig

ROOT = Path(__file__).resolve().parents[1]
TINY_SETTINGS = (
    "subset = 50, ais_intermediate = 10, ais_chains = 2, is_samples = 20, probe_train_size = 300, probe_max_iter = 50,"
    " adv_subset = 50, pgd_steps = 5, speed_repeats = 1, gen_batch = 50, speed_posterior_samples = 2"
)
SPEC = f"""
description = "VampPrior (a plugin family) on 8x8 digits"
axis = "n_steps"
values = [2]
dataset = "digits"

[fixed]
latent_dim = 4
hidden = 32
batch_size = 50

[[models]]
model = "vampprior"

[budget.smoke]
train_size = 300
val_size = 100
epochs = 1
seeds = 1
metrics = "smoke"
metric_settings = {{ {TINY_SETTINGS} }}
[budget.default]
epochs = 1
seeds = 1
metrics = "smoke"
[budget.full]
epochs = 1
seeds = 1
metrics = "smoke"
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """examples/vampprior installed (pip, no dependencies, no build isolation) into a scratch folder, plus a dataset
    plugin package written here: the folder to put on PYTHONPATH."""
    scratch = tmp_path_factory.mktemp("plugins")
    source = scratch / "src"
    shutil.copytree(ROOT / "examples" / "vampprior", source)  # pip builds in the source tree: keep the repo clean
    target = scratch / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target)]
    subprocess.run([*pip, str(source)], check=True, capture_output=True, timeout=300)
    dist = target / "tiny_images-0.1.dist-info"  # a dataset plugin by hand: a module and its entry point
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-images\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lae_bench.datasets]\ntiny = tiny_images:read\nbroken = tiny_images:nope\n")
    (target / "tiny_images.py").write_text(
        textwrap.dedent(
            """
            import numpy as np

            def read(root, download):
                g = np.random.default_rng(0)
                x = (g.random((130, 6, 6)) < np.linspace(0.1, 0.9, 36).reshape(6, 6)).astype(np.uint8) * 255
                y = np.arange(130) % 3
                return x[:100], y[:100], x[100:], y[100:]
            """
        )
    )
    return target


def cli(site: Path, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    return subprocess.run(
        [sys.executable, "-m", "bench", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_an_installed_family_trains_evaluates_sweeps_and_ranks(site, tmp_path):
    run = cli(site, "train", "--model", "vampprior", "--dataset", "digits", "--latent-dim", "4", "--hidden", "32",
              "--epochs", "2", "--batch-size", "50", "--out", tmp_path / "run", "--no-progress")  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["model"] == "vampprior"
    assert summary["val_loss"][-1] < summary["val_loss"][0]  # it learns
    run = cli(site, "evaluate", tmp_path / "run" / "checkpoint.pt", "--preset", "smoke", "--metrics", "loglik",
              "--out", tmp_path / "eval.json", "--no-progress")  # fmt: skip
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "eval.json").read_text())
    flat = json.dumps(metrics)
    assert "test_loglik_ais" in flat and "test_elbo" in flat

    spec = tmp_path / "vamp_smoke.toml"
    spec.write_text(SPEC)
    results = tmp_path / "results"
    run = cli(site, "sweep", spec, "--budget", "smoke", "--results", results)
    assert run.returncode == 0, run.stderr
    from bench.results.store import read_rows

    rows = read_rows(results, "vamp_smoke")
    assert list(rows["model"]) == ["vampprior"] and set(rows["status"]) == {"complete"}
    vamp = rows[rows["model"] == "vampprior"].iloc[0]
    assert np.isfinite(vamp["test_loglik_ais"]) and vamp["test_loglik_ais"] < 0
    run = cli(site, "leaderboard", "--results", results, "--no-figures")
    assert run.returncode == 0, run.stderr
    board = (results / "leaderboards" / "vamp_smoke.md").read_text()
    assert "| vampprior |" in board and "test_loglik_ais" in board


def test_an_installed_family_passes_the_conformance_kit(site):
    run = cli(site, "conformance", "vampprior")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "vampprior: conforms" in run.stdout and "PASS  elbo" in run.stdout and "PASS  ais" in run.stdout


def test_a_dataset_plugin_is_a_dataset_choice_and_a_broken_one_one_warning(site, tmp_path):
    run = cli(site, "train", "--model", "vae", "--dataset", "tiny", "--latent-dim", "2", "--hidden", "16",
              "--batch-size", "20", "--out", tmp_path / "run", "--no-progress")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("warning: entry point 'broken'") == 1  # left out, once, in one line
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["config"]["dataset"] == "tiny"


# --------------------------------------------------------------------------------------------------------------- npz
def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_dataset_reads_the_users_arrays(tmp_path):
    g = np.random.default_rng(0)
    x_train, x_test = g.integers(0, 256, (60, 3, 4, 4), dtype=np.uint8), g.integers(0, 256, (7, 3, 4, 4), np.uint8)
    path = _npz(
        tmp_path / "mine.npz", x_train=x_train, x_test=x_test, y_train=np.arange(60) % 4, y_test=np.zeros(7, int)
    )
    ds = data.load(f"npz:{path}", "8bit", val_size=10)
    assert (ds.image_shape, ds.n_pixels, ds.n_classes) == ((3, 4, 4), 48, 4)
    assert [len(s) for s in (ds.train, ds.val, ds.test)] == [50, 10, 7]
    assert torch.equal(ds.train.x * 255, torch.from_numpy(x_train[:50].reshape(50, -1)).float())  # channels first
    assert torch.equal(ds.val.y, torch.arange(50, 60) % 4)
    unlabelled = data.load(f"npz:{_npz(tmp_path / 'x.npz', x_train=x_train[:, 0], x_test=x_test[:, 0])}")
    assert unlabelled.image_shape == (4, 4) and unlabelled.n_classes == 1 and len(unlabelled.val) == 6  # a tenth
    assert RunConfig(dataset=f"npz:{path}").validate().pixels == 784  # unknown before reading: the default


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x_test=np.zeros((2, 4, 4), np.uint8)), "no x_train array"),
        (dict(x_train=np.zeros((2, 4, 4)), x_test=np.zeros((2, 4, 4), np.uint8)), "x_train is float64"),
        (dict(x_train=np.zeros((2, 16), np.uint8), x_test=np.zeros((2, 16), np.uint8)), "expected uint8 (N, H, W)"),
        (dict(x_train=np.zeros((2, 4, 4), np.uint8), x_test=np.zeros((2, 5, 5), np.uint8)), "differ from x_test"),
        (dict(x_train=np.zeros((2, 4, 4), np.uint8), x_test=np.zeros((2, 4, 4), np.uint8), y_train=[0, 1]), "both"),
        (
            dict(
                x_train=np.zeros((2, 4, 4), np.uint8), x_test=np.zeros((2, 4, 4), np.uint8), y_train=[0], y_test=[0, 0]
            ),
            "y_train is int64 (1,); expected (2,)",
        ),
    ],
)
def test_npz_errors_are_one_line_naming_the_file(tmp_path, arrays, message):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(data.DataError, match=re.escape(message)) as info:
        data.load(f"npz:{path}")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_npz_missing_or_garbage_file_is_one_line(tmp_path):
    with pytest.raises(data.DataError, match="no such file"):
        data.load(f"npz:{tmp_path / 'absent.npz'}")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(data.DataError, match="not a readable .npz"):
        data.load(f"npz:{tmp_path / 'garbage.npz'}")
    with pytest.raises(ConfigError, match="unknown dataset 'cifar100'"):
        RunConfig(dataset="cifar100").validate()
