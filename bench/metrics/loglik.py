"""Test log-likelihood: the loglik group of metrics, and how far it can be off.

Protocol: the first `subset` images of the test split (None: all of it), the same images every time. The model's
importance-sampling proposal (a Laplace fit at each image's posterior mode, lae.estimators.proposals) is built once
and serves both estimators: IS (lae.estimators.importance_sampling) and the headline AIS (lae.estimators.ais), which
anneals from that proposal to the posterior (`ais_start = "prior"`: from N(0, I)). Its error is bounded by BDMC
(lae.estimators.bdmc) on `bdmc_images` images simulated from the model with the same AIS settings: `bdmc_gap` is the
mean of upper - lower bound, nats per image. With `ais_max_intermediate` > 0 the AIS length is escalated
(lae.estimators.escalating_ais: doubled until max(|IS - AIS|, BDMC gap) < `ais_tolerance`), and the length used is
`ais_intermediate_used`. Also the single-sample ELBO of the families that have one (model.elbo;
nan for LAE). Nats per image; bits per dimension = -log p(x) / (P ln 2) for 8-bit data (nan for binarized data).
For 8-bit data also the LAE paper's own protocol, `test_bpd_paper` (paper_elbo): a single-sample ELBO, no estimator.
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
    """{test_loglik_ais, test_loglik_is, test_elbo, test_bpd_ais, test_bpd_is, test_images, ais_accept, bdmc_gap,
    test_bpd_paper, ais_intermediate_used}. Draws from `gen` in this order: proposal, IS, AIS, ELBO, BDMC, the
    paper's protocol (8-bit data only, on the first `paper_images` test images); escalated: AIS and BDMC per length,
    then ELBO."""
    x = dataset.test.x if s.subset is None else dataset.test.x[: s.subset]
    x = x.to(model_device(model))
    n = x.shape[0]
    bar = progress_bar(2 * n + s.bdmc_images, "log-likelihood (IS, AIS, BDMC)", progress)
    q = estimators.proposals(model, x, gen)
    log_is = estimators.importance_sampling(
        model, x, s.is_samples, gen, batch_size=s.estimator_batch, on_chunk=bar.update, proposal=q
    )
    ais = estimators.AISSettings(
        n_intermediate=s.ais_intermediate,
        n_chains=s.ais_chains,
        n_leapfrog=s.ais_leapfrog,
        step_size=s.ais_step_size,
        start=s.ais_start,
        batch_size=s.estimator_batch,
    )
    diag: dict = {}
    run = None  # the escalation's result, when the settings ask for one
    if s.ais_max_intermediate:  # re-measurement: AIS and BDMC lengthened until their error is small enough
        escalation = estimators.Escalation(s.ais_tolerance, s.ais_max_intermediate, s.bdmc_images)
        run = estimators.escalating_ais(model, x, log_is, escalation, ais, gen, proposal=q, diagnostics=diag)
        log_ais = run.log_px
    else:
        log_ais = estimators.ais(model, x, ais, gen, proposal=q, on_chunk=bar.update, diagnostics=diag)
    with torch.no_grad():
        parts = [model.elbo(xb, gen) for xb in x.split(1000)]
    elbo = float("nan") if parts[0] is None else torch.cat(parts).mean().item()
    if run is not None:
        gap = run.bdmc_gap
    else:
        gap = estimators.bdmc(model, s.bdmc_images, ais, gen).gap if s.bdmc_images else float("nan")
    bar.update(s.bdmc_images)
    bar.close()

    def to_bpd(v: float) -> float:  # nats per image -> bits per dimension (8-bit data only)
        return -v / (dataset.n_pixels * math.log(2)) if dataset.preprocessing == "8bit" else float("nan")

    paper = float("nan")
    if dataset.preprocessing == "8bit":  # last, so the other metrics' draws do not depend on it
        xp = dataset.test.x if s.paper_images is None else dataset.test.x[: s.paper_images]
        with torch.no_grad():
            paper = to_bpd(torch.cat([paper_elbo(model, xb, gen) for xb in xp.to(x.device).split(1000)]).mean().item())

    ll_ais, ll_is = log_ais.mean().item(), log_is.mean().item()
    return {
        "test_loglik_ais": ll_ais,
        "test_loglik_is": ll_is,
        "test_elbo": elbo,
        "test_bpd_ais": to_bpd(ll_ais),
        "test_bpd_is": to_bpd(ll_is),
        "test_images": float(n),
        "ais_accept": float(diag["accept"]),
        "bdmc_gap": gap,
        "test_bpd_paper": paper,
        "ais_intermediate_used": float(s.ais_intermediate if run is None else run.n_intermediate),
    }


PAPER_LAE_STD = 0.05  # the official LAE code's test-time q(z | x) = N(f(x), 0.05^2 I) for LAE


def paper_elbo(model, x: torch.Tensor, gen) -> torch.Tensor:
    """The LAE paper's test protocol (github iShohei220/LAE, `forward` in eval mode): each family's own
    single-sample ELBO (model.elbo), and for LAE, which has none, the single-sample ELBO of
    q(z | x) = N(f(x), PAPER_LAE_STD^2 I) with the closed-form KL to N(0, I). x (N, P) -> (N,) nats."""
    elbo = model.elbo(x, gen)
    if elbo is not None:
        return elbo
    mu = model.representation(x)
    z = mu + PAPER_LAE_STD * torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
    var = PAPER_LAE_STD**2
    kl = 0.5 * (mu * mu + var - 1.0 - math.log(var)).sum(-1)
    return model.log_likelihood(x, z) - kl
