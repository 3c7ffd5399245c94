"""The benchmark's metrics of one trained model: a flat record of named floats (see docs/metrics.md).

    settings = MetricSettings.preset("default")
    record = compute_metrics(model, config, dataset, ["loglik", "probe"], settings, generator)

One module per metric group, each stating its protocol (fixed; the settings only choose sizes):
loglik.py (AIS, IS, ELBO), probe.py (linear probe), speed.py (generation and posterior sampling),
adversarial.py (FGSM and PGD on the probe classifier), quality.py (Frechet distance, precision and recall of
generated images); settings.py holds MetricSettings and its presets.

Every key of the returned dict is in METRIC_NAMES (= bench.registry.EVAL_METRICS), every value a plain
float; nan where a metric does not apply (test_elbo for LAE, test_bpd_* for binarized data). METRICS
(bench.registry.METRICS) gives each name's group, unit, direction and meaning; the names are stable
(they become result-store columns).
"""

from __future__ import annotations

import time

import torch

from bench.errors import BenchError
from bench.metrics.adversarial import adversarial_metrics
from bench.metrics.loglik import loglik_metrics
from bench.metrics.probe import probe_metrics, train_probe
from bench.metrics.quality import quality_metrics
from bench.metrics.settings import MetricSettings
from bench.metrics.speed import speed_metrics
from bench.registry import EVAL_GROUPS, EVAL_METRICS, METRICS
from lae.config import RunConfig
from lae.data import Dataset
from lae.utils import model_device

__all__ = ["GROUPS", "METRICS", "METRIC_NAMES", "MetricSettings", "compute_metrics"]

GROUPS = EVAL_GROUPS  # loglik, probe, speed, adversarial, quality: computed in this order
METRIC_NAMES = EVAL_METRICS


def compute_metrics(
    model,
    config: RunConfig,
    dataset: Dataset,
    names: list[str] | None = None,
    settings: MetricSettings | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """The metric groups `names` (loglik, probe, speed, adversarial, quality; None: all) of a model trained with
    `config`, evaluated on `dataset` (which must be the config's dataset and preprocessing). Returns
    {metric name: float} with keys from METRIC_NAMES, plus eval_threads and eval_seconds. The model
    is put in eval mode with its parameters frozen during the call; both are restored after.

    `generator` (default: seeded with config.seed + 2 on the model's device) feeds loglik, then speed;
    the probe, the attacks and the quality group use their own fixed seeds."""
    start = time.perf_counter()
    names = list(GROUPS) if names is None else list(names)
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise BenchError(f"unknown metric group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    if dataset.name != config.dataset or dataset.preprocessing != config.preprocessing:
        raise BenchError(
            f"model was trained on {config.dataset} ({config.preprocessing}) but the dataset is "
            f"{dataset.name} ({dataset.preprocessing})"
        )
    if dataset.n_pixels != model.config.n_pixels:
        raise BenchError(f"model expects {model.config.n_pixels} pixels, dataset has {dataset.n_pixels}")
    settings = settings or MetricSettings()
    if generator is None:
        generator = torch.Generator(device=model_device(model)).manual_seed(config.seed + 2)
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
        if "quality" in names:
            out.update(quality_metrics(model, config, dataset, settings, progress))
    finally:
        model.train(was_training)
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
    out["eval_threads"] = float(torch.get_num_threads())
    out["eval_seconds"] = time.perf_counter() - start
    assert set(out) <= set(METRIC_NAMES), set(out) - set(METRIC_NAMES)
    return {k: float(v) for k, v in out.items()}
