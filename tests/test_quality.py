"""The quality group (bench.metrics.quality) on known answers: the Frechet distance equals its closed form on
Gaussian statistics, precision/recall equal hand counts on a 1-D set, and on real MNIST with a real feature
classifier held-out training images score as the test set does (FD near 0, precision and recall near 1), noise
scores as badly as it gets, and a blend of the two moves monotonically between them. The classifier cache is a real
file: read back unchanged, keyed by content, replaced when corrupt. The group runs end to end through
compute_metrics and the CLI (an unwritable cache is one line and exit status 2)."""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import bench_cli

from bench.metrics import METRICS, MetricSettings, compute_metrics
from bench.metrics import quality as q
from lae import data
from lae.config import RunConfig
from lae.train import fit, new_model, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
NEEDS_MNIST = pytest.mark.skipif(not os.environ.get("LAE_BENCH_DATA"), reason="LAE_BENCH_DATA not set (real MNIST)")
N = 2000  # images per side in the MNIST checks
QUICK = {**q.CLASSIFIER, "epochs": 2, "min_steps": 0}  # cheaper, for the tests (its own cache key)
NAMES = {"gen_fd", "gen_precision", "gen_recall", "gen_classes", "gen_class_kl", "gen_images", "gen_classifier_acc"}


def with_moments(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> torch.Tensor:
    """n points whose sample mean and (n-1)-normalised covariance are exactly `mean` and `cov`."""
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # whitened: sample covariance I
    return torch.from_numpy(z @ np.linalg.cholesky(cov).T + mean)


def test_frechet_distance_equals_the_closed_form():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    a, b = with_moments(400, m1, np.diag(s1**2), 1), with_moments(300, m2, np.diag(s2**2), 2)
    exact = ((m1 - m2) ** 2).sum() + ((s1 - s2) ** 2).sum()  # commuting covariances: sum of (sd1 - sd2)^2
    assert q.frechet_distance(a, b) == pytest.approx(exact, rel=1e-9)
    assert q.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # non-commuting covariances: the textbook formula with scipy's matrix square root
    c1, c2 = (w := rng.normal(size=(5, 5))) @ w.T + np.eye(5), (v := rng.normal(size=(5, 5))) @ v.T + np.eye(5)
    a, b = with_moments(400, m1, c1, 3), with_moments(300, m2, c2, 4)
    textbook = ((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    assert q.frechet_distance(a, b) == pytest.approx(textbook, rel=1e-8)


def test_precision_recall_equal_hand_counts():
    real = torch.tensor([[0.0], [1.0], [2.0], [10.0]])  # k = 1 radii: 1, 1, 1, 8
    fake = torch.tensor([[0.5], [5.0], [20.0], [2.5]])  # radii: 2, 2.5, 15, 2
    # precision: 0.5 (near 0), 5 (within 8 of 10), 2.5 (near 2) are inside; 20 is not. recall: every real point.
    assert q.precision_recall(real, fake, k=1) == (0.75, 1.0)
    assert q.precision_recall(real, real, k=1) == (1.0, 1.0)
    assert q.precision_recall(real, fake + 100.0, k=1) == (0.0, 0.0)
    assert q.knn_radii(real, k=2).tolist() == [2.0, 1.0, 2.0, 9.0]


# ------------------------------------------------------------------------------------------- real MNIST
@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """(dataset: 10,000 training images, the classifier trained on them for two epochs, its cache directory)."""
    if not os.environ.get("LAE_BENCH_DATA"):
        pytest.skip("LAE_BENCH_DATA not set (real MNIST)")
    ds = data.load("mnist", "dynamic", train_size=10_000)
    cache = tmp_path_factory.mktemp("classifiers")
    return ds, q.load_classifier(ds, cache, QUICK), cache


@NEEDS_MNIST
def test_the_test_set_against_held_out_training_images_noise_and_blends(mnist):
    ds, clf, _ = mnist
    assert clf.trained and clf.test_acc > 0.93 and clf.test_features.shape == (10_000, q.FEATURE_DIM)
    real = clf.test_features[:N]
    held_out = ds.val.x[:N]  # the validation images: never trained on, binarized once as the test split is
    noise = torch.bernoulli(torch.full_like(held_out, 0.5), generator=torch.Generator().manual_seed(0))
    replace = torch.rand(held_out.shape, generator=torch.Generator().manual_seed(1))
    scores = []
    for t in (0.0, 0.1, 0.25, 0.5, 1.0):  # each pixel replaced by noise with probability t
        f = q.features(clf.net, torch.where(replace < t, noise, held_out))
        scores.append((q.frechet_distance(real, f), *q.precision_recall(real, f)))
    fd, precision, recall = map(np.array, zip(*scores))
    print("t = 0, 0.1, 0.25, 0.5, 1: FD", fd.round(2), "precision", precision.round(3), "recall", recall.round(3))
    # measured (this classifier, 2,000 images): FD 4.8 against noise's 401, precision 0.90, recall 0.87; with k = 3 and
    # finite samples the same distribution scores about 0.85-0.9, not 1 (docs/metrics.md); FD's bias shrinks with n
    assert fd[0] < 0.03 * fd[-1] and precision[0] > 0.8 and recall[0] > 0.8
    assert precision[-1] < 0.1 and recall[-1] < 0.01  # noise: (almost) nothing inside either manifold
    assert (np.diff(fd) > 0).all() and (np.diff(precision) < 0).all() and (np.diff(recall) < 0).all()


def test_the_cache_reads_back_the_same_classifier_keys_on_content_and_replaces_a_corrupt_file(tmp_path):
    ds = data.load("digits", "dynamic")
    clf = q.load_classifier(ds, tmp_path, QUICK)
    again = q.load_classifier(ds, tmp_path, QUICK)
    assert clf.trained and not again.trained and again.path == clf.path and again.test_acc == clf.test_acc
    assert torch.equal(again.test_features, clf.test_features)
    assert torch.equal(q.features(again.net, ds.test.x), q.features(clf.net, ds.test.x))
    other = data.load("digits", "dynamic", train_size=1199)  # one training image fewer: another key
    assert q.cache_key(other, QUICK) != q.cache_key(ds, QUICK) != q.cache_key(ds, q.CLASSIFIER)
    clf.path.write_bytes(clf.path.read_bytes()[:1000])  # truncated: retrained and replaced, bit for bit
    replaced = q.load_classifier(ds, tmp_path, QUICK)
    assert replaced.trained and torch.equal(replaced.test_features, clf.test_features)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [clf.path.name]


def test_mode_coverage_sees_a_generator_collapsed_onto_two_classes(tmp_path):
    ds = data.load("digits", "dynamic")
    clf = q.load_classifier(ds, tmp_path, {**QUICK, "min_steps": 600})  # 32 epochs of the 1,203 digits

    def coverage(x):
        return q.mode_coverage(clf.net.head(q.features(clf.net, x)).argmax(1), ds.test.y, ds.n_classes)

    faithful = coverage(ds.test.x)  # the test images themselves: every class, at the test set's frequencies
    two = ds.test.x[(ds.test.y == 0) | (ds.test.y == 7)]  # a generator that makes only 0s and 7s
    collapsed = coverage(two)
    print("faithful", faithful, "collapsed", collapsed)
    # the classifier (test accuracy > 0.8) mislabels a few images: KL of its labels to the truth stays small
    assert faithful[0] == 10 and faithful[1] < 0.05
    assert collapsed[0] <= 3 and collapsed[1] > 1.2  # log(10 / 2) = 1.61 for two exact classes of ten
    labels = torch.tensor([0, 0, 1, 1])  # exact: two classes of two equally frequent in the reference
    assert q.mode_coverage(labels, torch.arange(4), 4) == (2.0, pytest.approx(math.log(2)))


# ------------------------------------------------------------------------------------------- the metric group
@pytest.fixture(scope="module")
def digits_models():
    """(config, dataset, untrained model, the fit of the same model for 30 epochs) on 8x8 digits."""
    config = RunConfig(model="vae", dataset="digits", latent_dim=4, hidden=64, epochs=30, batch_size=50, seed=0)
    ds = data.load("digits", "dynamic")
    untrained = new_model(config, ds.n_pixels, torch.device("cpu")).eval()
    return config, ds, untrained, fit(config, ds)


def test_compute_metrics_quality_group(digits_models, tmp_path, monkeypatch):
    monkeypatch.setenv(q.CACHE_ENV, str(tmp_path))
    config, ds, untrained, result = digits_models
    trained, settings, out = result.model, MetricSettings.preset("smoke"), {}
    for name, model in (("untrained", untrained), ("trained", trained)):
        out[name] = compute_metrics(model, config, ds, ["quality"], settings)
        assert set(out[name]) == NAMES | {"eval_threads", "eval_seconds"}
        assert out[name]["gen_images"] == min(settings.quality_images, len(ds.test))
        assert 0 <= out[name]["gen_precision"] <= 1 and 0 <= out[name]["gen_recall"] <= 1
    assert out["trained"]["gen_classifier_acc"] == out["untrained"]["gen_classifier_acc"] > 0.8
    assert out["trained"]["gen_fd"] < 0.5 * out["untrained"]["gen_fd"]
    assert out["trained"]["gen_recall"] > out["untrained"]["gen_recall"]
    again = compute_metrics(trained, config, ds, ["quality"], settings)
    assert {k: again[k] for k in NAMES} == {k: out["trained"][k] for k in NAMES}  # its own seed: reproducible
    skipped = compute_metrics(trained, config, ds, ["quality"], settings.replace(quality_images=0))
    assert skipped["gen_images"] == 0 and all(math.isnan(skipped[k]) for k in NAMES - {"gen_images"})
    with pytest.raises(Exception, match="quality_images must be a non-negative integer"):
        settings.replace(quality_images=-1).validate()
    assert {METRICS[n].group for n in NAMES} == {"quality"}
    assert {MetricSettings.preset(p).quality_images for p in ("default", "full")} == {10_000}


def test_cli_evaluate_quality_with_an_unwritable_cache_is_one_line(digits_models, tmp_path, monkeypatch):
    checkpoint = save_checkpoint(digits_models[3], tmp_path / "run" / "checkpoint.pt")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(q.CACHE_ENV, str(blocker / "cache"))
    done = bench_cli("evaluate", checkpoint, "--metrics", "quality", "--preset", "smoke")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "feature classifier cache" in done.stderr and q.CACHE_ENV in done.stderr
    assert blocker.read_text() == "not a directory"


def test_cli_evaluate_estimates_the_quality_group_from_a_pilot(digits_models, tmp_path, monkeypatch):
    """The duration estimate counts the quality group (the classifier already cached, as after a sweep's first
    trial): within 10x of the measured evaluation, like the other groups' (tests/test_cli.py)."""
    checkpoint = save_checkpoint(digits_models[3], tmp_path / "run" / "checkpoint.pt")
    monkeypatch.setenv(q.CACHE_ENV, str(tmp_path / "cache"))
    warm = bench_cli("evaluate", checkpoint, "--metrics", "quality", "--preset", "smoke")  # trains the classifier
    assert warm.returncode == 0, warm.stderr
    done = bench_cli("evaluate", checkpoint, "--metrics", "quality", "--no-progress")
    assert done.returncode == 0, done.stderr
    seconds = float(re.search(r"estimated time: about ([0-9.]+) s", done.stderr)[1])
    measured = float(re.search(r"eval_seconds +([0-9.]+)", done.stdout)[1])
    assert measured / 10 < seconds < measured * 10, (done.stderr, measured)


def test_a_sweep_with_an_unwritable_cache_stops_before_any_trial(tmp_path, monkeypatch):
    """One line and exit status 2 before a worker starts: no trial is recorded as failed for it."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(q.CACHE_ENV, str(blocker / "cache"))
    results = tmp_path / "results"
    done = bench_cli("sweep", "ald_stepsize", "--results", results, "--no-progress")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: cannot write the feature classifier cache") and q.CACHE_ENV in done.stderr
    assert not list(results.rglob("*.parquet")) and blocker.read_text() == "not a directory"
