"""The benchmark's metrics of one trained model: a flat record of named floats (see docs/metrics.md).

    settings = MetricSettings.preset("default")
    record = compute_metrics(model, config, dataset, ["loglik", "probe"], settings, generator)

Metric groups (`names`): loglik, probe, speed, adversarial (None: all). Every key of the returned
dict is in METRIC_NAMES, every value a plain float; nan where a metric does not apply (test_elbo
for LAE, test_bpd_* for binarized data). METRICS gives each name's unit and meaning; the names are
stable (they become result-store columns).

Protocols (fixed; the settings only choose sizes):
- loglik: the first `subset` images of the test split (None: all of it), the same images every
  time. AIS from the prior (lae.estimators.ais, decoder only: the headline, comparable across
  families), IS with the model's own proposal (lae.estimators.importance_sampling), the VAE family's
  single-sample ELBO. Nats per image; bits per dimension = -log p(x) / (P ln 2) for 8-bit data.
- probe: features = model.representation(x) (VAE family: posterior mean; LAE: encoder output with
  the chains' mean Phi, i.e. the encoder output averaged over chains), standardized with the
  training features' mean and std; scikit-learn LogisticRegression(C=probe_c, lbfgs,
  max_iter=probe_max_iter) fit on the first `probe_train_size` training images (None: all), each
  binarized once with a fixed seed when the split holds intensities; accuracy on the whole test split.
- adversarial: the classifier x -> probe(standardize(representation(x))), the probe's weights
  carried into a torch layer, attacked white-box end to end with torchattacks on [0, 1] inputs
  (the first `adv_subset` test images): FGSM, and PGD with random start, `pgd_steps` steps of
  eps * pgd_step_frac, L-infinity ball. The representation is the deterministic encoder path (no
  sampling, no Langevin steps), so the gradients are exact, not masked by noise.
- speed: generation = model.generate(gen_batch) (prior -> decoder mean); posterior = the model's own
  posterior sampler (VAE/IWAE: amortized encoder draws; LVAE: encoder + MALA refinement; LAE: ALD
  steps) on config.batch_size test images, speed_posterior_samples draws per image. speed_warmup
  untimed calls, then the median of speed_repeats timed calls; the thread count is eval_threads.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lae import estimators
from lae.config import RunConfig
from lae.data import Dataset

from bench.errors import BenchError

GROUPS = ("loglik", "probe", "speed", "adversarial")
ADV_EPS = (0.05, 0.1, 0.2, 0.3)  # L-infinity radii on [0, 1] pixels


def _eps_name(attack: str, eps: float) -> str:
    return f"adv_acc_{attack}_{eps:g}"


# name -> (group, unit and meaning). Stable: these are result-store columns.
METRICS: dict[str, tuple[str, str]] = {
    "test_loglik_ais": ("loglik", "nats per image: AIS estimate of log p(x), mean over the test images (headline)"),
    "test_loglik_is": ("loglik", "nats per image: importance-sampling estimate with the model's own proposal"),
    "test_elbo": ("loglik", "nats per image: single-sample ELBO, analytic KL (VAE family; nan for LAE)"),
    "test_bpd_ais": ("loglik", "bits per dimension: -test_loglik_ais / (P ln 2) (8-bit data; else nan)"),
    "test_bpd_is": ("loglik", "bits per dimension: -test_loglik_is / (P ln 2) (8-bit data; else nan)"),
    "test_images": ("loglik", "count: test images in the log-likelihood means"),
    "ais_accept": ("loglik", "fraction: mean HMC acceptance inside AIS (adapted toward 0.65)"),
    "probe_acc": ("probe", "fraction in [0, 1]: linear-probe accuracy on the test split"),
    "probe_train_acc": ("probe", "fraction in [0, 1]: linear-probe accuracy on its training images"),
    "gen_samples_per_s": ("speed", "images per second: prior -> decoder output"),
    "posterior_samples_per_s": ("speed", "z samples per second (one per image and draw): the model's posterior sampler"),
    "adv_acc_clean": ("adversarial", "fraction in [0, 1]: probe classifier accuracy on the unperturbed attack subset"),
    **{_eps_name(a, e): ("adversarial", f"fraction in [0, 1]: accuracy under {a.upper()} at L-inf eps {e:g}")
       for a in ("fgsm", "pgd") for e in ADV_EPS},
    "eval_threads": ("meta", "count: torch intra-op threads during the evaluation"),
    "eval_seconds": ("meta", "seconds: wall time of compute_metrics"),
}
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)


@dataclass
class MetricSettings:
    """Sizes of the evaluation (the protocols are fixed). Defaults = the "full" preset."""
    subset: int | None = None  # loglik on the first N test images (None: the whole test split)
    ais_intermediate: int = estimators.AIS_INTERMEDIATE  # distributions strictly between prior and posterior
    ais_chains: int = estimators.AIS_CHAINS  # AIS runs per image (log-mean-exp over them)
    ais_leapfrog: int = estimators.AIS_LEAPFROG  # leapfrog steps per HMC transition
    ais_step_size: float = estimators.AIS_STEP_SIZE  # initial leapfrog step (adapted per image)
    is_samples: int = 1000  # importance samples per image
    estimator_batch: int = estimators.DEFAULT_BATCH  # (sample, image) pairs per decoder call
    probe_train_size: int | None = None  # probe fit on the first N training images (None: all)
    probe_c: float = 1.0  # inverse L2 strength of the logistic regression
    probe_max_iter: int = 1000
    adv_subset: int | None = 1000  # attacked test images (first N; None: all)
    adv_eps: tuple[float, ...] = ADV_EPS
    pgd_steps: int = 40
    pgd_step_frac: float = 0.1  # PGD step = eps * pgd_step_frac (40 steps of 0.1 eps can cross the ball twice)
    speed_repeats: int = 5
    speed_warmup: int = 1
    gen_batch: int = 1000  # images per generation call
    speed_posterior_samples: int = 10  # posterior draws per image per timed call

    PRESETS = ("smoke", "default", "full")

    @classmethod
    def preset(cls, name: str) -> "MetricSettings":
        """smoke: seconds, for smoke sweeps; default: ~30-60 s per MNIST model, headline AIS on a fixed
        500-image subset; full: the whole test split at the estimators' default settings."""
        if name == "smoke":
            return cls(subset=100, ais_intermediate=50, ais_chains=4, is_samples=100, probe_train_size=2000,
                       probe_max_iter=200, adv_subset=100, adv_eps=ADV_EPS, pgd_steps=40, speed_repeats=3,
                       gen_batch=200, speed_posterior_samples=4)
        if name == "default":
            return cls(subset=500, ais_intermediate=300, ais_chains=8, is_samples=1000, probe_train_size=10_000,
                       adv_subset=500, speed_repeats=5)
        if name == "full":
            return cls()
        raise BenchError(f"unknown metrics preset {name!r}; choose one of: {', '.join(cls.PRESETS)}")

    def replace(self, **changes) -> "MetricSettings":
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------------------ helpers
def _device(model) -> torch.device:
    return next(model.parameters()).device


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def _fixed_binary(x: torch.Tensor, preprocessing: str, seed: int = 0) -> torch.Tensor:
    """Dynamic-binarization training splits hold intensities: binarize once, with a fixed seed."""
    if preprocessing != "dynamic":
        return x
    return torch.bernoulli(x, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def features(model, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """model.representation in batches: (N, D) on the CPU."""
    device = _device(model)
    return torch.cat([model.representation(xb.to(device)).cpu() for xb in x.split(batch)])


# ---------------------------------------------------------------------------------------- loglik
def loglik_metrics(model, config: RunConfig, dataset: Dataset, s: MetricSettings, gen, progress=False) -> dict:
    x = dataset.test.x if s.subset is None else dataset.test.x[: s.subset]
    x = x.to(_device(model))
    n = x.shape[0]
    bar = _bar(2 * n, "log-likelihood (IS, AIS)", progress)
    step = (lambda k: bar.update(k)) if bar is not None else None
    log_is = estimators.importance_sampling(model, x, s.is_samples, gen, batch_size=s.estimator_batch,
                                            ald_batch=config.batch_size, on_chunk=step)
    diag: dict = {}
    log_ais = estimators.ais(model, x, s.ais_intermediate, s.ais_chains, s.ais_leapfrog, s.ais_step_size, gen,
                             batch_size=s.estimator_batch, on_chunk=step, diagnostics=diag)
    if bar is not None:
        bar.close()
    with torch.no_grad():
        parts = [model.elbo(xb, gen) for xb in x.split(1000)]
    elbo = float("nan") if parts[0] is None else torch.cat(parts).mean().item()
    to_bpd = (lambda v: -v / (dataset.n_pixels * math.log(2))) if dataset.preprocessing == "8bit" else (lambda v: float("nan"))
    ll_ais, ll_is = log_ais.mean().item(), log_is.mean().item()
    return {"test_loglik_ais": ll_ais, "test_loglik_is": ll_is, "test_elbo": elbo, "test_bpd_ais": to_bpd(ll_ais),
            "test_bpd_is": to_bpd(ll_is), "test_images": float(n), "ais_accept": float(diag["accept"])}


# ------------------------------------------------------------------------------------------- probe
@dataclass
class Probe:
    """A fitted linear probe: standardization (mean, std: (D,)) and logistic regression (W (K, D), b (K,))."""
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    train_acc: float

    def classifier(self, model) -> nn.Module:
        """x (N, P) -> class logits (N, K): the model's deterministic representation, then the probe
        as one torch linear layer (standardization folded into the weights)."""
        w = self.coef / self.std  # (K, D)
        b = self.intercept - w @ self.mean
        head = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
            head.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
        return ProbeClassifier(model, head.to(_device(model)))


class ProbeClassifier(nn.Module):
    def __init__(self, model, head: nn.Linear):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.model.representation(x))


def fit_probe(train_features: torch.Tensor, train_labels: torch.Tensor, c: float = 1.0, max_iter: int = 1000) -> Probe:
    """Standardize, then multinomial logistic regression (lbfgs, L2 with strength 1/c)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    f = train_features.double().numpy()
    y = train_labels.numpy()
    mean, std = f.mean(0), f.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    clf = LogisticRegression(C=c, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((f - mean) / std, y)
    acc = float(clf.score((f - mean) / std, y))
    return Probe(mean, std, clf.coef_, clf.intercept_, acc)


def probe_accuracy(probe: Probe, test_features: torch.Tensor, test_labels: torch.Tensor) -> float:
    f = (test_features.double().numpy() - probe.mean) / probe.std
    pred = (f @ probe.coef.T + probe.intercept).argmax(1)
    return float((pred == test_labels.numpy()).mean())


def train_probe(model, dataset: Dataset, s: MetricSettings) -> Probe:
    train = dataset.train
    n = len(train) if s.probe_train_size is None else min(s.probe_train_size, len(train))
    x = _fixed_binary(train.x[:n], dataset.preprocessing)
    return fit_probe(features(model, x), train.y[:n], s.probe_c, s.probe_max_iter)


def probe_metrics(model, dataset: Dataset, s: MetricSettings, probe: Probe | None = None) -> dict:
    probe = probe or train_probe(model, dataset, s)
    return {"probe_acc": probe_accuracy(probe, features(model, dataset.test.x), dataset.test.y),
            "probe_train_acc": probe.train_acc}


# ------------------------------------------------------------------------------------- adversarial
def attack(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str, eps: float, pgd_steps: int = 40,
           pgd_step_frac: float = 0.1, seed: int = 0) -> torch.Tensor:
    """Adversarial versions of x (N, P) in [0, 1] within the L-inf eps ball: FGSM or PGD (random
    start). PGD's random start draws from torch's global RNG, seeded here inside fork_rng (the
    caller's global RNG state is untouched)."""
    import torchattacks

    if kind == "fgsm":
        atk = torchattacks.FGSM(classifier, eps=eps)
    elif kind == "pgd":
        atk = torchattacks.PGD(classifier, eps=eps, alpha=eps * pgd_step_frac, steps=pgd_steps, random_start=True)
    else:
        raise ValueError(f"unknown attack {kind!r}")
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return atk(x, y).detach()


@torch.no_grad()
def accuracy(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (classifier(x).argmax(-1) == y).double().mean().item()


def adversarial_metrics(model, dataset: Dataset, s: MetricSettings, probe: Probe | None = None,
                        seed: int = 0, progress: bool = False) -> dict:
    probe = probe or train_probe(model, dataset, s)
    clf = probe.classifier(model).eval()
    n = len(dataset.test) if s.adv_subset is None else min(s.adv_subset, len(dataset.test))
    device = _device(model)
    x, y = dataset.test.x[:n].to(device), dataset.test.y[:n].to(device)
    out = {"adv_acc_clean": accuracy(clf, x, y)}
    bar = _bar(2 * len(s.adv_eps), "adversarial", progress)
    for kind in ("fgsm", "pgd"):
        for eps in s.adv_eps:
            correct = 0.0
            for xb, yb in zip(x.split(1000), y.split(1000)):
                adv = attack(clf, xb, yb, kind, eps, s.pgd_steps, s.pgd_step_frac, seed)
                correct += accuracy(clf, adv, yb) * len(yb)
            out[_eps_name(kind, eps)] = correct / n
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return out


# ------------------------------------------------------------------------------------------- speed
def median_seconds(fn, repeats: int, warmup: int) -> float:
    """Median wall time of fn() over `repeats` calls after `warmup` calls (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def speed_metrics(model, config: RunConfig, dataset: Dataset, s: MetricSettings, gen) -> dict:
    device = _device(model)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def generate():
        model.generate(s.gen_batch, gen)
        sync()

    x = dataset.test.x[: config.batch_size].to(device)

    def posterior():
        model.posterior_samples(x, s.speed_posterior_samples, gen)
        sync()

    t_gen = median_seconds(generate, s.speed_repeats, s.speed_warmup)
    t_post = median_seconds(posterior, s.speed_repeats, s.speed_warmup)
    return {"gen_samples_per_s": s.gen_batch / t_gen,
            "posterior_samples_per_s": s.speed_posterior_samples * x.shape[0] / t_post}


# ------------------------------------------------------------------------------------------ driver
def compute_metrics(model, config: RunConfig, dataset: Dataset, names: list[str] | None = None,
                    settings: MetricSettings | None = None, generator: torch.Generator | None = None,
                    progress: bool = False) -> dict[str, float]:
    """The metric groups `names` (loglik, probe, speed, adversarial; None: all) of a model trained with
    `config`, evaluated on `dataset` (which must be the config's dataset and preprocessing). Returns
    {metric name: float} with keys from METRIC_NAMES, plus eval_threads and eval_seconds. The model
    is put in eval mode with its parameters frozen during the call; both are restored after."""
    start = time.perf_counter()
    names = list(GROUPS) if names is None else list(names)
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise BenchError(f"unknown metric group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    if dataset.name != config.dataset or dataset.preprocessing != config.preprocessing:
        raise BenchError(f"model was trained on {config.dataset} ({config.preprocessing}) but the dataset is "
                         f"{dataset.name} ({dataset.preprocessing})")
    if dataset.n_pixels != model.config.n_pixels:
        raise BenchError(f"model expects {model.config.n_pixels} pixels, dataset has {dataset.n_pixels}")
    settings = settings or MetricSettings()
    if generator is None:
        generator = torch.Generator(device=_device(model)).manual_seed(config.seed + 2)
    was_training = model.training
    grads = [p.requires_grad for p in model.parameters()]
    model.eval()
    model.requires_grad_(False)
    out: dict[str, float] = {}
    try:
        probe = None
        if "loglik" in names:
            out.update(loglik_metrics(model, config, dataset, settings, generator, progress))
        if "probe" in names or "adversarial" in names:
            probe = train_probe(model, dataset, settings)
        if "probe" in names:
            out.update(probe_metrics(model, dataset, settings, probe))
        if "speed" in names:
            out.update(speed_metrics(model, config, dataset, settings, generator))
        if "adversarial" in names:
            out.update(adversarial_metrics(model, dataset, settings, probe, seed=config.seed, progress=progress))
    finally:
        model.train(was_training)
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
    out["eval_threads"] = float(torch.get_num_threads())
    out["eval_seconds"] = time.perf_counter() - start
    assert set(out) <= set(METRIC_NAMES), set(out) - set(METRIC_NAMES)
    return {k: float(v) for k, v in out.items()}
