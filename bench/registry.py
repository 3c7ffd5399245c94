"""The harness's registries, one per concept, imported by everyone who needs them: metrics (name, group,
unit, direction, meaning), attack radii, and the preset/budget names. Model families and datasets are
the library's (`lae.config.MODELS`, `lae.data.DATASETS`, `lae.data.PREPROCESSING`), re-exported here.

Metric names are stable: they are result-store columns (see docs/metrics.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lae.config import MODELS  # noqa: F401 - re-exported: the model-family registry's names
from lae.data import DATASETS, PREPROCESSING, SOURCES  # noqa: F401 - re-exported

# Evaluation presets and sweep budgets share these names, cheapest first: a budget names its metric preset.
PRESETS: tuple[str, ...] = ("smoke", "default", "full")
BUDGETS = PRESETS

ATTACKS: tuple[str, ...] = ("fgsm", "pgd")
ADV_EPS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)  # L-infinity radii on [0, 1] pixels
# P, the dimension of an image, of every dataset whose shape is known before reading (npz: not; its P is unknown here)
PIXELS: dict[str, int] = {name: math.prod(s.image_shape) for name, s in SOURCES.items() if s.image_shape}


@dataclass(frozen=True)
class Metric:
    name: str
    group: str  # who computes it: loglik | probe | speed | adversarial | quality (bench.metrics), training | meta,
    # derived (bench.results.findings.with_derived, from other columns when tables are built; never stored)
    unit: str  # short unit for table heads
    better: str | None  # "max" | "min" | None (not a ranking: acceptance rates, counts)
    meaning: str  # unit and meaning, one line (docs, `evaluate --out` JSON)
    section: str | None = None  # leaderboard section (None: not shown in leaderboards)


def adv_name(attack: str, eps: float) -> str:
    """Column of the accuracy under `attack` at L-inf radius `eps`: adv_acc_pgd_0.1."""
    return f"adv_acc_{attack}_{eps:g}"


LIKELIHOOD, REPRESENTATION, ROBUSTNESS, SPEED = "likelihood", "representation", "robustness", "speed"
QUALITY = "quality"
_METRICS = [
    Metric(
        "val_loss",
        "training",
        "nats/image",
        None,
        "nats per image: the training objective on the validation "
        "images after the last epoch (each family's own objective: never compared across families)",
        LIKELIHOOD,
    ),
    Metric(
        "test_loglik_ais",
        "loglik",
        "nats/image",
        "max",
        "nats per image: AIS estimate of log p(x), mean over the test images (headline)",
        LIKELIHOOD,
    ),
    Metric(
        "test_loglik_is",
        "loglik",
        "nats/image",
        "max",
        "nats per image: importance-sampling estimate with the model's own proposal",
        LIKELIHOOD,
    ),
    Metric(
        "test_elbo",
        "loglik",
        "nats/image",
        "max",
        "nats per image: single-sample ELBO, analytic KL (VAE family; nan for LAE)",
        LIKELIHOOD,
    ),
    Metric(
        "test_bpd_ais",
        "loglik",
        "bits/dim",
        "min",
        "bits per dimension: -test_loglik_ais / (P ln 2) (8-bit data; else nan)",
        LIKELIHOOD,
    ),
    Metric(
        "test_bpd_is",
        "loglik",
        "bits/dim",
        "min",
        "bits per dimension: -test_loglik_is / (P ln 2) (8-bit data; else nan)",
        LIKELIHOOD,
    ),
    Metric(
        "test_bpd_paper",
        "loglik",
        "bits/dim",
        "min",
        "bits per dimension: the LAE paper's protocol, a single-sample ELBO (LAE: q = N(f(x), 0.05^2 I)), all test "
        "images (8-bit data; else nan)",
        LIKELIHOOD,
    ),
    Metric("test_images", "loglik", "count", None, "count: test images in the log-likelihood means"),
    Metric(
        "bdmc_gap",
        "loglik",
        "nats/image",
        None,
        "nats per image: BDMC upper minus lower bound of log p(x) on images "
        "simulated from the model, AIS at the same settings: bounds the AIS error",
        LIKELIHOOD,
    ),
    # What LAE's chain did, beside its likelihood (issue 22): a chain that never moves makes LAE its `frozen` control.
    Metric(
        "mh_accept",
        "training",
        "fraction",
        None,
        "fraction: mean MH acceptance of the last training epoch (Langevin models)",
        LIKELIHOOD,
    ),
    Metric(
        "final_step_size",
        "training",
        "step",
        None,
        "Phi^2 per nat: LAE's ALD step size in use at the end of training (the adapted one with target_accept)",
        LIKELIHOOD,
    ),
    Metric(
        "phi_msjd",
        "training",
        "Phi^2/step",
        None,
        "squared Phi units: LAE's mean squared jump |Phi_t - Phi_(t-1)|^2 per ALD step and chain in the last training "
        "epoch (summed over Phi's D x H entries; 0 for a stuck chain)",
        LIKELIHOOD,
    ),
    Metric(
        "ais_accept",
        "loglik",
        "fraction",
        None,
        "fraction: mean HMC acceptance inside AIS (adapted toward 0.65)",
        SPEED,
    ),
    Metric(
        "probe_acc",
        "probe",
        "fraction",
        "max",
        "fraction in [0, 1]: linear-probe accuracy on the test split",
        REPRESENTATION,
    ),
    Metric(
        "probe_train_acc", "probe", "fraction", None, "fraction in [0, 1]: linear-probe accuracy on its training images"
    ),
    Metric("gen_samples_per_s", "speed", "samples/s", "max", "images per second: prior -> decoder output", SPEED),
    Metric(
        "posterior_samples_per_s",
        "speed",
        "samples/s",
        "max",
        "z samples per second (one per image and draw): the model's posterior sampler",
        SPEED,
    ),
    Metric(
        "adv_acc_clean",
        "adversarial",
        "fraction",
        "max",
        "fraction in [0, 1]: probe classifier accuracy on the unperturbed attack subset",
        ROBUSTNESS,
    ),
    *[
        Metric(
            adv_name(a, e),
            "adversarial",
            "fraction",
            "max",
            f"fraction in [0, 1]: accuracy under {a.upper()} at L-inf eps {e:g}",
            ROBUSTNESS,
        )
        for a in ATTACKS
        for e in ADV_EPS
    ],
    Metric(
        "gen_fd",
        "quality",
        "FD",
        "min",
        "squared feature units: Frechet distance between generated and test images in the feature classifier's "
        "penultimate layer (docs/metrics.md, Sample quality)",
        QUALITY,
    ),
    Metric(
        "gen_precision",
        "quality",
        "fraction",
        "max",
        "fraction in [0, 1]: generated images inside the test images' k-NN feature manifold (k = 3; Kynkaanniemi 2019)",
        QUALITY,
    ),
    Metric(
        "gen_recall",
        "quality",
        "fraction",
        "max",
        "fraction in [0, 1]: test images inside the generated images' k-NN feature manifold (k = 3)",
        QUALITY,
    ),
    Metric("gen_images", "quality", "count", None, "count: generated images (and test images) in the quality metrics"),
    Metric(
        "gen_classifier_acc",
        "quality",
        "fraction",
        None,
        "fraction in [0, 1]: test accuracy of the feature classifier behind gen_fd, gen_precision, gen_recall",
    ),
    # Issue 23: nats per dimension (the LAE paper's unit), mode coverage, the AIS length used.
    Metric(
        "test_npd_ais",
        "derived",
        "nats/dim",
        "min",
        "nats per dimension: -test_loglik_ais / P (P = 784 for MNIST), derived when tables are built",
        LIKELIHOOD,
    ),
    Metric(
        "test_npd_paper",
        "derived",
        "nats/dim",
        "min",
        "nats per dimension: test_bpd_paper x ln 2, the LAE paper's own unit (its Table: test -ELBO in nats/dim)",
        LIKELIHOOD,
    ),
    Metric(
        "ais_intermediate_used",
        "loglik",
        "count",
        None,
        "count: AIS intermediate distributions behind test_loglik_ais (more than the preset's where the AIS was "
        "escalated until its error bound was small enough: lae.estimators.escalating_ais)",
    ),
    Metric(
        "gen_classes",
        "quality",
        "classes",
        "max",
        "count: classes that the feature classifier assigns at least 5% of the generated images to (mode coverage)",
        QUALITY,
    ),
    Metric(
        "gen_class_kl",
        "quality",
        "nats",
        "min",
        "nats: KL divergence from the generated images' class shares (by the feature classifier) to the test "
        "split's class frequencies; 0 for a generator as class-balanced as the test set",
        QUALITY,
    ),
    Metric("train_seconds", "training", "s", "min", "seconds: wall time of training", SPEED),
    Metric("eval_threads", "meta", "count", None, "count: torch intra-op threads during the evaluation"),
    Metric("eval_seconds", "meta", "s", "min", "seconds: wall time of compute_metrics", SPEED),
]
# The augmented-classifier sweep (trial = "classifier", bench.sweep.classifier): the course project's CNN, attacked.
CLF_ATTACKS: tuple[str, ...] = ("fgsm", "pgd")  # at every radius of CLF_EPS (a spec's metric_settings.adv_eps)
CLF_EPS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.3)
APGD_EPS: tuple[float, ...] = (0.1, 0.3)  # torchattacks' APGD-CE


def clf_name(attack: str, eps: float) -> str:
    """Column of the CNN's accuracy under `attack` at L-inf radius `eps`: clf_acc_pgd_0.1."""
    return f"clf_acc_{attack}_{eps:g}"


