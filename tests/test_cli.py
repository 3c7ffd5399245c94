"""`python -m bench train` as a user runs it: outputs on success, one line and exit 2 on bad input."""

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys

import pytest
import torch
from conftest import terminal_sigint

from lae.config import RunConfig


def bench(*args, cwd=None, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


@pytest.fixture(scope="module")
def lae_run(tmp_path_factory):
    """`train` of an adapted LAE on digits (2 epochs), as a user runs it: (CompletedProcess, run directory)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    small = ["--dataset", "digits", "--epochs", "2", "--hidden", "64", "--batch-size", "50"]
    r = bench("train", "--model", "lae", *small, "--target-accept", "0.5", "--out", str(out), "--no-progress")
    return r, out


def test_train_writes_checkpoint_and_summary_with_the_chains_health(lae_run):
    r, out = lae_run
    assert r.returncode == 0, r.stderr
    assert str(out / "checkpoint.pt") in r.stdout and str(out / "summary.json") in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["model"] == "lae" and len(summary["val_loss"]) == 3
    assert summary["val_loss"][-1] < summary["val_loss"][0]
    assert len(summary["accept"]) == len(summary["step_size"]) == 2  # per epoch
    step = summary["step_size"][-1]
    assert step != 1e-4 and f"step size {step:.3g} (adapted toward 0.5)" in r.stdout
    assert f"MH acceptance {summary['accept'][-1]:.2f} in the last epoch" in r.stdout
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    assert set(blob) == {"format", "config", "n_pixels", "state_dict"} and "phi" in blob["state_dict"]
    assert blob["n_pixels"] == 64  # digits: 8 x 8
    assert blob["state_dict"]["log_step_size"].exp().item() == pytest.approx(step)


def test_evaluate_defaults_to_the_default_preset_and_reports_health_and_an_estimate_first(lae_run):
    _, out = lae_run
    r = bench("evaluate", str(out / "checkpoint.pt"), "--metrics", "loglik,probe", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "preset default" in r.stdout and "test_loglik_ais" in r.stdout
    chain, estimate = r.stderr.strip().splitlines()  # both before the work, on stderr
    step = math.exp(torch.load(out / "checkpoint.pt", weights_only=True)["state_dict"]["log_step_size"].item())
    assert chain.startswith(f"chain: step size {step:.3g} (adapted toward 0.5), MH acceptance ")
    assert "test images (" in chain and "in the last training epoch)" in chain
    seconds = float(re.search(r"estimated time: about ([0-9.]+) s", estimate)[1])
    measured = float(re.search(r"eval_seconds +([0-9.]+)", r.stdout)[1])
    assert measured / 10 < seconds < measured * 10, (estimate, measured)  # a measured rate, not a constant


def test_evaluate_settings_override_the_preset_and_are_recorded(lae_run, tmp_path):
    """--setting: a longer AIS (and no BDMC) than the smoke preset's, recorded in --out; the bound changes with it."""
    _, out = lae_run
    common = [str(out / "checkpoint.pt"), "--preset", "smoke", "--metrics", "loglik", "--no-progress"]
    runs = {}
    for n in (20, 200):
        path = tmp_path / f"ais{n}.json"
        settings = ["--setting", f"ais_intermediate={n}", "--setting", "bdmc_images=0"]
        r = bench("evaluate", *common, *settings, "--out", str(path))
        assert r.returncode == 0, r.stderr
        runs[n] = json.loads(path.read_text())
        assert runs[n]["settings"]["ais_intermediate"] == n and runs[n]["settings"]["bdmc_images"] == 0
        assert runs[n]["settings"]["subset"] == 100 and runs[n]["metrics"]["bdmc_gap"] is None  # the rest: smoke's
    assert runs[200]["metrics"]["test_loglik_ais"] != runs[20]["metrics"]["test_loglik_ais"]


def test_a_stuck_chain_is_one_warning_line(tmp_path):
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
        "--epochs",
        "2",
        "--step-size",
        "1e4",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    (line,) = r.stderr.strip().splitlines()  # two stuck epochs, one line
    assert line.startswith("warning: lae epoch 1: mean MH acceptance 0.000") and "--target-accept 0.5" in line


def test_negative_numbers_reach_the_suites_own_validation(tmp_path):
    """argparse alone reads "-1e-4" as an option ("expected one argument")."""
    r = bench("train", "--dataset", "digits", "--step-size", "-1e-4", "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and not (tmp_path / "run").exists()
    assert r.stderr.strip() == "error: step_size must be a positive finite number up to 10000; got -0.0001"


def test_ctrl_c_says_what_happened_and_saves_nothing(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--hidden", "64", "--batch-size", "50", "--epochs", "10000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *args, "--out", str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=terminal_sigint,
    )
    seen = b""
    while b"epoch 1/10000" not in seen:  # the progress bar (stderr): training has started
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk, seen
        seen += chunk
    proc.send_signal(signal.SIGINT)
    try:
        _, rest = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, rest = proc.communicate()
        rest += b"\n(still running 180 s after Ctrl-C)"
    last = re.split(rb"[\r\n]+", (seen + rest).strip())[-1].decode()  # the progress bar redraws with \r
    assert proc.returncode == 130 and "error: interrupted; nothing was saved" in last, (seen + rest).decode()
    assert not (out / "checkpoint.pt").exists()


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
