"""Sample quality: the quality group of metrics (gen_fd, gen_precision, gen_recall, gen_classes, gen_class_kl,
gen_images, gen_classifier_acc).

Protocol (fixed; the settings choose only `quality_images`, 0 to skip the group):
- generated: n = min(quality_images, test split size) images drawn from the model, z ~ N(0, I) then x ~ p(x | z)
  through the likelihood's own sampler (binary pixels for binarized data, 8-bit values for `8bit`: the data's own
  domain, not decoder means), with a generator seeded config.seed + QUALITY_SEED_OFFSET (its own: the numbers do
  not depend on which other groups ran);
- real: the first n images of the test split, as the preprocessing gives them;
- features: the FEATURE_DIM ReLU units before the output layer of a small CNN (FeatureNet) trained on the dataset's
  whole training split (the default split; dynamic data binarized afresh per minibatch) with CLASSIFIER settings,
  on one thread (bit-reproducible); trained once per dataset and preprocessing and cached (`cache_dir`) under a
  content hash of its code, its settings and the train and test images, with its test accuracy and the test
  split's features;
- gen_fd: Frechet distance between Gaussians fitted to the two feature sets (Heusel et al. 2017), in squared
  feature units; gen_precision / gen_recall: Kynkaanniemi et al. 2019 with k = K_NEAREST: the fraction of
  generated images inside the real k-NN manifold (a ball around every real feature reaching its k-th nearest real
  neighbour) and of real images inside the generated one;
- mode coverage (a generator that collapses onto a few classes can keep a fair FD and recall): the feature
  classifier labels every generated image; gen_classes counts the classes given at least MODE_SHARE of them, and
  gen_class_kl is KL(generated class shares || the test split's label frequencies) in nats (0 log 0 = 0): 0 for a
  generator with the test set's class balance, log(10 / 2) = 1.61 for one that makes two of ten equal classes only.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import math
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from bench.errors import BenchError
from bench.metrics.settings import MetricSettings
from lae import data as data_lib
from lae.utils import atomic_path, model_device, progress_bar

FEATURE_DIM = 128
K_NEAREST = 3
# Training settings (part of the cache key): `epochs` passes, more when needed to reach `min_steps` optimizer steps
# (1,500 8x8 digits are 24 minibatches an epoch). MNIST: 3 epochs, 98.2% test accuracy, 40 s on one core.
CLASSIFIER = {"epochs": 3, "min_steps": 1000, "batch_size": 64, "lr": 1e-3, "seed": 0}
QUALITY_SEED_OFFSET = 7919
CACHE_ENV = "LAE_BENCH_CACHE"
CHUNK = 1000  # rows per distance block: CHUNK x n float32 distances at a time
MODE_SHARE = 0.05  # a class counts as covered when it gets at least this share of the generated images


class FeatureNet(nn.Module):
    """x (N, P) in [0, 1], P = the pixels of image_shape ((side, side), or (channels, side, side) for colour) ->
    class logits (N, n_classes); `features(x)` -> (N, FEATURE_DIM): two 3x3 conv layers (16, 32 channels, ReLU, 2x2
    max pooling), a linear layer to FEATURE_DIM ReLU units, a linear output layer."""

    def __init__(self, image_shape: tuple[int, ...], n_classes: int):
        super().__init__()
        self.shape = (1, *image_shape) if len(image_shape) == 2 else tuple(image_shape)  # (C, H, W)
        side = self.shape[-1]
        self.trunk = nn.Sequential(
            nn.Conv2d(self.shape[0], 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (side // 4) ** 2, FEATURE_DIM),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x.reshape(-1, *self.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Classifier(NamedTuple):
    net: FeatureNet  # eval mode, frozen
    test_acc: float  # fraction of the test split classified correctly
    test_features: torch.Tensor  # (N_test, FEATURE_DIM) float32, CPU
    path: Path  # the cache file
    trained: bool  # trained by this call (False: read from the cache)


@torch.no_grad()
def features(net: FeatureNet, x: torch.Tensor, batch: int = CHUNK) -> torch.Tensor:
    """net.features of images x (N, P), in batches: (N, FEATURE_DIM) float32 on the CPU."""
    device = model_device(net)
    return torch.cat([net.features(xb.to(device)).cpu() for xb in x.split(batch)])


def cache_dir() -> Path:
    """Where feature classifiers are cached: $LAE_BENCH_CACHE, else $XDG_CACHE_HOME/lae-bench/classifiers (an
    absolute XDG_CACHE_HOME), else ~/.cache/lae-bench/classifiers. Independent of any results directory."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.path.expanduser(os.environ.get("XDG_CACHE_HOME", ""))
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "lae-bench" / "classifiers"


