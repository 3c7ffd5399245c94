"""The metrics of bench.metrics and `python -m bench evaluate`: the linear probe scores what a linear
classifier can score, the attacks respect their threat model and behave like attacks, the record
has exactly the documented names, and the CLI fails in one line on bad checkpoints."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.metrics import GROUPS, METRIC_NAMES, METRICS, MetricSettings, compute_metrics
from bench.metrics.adversarial import accuracy, attack
from bench.metrics.probe import features, fit_probe, probe_accuracy, train_probe
from bench.registry import ADV_EPS
from lae import data
from lae.config import RunConfig
from lae.train import fit, new_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
NEEDS_MNIST = pytest.mark.skipif(not os.environ.get("LAE_BENCH_DATA"), reason="LAE_BENCH_DATA not set (real MNIST)")
ADV_TOL = 0.02  # accuracy noise allowed between attacks / radii (200 images: 4 images)


pytestmark = pytest.mark.usefixtures("one_thread")


def _expected_names(groups):
    return {n for n in METRIC_NAMES if METRICS[n].group in groups or METRICS[n].group == "meta"}


def test_metric_names_are_flat_documented_and_cover_every_radius():
    assert len(set(METRIC_NAMES)) == len(METRIC_NAMES)
    for name in (
        "test_loglik_ais",
        "test_loglik_is",
        "test_elbo",
        "test_bpd_ais",
        "probe_acc",
        "gen_samples_per_s",
        "posterior_samples_per_s",
        "adv_acc_clean",
        "adv_acc_fgsm_0.1",
        "adv_acc_pgd_0.3",
        "eval_threads",
        "eval_seconds",
    ):
        assert name in METRIC_NAMES
    for attack_name in ("fgsm", "pgd"):
        for eps in ADV_EPS:
            assert f"adv_acc_{attack_name}_{eps:g}" in METRIC_NAMES
    assert all(" " not in n and METRICS[n].meaning for n in METRIC_NAMES)
    assert {MetricSettings.preset(p).pgd_steps for p in MetricSettings.PRESETS} == {40}


def test_probe_scores_near_100_percent_on_a_linearly_separable_representation():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (3000,), generator=gen)
    centers = 5.0 * torch.randn(10, 8, generator=gen)  # class means far apart relative to the unit noise
    f = centers[y] + torch.randn(3000, 8, generator=gen)
    probe = fit_probe(f[:2000], y[:2000])
    assert probe_accuracy(probe, f[2000:], y[2000:]) > 0.98
    # and chance on a representation that carries no label information
    noise = fit_probe(torch.randn(2000, 8, generator=gen), y[:2000])
    assert probe_accuracy(noise, torch.randn(1000, 8, generator=gen), y[2000:]) < 0.2


# ------------------------------------------------------------------------------- a small MNIST model
@pytest.fixture(scope="module")
def mnist_vae():
    if not os.environ.get("LAE_BENCH_DATA"):
        pytest.skip("LAE_BENCH_DATA not set (real MNIST)")
    config = RunConfig(
        model="vae", dataset="mnist", latent_dim=8, hidden=128, epochs=3, train_size=10_000, device="cpu", seed=0
    )
    ds = data.load("mnist", "dynamic", train_size=10_000, test_size=1000)
    return fit(config, ds).model.eval(), config, ds


def test_trained_encoder_beats_an_untrained_one_on_mnist(mnist_vae):
    model, config, ds = mnist_vae
    settings = MetricSettings.preset("smoke").replace(probe_train_size=3000)
    untrained = new_model(config, ds.n_pixels, torch.device("cpu")).eval()
    acc = {}
    for name, m in (("trained", model), ("untrained", untrained)):
        out = compute_metrics(m, config, ds, ["probe"], settings)
        acc[name] = out["probe_acc"]
    assert acc["trained"] > acc["untrained"] + 0.05, acc
    assert acc["trained"] > 0.6, acc


def test_attacks_stay_in_the_ball_and_in_range_and_eps_0_is_clean(mnist_vae):
    model, config, ds = mnist_vae
    probe = train_probe(model, ds, MetricSettings.preset("smoke"))
    clf = probe.classifier(model).eval()
    x, y = ds.test.x[:200], ds.test.y[:200]
    clean = accuracy(clf, x, y)
    # the torch classifier is the sklearn probe: same accuracy on the same images
    assert clean == pytest.approx(probe_accuracy(probe, features(model, x), y), abs=1e-9)
    for kind in ("fgsm", "pgd"):
        assert accuracy(clf, attack(clf, x, y, kind, 0.0), y) == pytest.approx(clean, abs=1e-9)
        for eps in (0.05, 0.3):
            adv = attack(clf, x, y, kind, eps, pgd_steps=40)
            assert (adv - x).abs().max().item() <= eps + 1e-6
            assert adv.min().item() >= 0.0 and adv.max().item() <= 1.0
            assert (adv - x).abs().max().item() > 0.5 * eps  # it did move


def test_adversarial_accuracy_falls_with_eps_and_pgd_is_at_least_as_strong_as_fgsm(mnist_vae):
    model, config, ds = mnist_vae
    settings = MetricSettings.preset("smoke").replace(adv_subset=200, probe_train_size=3000)
    out = compute_metrics(model, config, ds, ["adversarial"], settings)
    assert set(out) == _expected_names({"adversarial"})
    for kind in ("fgsm", "pgd"):
        accs = [out["adv_acc_clean"]] + [out[f"adv_acc_{kind}_{e:g}"] for e in ADV_EPS]
        assert all(b <= a + ADV_TOL for a, b in zip(accs, accs[1:])), (kind, accs)
    for e in ADV_EPS:
        assert out[f"adv_acc_pgd_{e:g}"] <= out[f"adv_acc_fgsm_{e:g}"] + ADV_TOL, out
    assert out["adv_acc_clean"] > 0.7 and out["adv_acc_pgd_0.3"] < out["adv_acc_clean"] - 0.3


# ------------------------------------------------------------------------- the record, on digits
@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    config = RunConfig(model="vae", dataset="digits", latent_dim=4, hidden=32, epochs=2, device="cpu", seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save_checkpoint(fit(config), path)
    return path


@pytest.mark.parametrize("kind,preprocessing", [("vae", "dynamic"), ("lae", "8bit")])
def test_smoke_record_has_exactly_the_documented_names(kind, preprocessing):
    config = RunConfig(
        model=kind,
        dataset="digits",
        preprocessing=preprocessing,
        latent_dim=4,
        hidden=32,
        epochs=1,
        device="cpu",
        seed=0,
        batch_size=50,
        step_size=1e-4,
    )
    ds = data.load("digits", preprocessing)
    model = fit(config, ds).model
    out = compute_metrics(model, config, ds, None, MetricSettings.preset("smoke"), torch.Generator().manual_seed(0))
    assert set(out) == _expected_names(set(GROUPS))
    assert all(type(v) is float for v in out.values())
    assert model.training  # the caller's mode is restored
    assert out["test_images"] == 100 and out["eval_threads"] == torch.get_num_threads()
    assert out["test_loglik_ais"] < 0 and math.isfinite(out["test_loglik_is"])
    assert out["gen_samples_per_s"] > 0 and out["posterior_samples_per_s"] > 0
    if kind == "lae":
        assert math.isnan(out["test_elbo"])
    else:
        assert out["test_elbo"] <= out["test_loglik_is"] + 1.0  # a bound, up to its single-sample noise
    if preprocessing == "8bit":
        assert out["test_bpd_ais"] == pytest.approx(-out["test_loglik_ais"] / (64 * math.log(2)))
    else:
        assert math.isnan(out["test_bpd_ais"]) and math.isnan(out["test_bpd_is"])


def _cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "bench", "evaluate", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_one_line_error(proc):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_corrupt_and_wrong_dataset_checkpoints_fail_in_one_line(tmp_path, digits_checkpoint):
    _assert_one_line_error(_cli(tmp_path / "nope.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    _assert_one_line_error(_cli(garbage))
    proc = _cli(digits_checkpoint, "--dataset", "mnist")
    _assert_one_line_error(proc)
    assert "digits" in proc.stderr


def test_cli_writes_json_with_the_documented_keys(tmp_path, digits_checkpoint):
    out = tmp_path / "metrics.json"
    proc = _cli(
        digits_checkpoint,
        "--preset",
        "smoke",
        "--metrics",
        "loglik,probe",
        "--subset",
        "50",
        "--out",
        out,
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert set(record["metrics"]) == _expected_names({"loglik", "probe"})
    assert set(record["units"]) == set(record["metrics"])
    assert record["metrics"]["test_images"] == 50 and record["metrics"]["test_bpd_ais"] is None
    assert "test_loglik_ais" in proc.stdout and "nats per image" in proc.stdout
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert record["provenance"]["git_commit"].removesuffix("+dirty") == (head or "unknown")
    assert record["provenance"]["torch_version"] == torch.__version__ and record["provenance"]["machine"]