CLASSIFIER, THE_CNN = "classifier", "the augmented classifier's CNN"
_METRICS += [
    Metric(
        "clf_test_acc",
        CLASSIFIER,
        "fraction",
        "max",
        f"fraction in [0, 1]: {THE_CNN} accuracy on the whole test split",
        CLASSIFIER,
    ),
    Metric(
        "clf_acc_clean",
        CLASSIFIER,
        "fraction",
        "max",
        f"fraction in [0, 1]: {THE_CNN} accuracy on the attacked images",
        CLASSIFIER,
    ),
    *[
        Metric(
            clf_name(a, e),
            CLASSIFIER,
            "fraction",
            "max",
            f"fraction in [0, 1]: {THE_CNN} accuracy under {a.upper()}, eps {e:g}",
            CLASSIFIER,
        )
        for a, radii in (("fgsm", CLF_EPS), ("pgd", CLF_EPS), ("apgd", APGD_EPS))
        for e in radii
    ],
    Metric(
        "clf_train_loss",
        CLASSIFIER,
        "nats",
        None,
        "nats per image: last epoch's cross-entropy over the augmented batches",
    ),
    Metric(
        "dlvm_seconds",
        CLASSIFIER,
        "s",
        None,
        "seconds: wall time of the DLVM's training (once per family and seed, cached)",
    ),
]
METRICS: dict[str, Metric] = {m.name: m for m in _METRICS}
# What bench.metrics.compute_metrics returns (the evaluation's columns), in registry order.
EVAL_GROUPS: tuple[str, ...] = ("loglik", "probe", "speed", "adversarial", "quality")
EVAL_METRICS: tuple[str, ...] = tuple(m.name for m in _METRICS if m.group in EVAL_GROUPS + ("meta",))
# Timing columns: never reproducible bit for bit.
TIMING: frozenset[str] = frozenset(
    {
        "gen_samples_per_s",
        "posterior_samples_per_s",
        "train_seconds",
        "eval_seconds",
        "dlvm_seconds",
    }
)