def cache_key(dataset: data_lib.Dataset, settings: dict) -> str:
    """sha256 (hex) of the classifier's code (FeatureNet, train_classifier), its settings, and the train and test
    images and labels of `dataset`."""
    h = hashlib.sha256()
    for text in (inspect.getsource(FeatureNet), inspect.getsource(train_classifier), repr(sorted(settings.items()))):
        h.update(text.encode())
    h.update(f"{dataset.name} {dataset.preprocessing} {dataset.image_shape}".encode())
    for split in (dataset.train, dataset.test):
        for t in (split.x, split.y):
            h.update(memoryview(np.ascontiguousarray(t.numpy())).cast("B"))
    return h.hexdigest()


def train_classifier(dataset: data_lib.Dataset, settings: dict, progress: bool = False) -> tuple[FeatureNet, float]:
    """FeatureNet trained on dataset.train (Adam, cross-entropy; dynamic data binarized afresh per minibatch) with
    settings (epochs, min_steps, batch_size, lr, seed), on one CPU thread. -> (the net in eval mode, seconds)."""
    start, threads = time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings["seed"])
            net = FeatureNet(dataset.image_shape, dataset.n_classes)
        gen = torch.Generator().manual_seed(settings["seed"])
        opt = torch.optim.Adam(net.parameters(), lr=settings["lr"])
        per_epoch = math.ceil(len(dataset.train) / settings["batch_size"])
        epochs = max(settings["epochs"], math.ceil(settings["min_steps"] / per_epoch))
        bar = progress_bar(epochs * per_epoch, "feature classifier", progress)
        for _ in range(epochs):
            dynamic = dataset.preprocessing == "dynamic"
            for x, y in data_lib.batches(dataset.train, settings["batch_size"], gen, dynamic=dynamic):
                loss = nn.functional.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.update()
        bar.close()
    finally:
        torch.set_num_threads(threads)
    return net.eval().requires_grad_(False), time.perf_counter() - start


def check_cache(directory: Path | None = None) -> None:
    """BenchError (one line) unless the cache directory (default cache_dir()) can be created and written: a sweep
    checks it before any trial, so an unwritable cache is not recorded as every trial's failure."""
    directory = cache_dir() if directory is None else Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / f".write-check-{os.getpid()}", "w") as probe:
            os.unlink(probe.name)
    except OSError as exc:
        raise _cache_error(directory, exc) from None


def _cache_error(directory: Path, exc: OSError) -> BenchError:
    return BenchError(
        f"cannot write the feature classifier cache {directory}: {exc.strerror or exc}; "
        f"set {CACHE_ENV} to a writable directory"
    )


def load_classifier(
    dataset: data_lib.Dataset, directory: Path | None = None, settings: dict | None = None, progress: bool = False
) -> Classifier:
    """The feature classifier of `dataset` (its train split trains it, its test split scores it): read from
    `directory` (default cache_dir()) when a file with its content hash is there, else trained and written there
    atomically (a lock file keeps concurrent workers from training it twice). An unreadable cache file is replaced."""
    settings = dict(CLASSIFIER if settings is None else settings)
    directory = cache_dir() if directory is None else Path(directory)
    key = cache_key(dataset, settings)
    path = directory / f"{dataset.name}-{dataset.preprocessing}-{key[:20]}.pt"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / f".{path.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record = _read(path, key)
            trained = record is None
            if trained:
                net, seconds = train_classifier(dataset, settings, progress)
                test_features = features(net, dataset.test.x)
                acc = float((net.head(test_features).argmax(1) == dataset.test.y).double().mean())
                record = {"key": key, "state": net.state_dict(), "test_acc": acc, "test_features": test_features}
                record.update(settings=repr(settings), train_seconds=seconds, train_images=len(dataset.train))
                with atomic_path(path) as tmp:
                    torch.save(record, tmp)
    except OSError as exc:
        raise _cache_error(directory, exc) from None
    net = FeatureNet(dataset.image_shape, dataset.n_classes)
    net.load_state_dict(record["state"])
    net.eval().requires_grad_(False)
    return Classifier(net, record["test_acc"], record["test_features"], path, trained)


