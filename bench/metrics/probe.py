"""The linear probe: what a linear classifier reads from a model's representation.

Protocol: features = model.representation(x) (VAE family: posterior mean; LAE: encoder output with the
chains' mean Phi, i.e. the encoder output averaged over chains), standardized with the training features'
mean and std; scikit-learn LogisticRegression(C=probe_c, lbfgs, max_iter=probe_max_iter) fit on the
first `probe_train_size` training images (None: all), each binarized once with a fixed seed when the
split holds intensities; accuracy on the whole test split. Metrics: probe_acc, probe_train_acc.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.metrics.settings import MetricSettings
from lae.data import Dataset
from lae.utils import model_device


def _fixed_binary(x: torch.Tensor, preprocessing: str, seed: int = 0) -> torch.Tensor:
    """Dynamic-binarization training splits hold intensities: binarize once, with a fixed seed."""
    if preprocessing != "dynamic":
        return x
    return torch.bernoulli(x, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def features(model, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """model.representation of x (N, P) in batches: (N, D) on the CPU."""
    device = model_device(model)
    return torch.cat([model.representation(xb.to(device)).cpu() for xb in x.split(batch)])


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
        return ProbeClassifier(model, head.to(model_device(model)))


class ProbeClassifier(nn.Module):
    """x (N, P) -> logits (N, K): head(model.representation(x))."""

    def __init__(self, model, head: nn.Linear):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.model.representation(x))


def fit_probe(train_features: torch.Tensor, train_labels: torch.Tensor, c: float = 1.0, max_iter: int = 1000) -> Probe:
    """Standardize features (N, D), then multinomial logistic regression on labels (N,) (lbfgs, L2 with
    strength 1/c)."""
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
    """Fraction in [0, 1] of test features (N, D) whose predicted class is the label (N,)."""
    f = (test_features.double().numpy() - probe.mean) / probe.std
    pred = (f @ probe.coef.T + probe.intercept).argmax(1)
    return float((pred == test_labels.numpy()).mean())


def train_probe(model, dataset: Dataset, s: MetricSettings) -> Probe:
    """The probe of `model` fit on the first s.probe_train_size training images (see the protocol)."""
    train = dataset.train
    n = len(train) if s.probe_train_size is None else min(s.probe_train_size, len(train))
    x = _fixed_binary(train.x[:n], dataset.preprocessing)
    return fit_probe(features(model, x), train.y[:n], s.probe_c, s.probe_max_iter)


def probe_metrics(model, dataset: Dataset, s: MetricSettings, probe: Probe | None = None) -> dict:
    """{probe_acc, probe_train_acc}; `probe` (None: fit here) is shared with the adversarial group."""
    probe = probe or train_probe(model, dataset, s)
    return {
        "probe_acc": probe_accuracy(probe, features(model, dataset.test.x), dataset.test.y),
        "probe_train_acc": probe.train_acc,
    }
