"""Test log-likelihood: the loglik group of metrics.

Protocol: the first `subset` images of the test split (None: all of it), the same images every time.
AIS from the prior (lae.estimators.ais, decoder only: the headline, comparable across families), IS with
the model's own proposal (lae.estimators.importance_sampling), the single-sample ELBO of the families
that have one (model.elbo; nan for LAE). Nats per image; bits per dimension = -log p(x) / (P ln 2) for
8-bit data (nan for binarized data).
"""

from __future__ import annotations

import math

import torch

from bench.metrics.settings import MetricSettings
from lae import estimators
from lae.config import RunConfig
from lae.data import Dataset
from lae.utils import model_device, progress_bar


def loglik_metrics(model, config: RunConfig, dataset: Dataset, s: MetricSettings, gen, progress=False) -> dict:
    """{test_loglik_ais, test_loglik_is, test_elbo, test_bpd_ais, test_bpd_is, test_images, ais_accept}.
    Draws from `gen` in this order: IS, AIS, ELBO."""
    x = dataset.test.x if s.subset is None else dataset.test.x[: s.subset]
    x = x.to(model_device(model))
    n = x.shape[0]
    bar = progress_bar(2 * n, "log-likelihood (IS, AIS)", progress)
    log_is = estimators.importance_sampling(
        model, x, s.is_samples, gen, batch_size=s.estimator_batch, ald_batch=config.batch_size, on_chunk=bar.update
    )
    diag: dict = {}
    log_ais = estimators.ais(
        model,
        x,
        s.ais_intermediate,
        s.ais_chains,
        s.ais_leapfrog,
        s.ais_step_size,
        gen,
        batch_size=s.estimator_batch,
        on_chunk=bar.update,
        diagnostics=diag,
    )
    bar.close()
    with torch.no_grad():
        parts = [model.elbo(xb, gen) for xb in x.split(1000)]
    elbo = float("nan") if parts[0] is None else torch.cat(parts).mean().item()

    def to_bpd(v: float) -> float:  # nats per image -> bits per dimension (8-bit data only)
        return -v / (dataset.n_pixels * math.log(2)) if dataset.preprocessing == "8bit" else float("nan")

    ll_ais, ll_is = log_ais.mean().item(), log_is.mean().item()
    return {
        "test_loglik_ais": ll_ais,
        "test_loglik_is": ll_is,
        "test_elbo": elbo,
        "test_bpd_ais": to_bpd(ll_ais),
        "test_bpd_is": to_bpd(ll_is),
        "test_images": float(n),
        "ais_accept": float(diag["accept"]),
    }