def _read(path: Path, key: str) -> dict | None:
    """The cache record at `path`, or None when missing, unreadable or for another key."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # missing, or a truncated or foreign file: (re)train and replace it
        return None
    return record if isinstance(record, dict) and record.get("key") == key else None


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of features a (N, F), b (M, F) (sample means and
    covariances, float64); tr (S_a S_b)^(1/2) = sum of sqrt eigenvalues of S_a^(1/2) S_b S_a^(1/2), symmetric."""
    a, b = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(w.clip(0))) @ v.T
    cross = np.sqrt(np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def knn_radii(f: torch.Tensor, k: int = K_NEAREST) -> torch.Tensor:
    """Distance from every row of f (N, F) to its k-th nearest other row: (N,)."""
    return torch.cat([torch.cdist(c, f).topk(k + 1, dim=1, largest=False).values[:, -1] for c in f.split(CHUNK)])


def coverage(points: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of points (N, F) within radii[j] of some centers[j] ((M, F), (M,))."""
    inside = [(torch.cdist(c, centers) <= radii).any(1) for c in points.split(CHUNK)]
    return torch.cat(inside).double().mean().item()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = K_NEAREST) -> tuple[float, float]:
    """Kynkaanniemi et al. 2019: (fraction of fake (M, F) in the real k-NN manifold, fraction of real (N, F) in
    the fake one)."""
    return coverage(fake, real, knn_radii(real, k)), coverage(real, fake, knn_radii(fake, k))


def mode_coverage(labels: torch.Tensor, reference: torch.Tensor, n_classes: int) -> tuple[float, float]:
    """(classes with at least MODE_SHARE of `labels`, KL(share of labels || share of reference) in nats) for class
    labels (N,) of generated images and the reference labels (M,) (the test split's), int64."""
    share = torch.bincount(labels, minlength=n_classes).double() / len(labels)
    freq = torch.bincount(reference, minlength=n_classes).double() / len(reference)
    kl = torch.where(share > 0, share * (share / freq).log(), torch.zeros_like(share)).sum()
    return float((share >= MODE_SHARE).sum()), float(kl)


@torch.no_grad()
def sample_images(model, n: int, generator: torch.Generator, batch: int = CHUNK) -> torch.Tensor:
    """n images x ~ p(x) = p(x | z) p(z) (the model's prior_sample) through the likelihood's sampler: (n, P) on the
    CPU."""
    out = []
    for m in [min(batch, n - i) for i in range(0, n, batch)]:
        z = model.prior_sample(m, generator)
        out.append(model.likelihood.sample(model.decoder(z), generator).cpu())
    return torch.cat(out)


_LOADED: dict[tuple, Classifier] = {}  # per process: (dataset, preprocessing, data dir, cache dir) -> Classifier


def classifier(config, dataset: data_lib.Dataset, progress: bool = False) -> Classifier:
    """The feature classifier of the dataset's default split, loaded once per process (trained once per dataset)."""
    where = (dataset.name, dataset.preprocessing, str(data_lib.resolve_data_dir(config.data_dir)), str(cache_dir()))
    if where not in _LOADED:
        full = data_lib.load(dataset.name, dataset.preprocessing, data_dir=config.data_dir)
        _LOADED[where] = load_classifier(full, progress=progress)
    return _LOADED[where]


def quality_metrics(model, config, dataset: data_lib.Dataset, s: MetricSettings, progress: bool = False) -> dict:
    """{gen_fd, gen_precision, gen_recall, gen_classes, gen_class_kl, gen_images, gen_classifier_acc} (see the
    protocol); nan and gen_images 0 when s.quality_images is 0. The classifier is that of the dataset's default split
    (loaded here, whatever train_size the model was trained with)."""
    names = ("gen_fd", "gen_precision", "gen_recall", "gen_classifier_acc", "gen_classes", "gen_class_kl")
    if s.quality_images == 0:
        return dict.fromkeys(names, math.nan) | {"gen_images": 0.0}
    clf = classifier(config, dataset, progress)
    n = min(s.quality_images, len(clf.test_features))
    gen = torch.Generator(device=model_device(model)).manual_seed(config.seed + QUALITY_SEED_OFFSET)
    fake = features(clf.net.to(model_device(model)), sample_images(model, n, gen, s.gen_batch))
    real = clf.test_features[:n]
    precision, recall = precision_recall(real, fake)
    fd = frechet_distance(real, fake)
    classes, kl = mode_coverage(
        clf.net.head(fake.to(model_device(clf.net))).argmax(1).cpu(), dataset.test.y, dataset.n_classes
    )
    return dict(zip(names, (fd, precision, recall, clf.test_acc, classes, kl))) | {"gen_images": float(n)}
