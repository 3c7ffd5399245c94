"""`python -m bench train` as a user runs it: outputs on success, one line and exit 2 on bad input."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from lae.config import RunConfig


def bench(*args, cwd=None, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def test_train_writes_checkpoint_and_summary(tmp_path):
    out = tmp_path / "run"
    r = bench(
        "train",
        "--model",
        "lae",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--hidden",
        "64",
        "--batch-size",
        "50",
        "--out",
        str(out),
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert str(out / "checkpoint.pt") in r.stdout and str(out / "summary.json") in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["model"] == "lae" and len(summary["val_loss"]) == 3
    assert summary["val_loss"][-1] < summary["val_loss"][0]
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    assert set(blob) == {"format", "config", "state_dict"} and "phi" in blob["state_dict"]


@pytest.mark.parametrize(
    "args",
    [
        ["--step-size", "-1"],
        ["--latent-dim", "0"],
        ["--model", "gan"],
        ["--dataset", "cifar"],
        ["--n-chains", "0"],
        ["--epochs", "abc"],
        ["--lr", "inf"],
        ["--preprocessing", "float"],
    ],
)
def test_invalid_values_exit_2_with_one_line_and_write_nothing(tmp_path, args):
    out = tmp_path / "run"
    r = bench("train", "--dataset", "digits", "--out", str(out), *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.stderr
    assert not out.exists()


def test_divergence_is_one_line(tmp_path):
    r = bench(
        "train",
        "--model",
        "lae",
        "--dataset",
        "digits",
        "--hidden",
        "64",
        "--batch-size",
        "50",
        "--step-size",
        "1e4",
        "--no-mh",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert r.returncode == 3
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "diverged" in r.stderr


def test_missing_data_is_one_line(tmp_path):
    r = bench("train", "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "LAE_BENCH_DATA" in r.stderr and "train-images-idx3-ubyte" in r.stderr


def test_help_documents_every_option():
    r = bench("train", "--help")
    assert r.returncode == 0
    for f in dataclasses.fields(RunConfig):
        assert "--" + f.name.replace("_", "-") in r.stdout
    assert "--out" in r.stdout and "--device" in r.stdout


def test_unknown_command_is_one_line():
    r = bench("frobnicate")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_sweeps_are_found_from_the_project_root_not_the_install_location(tmp_path):
    """An installed package (tox, pip install .) reads sweeps/ from LAE_BENCH_ROOT or the working directory."""
    import os
    import shutil
    from pathlib import Path

    checkout = Path(__file__).resolve().parents[1]
    root = tmp_path / "checkout"
    (root / "sweeps").mkdir(parents=True)
    shutil.copy(checkout / "sweeps" / "chain_count.toml", root / "sweeps" / "mine.toml")
    env = {
        **os.environ,
        "LAE_BENCH_ROOT": str(root),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")])),
    }
    r = bench("list", cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("mine:") and "ald_stepsize" not in r.stdout
    env["LAE_BENCH_ROOT"] = str(tmp_path / "empty")
    r = bench("sweep", "mine", cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "LAE_BENCH_ROOT" in r.stderr
