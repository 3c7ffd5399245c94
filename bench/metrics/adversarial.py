"""Adversarial accuracy of the linear probe: the adversarial group of metrics.

Protocol: the classifier x -> probe(standardize(representation(x))), the probe's weights carried into a
torch layer, attacked white-box end to end with torchattacks on [0, 1] inputs (the first `adv_subset`
test images): FGSM, and PGD with random start, `pgd_steps` steps of eps * pgd_step_frac, L-infinity
ball, at the radii `adv_eps` (bench.registry.ADV_EPS). The representation is the deterministic encoder
path (no sampling, no Langevin steps), so the gradients are exact, not masked by noise.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.metrics.probe import Probe, train_probe
from bench.metrics.settings import MetricSettings
from bench.registry import ATTACKS, adv_name
from lae.data import Dataset
from lae.utils import model_device, progress_bar

APGD_STEPS = 100  # APGD-CE iterations (AutoAttack's standard)


def attack(
    classifier: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    kind: str,
    eps: float,
    pgd_steps: int = 40,
    pgd_step_frac: float = 0.1,
    seed: int = 0,
    apgd_steps: int = APGD_STEPS,
) -> torch.Tensor:
    """Adversarial versions of x (N, P) in [0, 1] within the L-inf eps ball: FGSM, PGD (random
    start), or APGD-CE (Croce and Hein 2020, torchattacks: `apgd_steps` steps, one restart, it
    attacks only the images the classifier labels right). The random starts draw from torch's global
    RNG, seeded here inside fork_rng (the caller's global RNG state is untouched)."""
    import torchattacks

    if kind == "fgsm":
        atk = torchattacks.FGSM(classifier, eps=eps)
    elif kind == "pgd":
        atk = torchattacks.PGD(classifier, eps=eps, alpha=eps * pgd_step_frac, steps=pgd_steps, random_start=True)
    elif kind == "apgd":  # torchattacks' APGD takes (N, C, H, W) images: x as (N, 1, 1, P), flattened back
        flat = nn.Sequential(nn.Flatten(), classifier).train(classifier.training)  # torchattacks restores this mode
        atk = torchattacks.APGD(flat, norm="Linf", eps=eps, steps=apgd_steps, n_restarts=1, seed=seed, loss="ce")
        x = x.reshape(len(x), 1, 1, -1)
    else:
        raise ValueError(f"unknown attack {kind!r}")
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return atk(x, y).detach().flatten(1)


def attacked_accuracy(
    classifier: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str, eps: float, s: MetricSettings, seed: int
) -> float:
    """Accuracy of `classifier` on `attack(kind, eps)` of x (N, P), attacked in chunks of 1,000 images."""
    correct = 0.0
    for xb, yb in zip(x.split(1000), y.split(1000)):
        adv = attack(classifier, xb, yb, kind, eps, s.pgd_steps, s.pgd_step_frac, seed)
        correct += accuracy(classifier, adv, yb) * len(yb)
    return correct / len(y)


@torch.no_grad()
def accuracy(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction in [0, 1] of x (N, P) that the classifier labels y (N,)."""
    return (classifier(x).argmax(-1) == y).double().mean().item()


def adversarial_metrics(
    model, dataset: Dataset, s: MetricSettings, probe: Probe | None = None, seed: int = 0, progress: bool = False
) -> dict:
    """{adv_acc_clean, adv_acc_<attack>_<eps> for every attack and radius}; `probe` None: fit here."""
    probe = probe or train_probe(model, dataset, s)
    clf = probe.classifier(model).eval()
    n = len(dataset.test) if s.adv_subset is None else min(s.adv_subset, len(dataset.test))
    device = model_device(model)
    x, y = dataset.test.x[:n].to(device), dataset.test.y[:n].to(device)
    out = {"adv_acc_clean": accuracy(clf, x, y)}
    bar = progress_bar(len(ATTACKS) * len(s.adv_eps), "adversarial", progress)
    for kind in ATTACKS:
        for eps in s.adv_eps:
            out[adv_name(kind, eps)] = attacked_accuracy(clf, x, y, kind, eps, s, seed)
            bar.update(1)
    bar.close()
    return out
