"""Robustness of the augmented-classifier sweep's CNN (lae.classifier): the classifier group of metrics.

Protocol: clean accuracy on the whole test split (`clf_test_acc`), then on the first `adv_subset` test images
(`clf_acc_clean`) white-box attacks with torchattacks on [0, 1] pixels (bench.metrics.adversarial.attack): FGSM and
PGD (random start, `pgd_steps` steps of eps * `pgd_step_frac`) at every radius of `adv_eps`, and APGD-CE
(`APGD_STEPS` steps, one restart) at bench.registry.APGD_EPS. The CNN is attacked in eval mode (no dropout), so its
gradients are deterministic. Every value is a fraction in [0, 1]."""

from __future__ import annotations

from torch import nn

from bench.metrics.adversarial import attacked_accuracy
from bench.metrics.settings import MetricSettings
from bench.registry import APGD_EPS, CLF_ATTACKS, clf_name
from lae.classifier import accuracy as test_accuracy
from lae.data import Split
from lae.utils import model_device, progress_bar


def classifier_metrics(net: nn.Module, test: Split, s: MetricSettings, seed: int = 0, progress: bool = False) -> dict:
    """{clf_test_acc, clf_acc_clean, clf_acc_<fgsm|pgd>_<eps> for eps in s.adv_eps, clf_acc_apgd_<eps> for eps in
    APGD_EPS} of a classifier x (N, P) -> logits (N, 10). The network is left in eval mode with frozen parameters."""
    net.eval().requires_grad_(False)
    device = model_device(net)
    out = {"clf_test_acc": test_accuracy(net, test.x.to(device), test.y.to(device))}
    n = len(test) if s.adv_subset is None else min(s.adv_subset, len(test))
    x, y = test.x[:n].to(device), test.y[:n].to(device)
    out["clf_acc_clean"] = test_accuracy(net, x, y)
    runs = [(kind, eps) for kind in CLF_ATTACKS for eps in s.adv_eps] + [("apgd", eps) for eps in APGD_EPS]
    bar = progress_bar(len(runs), "attacks", progress)
    for kind, eps in runs:
        out[clf_name(kind, eps)] = attacked_accuracy(net, x, y, kind, eps, s, seed)
        bar.update(1)
    bar.close()
    return out
