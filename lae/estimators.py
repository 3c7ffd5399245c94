"""Test log-likelihood estimators, and a bound on their error: importance sampling (IS), annealed importance
sampling (AIS, lae.ais) and bidirectional Monte Carlo (BDMC).

IS and AIS return log p(x) estimates in nats per image, shape (N,), for images x (N, P). Both are stochastic lower
bounds (E[log p_hat(x)] <= log p(x), Jensen): higher is closer, and a gap to the truth is estimator bias, not model
quality.

    q = proposals(model, x, gen)                                # built once, shared by IS and AIS
    log_px = importance_sampling(model, x, 1000, gen, proposal=q)
    settings = AISSettings(n_intermediate=100, n_chains=4)      # one AIS plan, passed to AIS and BDMC alike
    log_px = ais(model, x, settings, gen, proposal=q)
    result = bdmc(model, 100, settings, gen)                    # result.gap: nats per image

The proposal is the model's own, `model.proposal(x, generator)` (lae.models, lae.proposals): a Laplace fit at the
posterior mode, from the VAE family's encoder mean or LAE's ALD samples. A proposal that runs ALD is built on chunks
of `model.proposal_images()` images (LAE: its training batch size, to which ALD's step size is tied).

AIS (lae.ais) anneals from a start distribution to the posterior: `start="proposal"` (the default) from that same
proposal, with HMC preconditioned by its covariance, a short path; `start="prior"` from N(0, I), the decoder-only
path of Wu et al. (2017), which needs many more distributions for the same accuracy.

BDMC (Grosse et al. 2015): on images simulated from the model (z* ~ p(z), x ~ p(x | z*)), forward AIS gives a
stochastic lower bound and reverse AIS from the exact posterior sample z* a stochastic upper bound of log p(x); with
the same settings as on the test images, the mean gap upper - lower bounds the error of the test-image AIS.

Escalation (`escalating_ais`): where that error decides a comparison, AIS and BDMC are rerun with twice the
intermediate distributions until the error bound, the larger of |mean IS - mean AIS| and the BDMC gap, is below a
tolerance (a quarter of the difference to decide, or 0.5 nats: `escalation_tolerance`) or the length reaches a cap;
the length used is returned, for the result row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from lae import ais as ais_lib
from lae.proposals import GaussianProposal
from lae.utils import model_device

AIS_INTERMEDIATE = 500  # defaults of the AIS estimate (the bench.metrics "full" preset)
AIS_CHAINS = 8
AIS_LEAPFROG = 2
AIS_STEP_SIZE = 0.5  # initial leapfrog step, whitened units (z / the start's scale); adapted per image
AIS_STARTS = ("proposal", "prior")
PROPOSAL_IMAGES = 500  # images per proposal construction when the family does not fix it (memory of the Hessian)
DEFAULT_BATCH = 2048  # (sample, image) pairs per decoder call


def log_mean_exp(a: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(a, dim) - math.log(a.shape[dim])


def proposals(model, x: torch.Tensor, generator) -> GaussianProposal:
    """The model's proposal for every image of x (N, P), built on chunks of model.proposal_images() images
    (PROPOSAL_IMAGES when the family does not fix it)."""
    x = x.to(model_device(model))
    chunk = model.proposal_images() or PROPOSAL_IMAGES
    return GaussianProposal.cat([model.proposal(xb, generator) for xb in x.split(chunk)])


def importance_sampling(
    model,
    x: torch.Tensor,
    n_samples: int,
    generator,
    batch_size: int = DEFAULT_BATCH,
    on_chunk: Callable[[int], None] | None = None,
    proposal: GaussianProposal | None = None,
) -> torch.Tensor:
    """log p(x) ~ logsumexp_k [log p(x, z_k) - log q(z_k | x)] - log K, z_k ~ q (the model's proposal, or the one
    passed, built by `proposals`): (N,) nats per image. At most `batch_size` (sample, image) pairs per decoder call.
    on_chunk(n_images_in_chunk) reports progress."""
    x = x.to(model_device(model))
    q_all = proposal if proposal is not None else proposals(model, x, generator)
    per_call = max(1, batch_size // min(n_samples, batch_size))  # images whose n_samples draws fit one call
    out = []
    for start in range(0, x.shape[0], per_call):
        xb, q = x[start : start + per_call], q_all[start : start + per_call]
        k_chunk = max(1, batch_size // xb.shape[0])
        log_w = []
        with torch.no_grad():
            for k0 in range(0, n_samples, k_chunk):
                z, log_q = q.sample(min(k_chunk, n_samples - k0), generator)
                log_w.append(model.log_joint(xb, z) - log_q)
        out.append(log_mean_exp(torch.cat(log_w), 0))
        if on_chunk is not None:
            on_chunk(xb.shape[0])
    return torch.cat(out)


def _start(model, x, generator, start, proposal) -> GaussianProposal:
    if start not in AIS_STARTS:
        raise ValueError(f"AIS start must be one of {', '.join(AIS_STARTS)}; got {start!r}")
    if start == "prior":
        return ais_lib.prior(x.shape[0], model.config.latent_dim, x)
    return proposal if proposal is not None else proposals(model, x, generator)


class AISSettings(NamedTuple):
    """One AIS estimate's plan, built once and passed to `ais`, `bdmc` and `escalating_ais` (which varies only
    n_intermediate). The defaults are the bench.metrics "full" preset's."""

    n_intermediate: int = AIS_INTERMEDIATE  # distributions strictly between start and posterior, one HMC step each
    n_chains: int = AIS_CHAINS  # independent AIS runs per image (log-mean-exp over them)
    n_leapfrog: int = AIS_LEAPFROG  # leapfrog steps per HMC transition
    step_size: float = AIS_STEP_SIZE  # initial leapfrog step, whitened units; adapted per image unless not adapt
    start: str = "proposal"  # "proposal" (the model's Laplace fit, or the one passed) or "prior" (N(0, I))
    batch_size: int = DEFAULT_BATCH  # (sample, image) pairs per decoder call: chunks of batch_size // n_chains images
    adapt: bool = True  # adapt the leapfrog step per image toward lae.ais.TARGET_ACCEPT


DEFAULT_AIS = AISSettings()


def ais(
    model,
    x: torch.Tensor,
    settings: AISSettings = DEFAULT_AIS,
    generator=None,
    proposal: GaussianProposal | None = None,
    on_chunk: Callable[[int], None] | None = None,
    diagnostics: dict | None = None,
) -> torch.Tensor:
    """Forward AIS estimate of log p(x) for images x (N, P): (N,) nats per image (lae.ais for the algorithm), as
    `settings` plans it; with start "proposal", from `proposal` when given, else the model's. on_chunk(n_images)
    reports progress; diagnostics, if given, receives "accept" (mean HMC acceptance) and "step_size" (mean final
    step)."""
    s = settings
    x = x.to(model_device(model))
    q_all = _start(model, x, generator, s.start, proposal)
    betas = ais_lib.sigmoid_schedule(s.n_intermediate).tolist()
    chunk = max(1, s.batch_size // s.n_chains)
    out, accepts, steps = [], 0.0, 0.0
    for i in range(0, x.shape[0], chunk):
        xb, q = x[i : i + chunk], q_all[i : i + chunk]
        z, _ = q.sample(s.n_chains, generator)
        log_w, info = ais_lib.run(model, xb, q, z, betas, s.n_leapfrog, s.step_size, generator, s.adapt)
        out.append(log_mean_exp(log_w, 0))
        accepts += info.accept * xb.shape[0]
        steps += info.step_size.sum().item()
        if on_chunk is not None:
            on_chunk(xb.shape[0])
    if diagnostics is not None:
        diagnostics["accept"] = accepts / x.shape[0]
        diagnostics["step_size"] = steps / x.shape[0]
    return torch.cat(out)


class Escalated(NamedTuple):
    log_px: torch.Tensor  # (N,) AIS estimate at the length used, nats per image
    n_intermediate: int  # the length used
    bdmc_gap: float  # nats per image at that length (nan without BDMC images)
    error: float  # max(|mean IS - mean AIS|, bdmc_gap) at that length, nats per image
    history: tuple[tuple[int, float], ...]  # (length, error) of every length tried


ESCALATION_FLOOR = 0.5  # nats per image: an error bound below this is small enough whatever the difference


class Escalation(NamedTuple):
    """When `escalating_ais` stops: its error bound below `tolerance` nats per image (`escalation_tolerance`), or
    the next length past `max_intermediate`; the bound's BDMC part on `bdmc_images` simulated images (0: none)."""

    tolerance: float
    max_intermediate: int
    bdmc_images: int


def escalation_tolerance(difference: float) -> float:
    """The error bound that decides a difference of `difference` nats: a quarter of it, or ESCALATION_FLOOR."""
    return max(abs(difference) / 4, ESCALATION_FLOOR)


def escalating_ais(
    model,
    x: torch.Tensor,
    log_is: torch.Tensor | None,
    escalation: Escalation,
    settings: AISSettings,
    generator,
    proposal: GaussianProposal | None = None,
    diagnostics: dict | None = None,
) -> Escalated:
    """AIS on x (N, P) with settings.n_intermediate, twice, four times, ... as many distributions (the other settings
    fixed, BDMC's too) until the error bound max(|mean log_is - mean AIS|, BDMC gap) is below escalation.tolerance
    nats per image, or the next length would pass escalation.max_intermediate. log_is: (N,) the IS estimate on the
    same images (None: the BDMC gap alone). Each length's AIS and BDMC are fresh runs (the generator advances)."""
    history, n = [], settings.n_intermediate
    while True:
        s = settings._replace(n_intermediate=n)
        log_px = ais(model, x, s, generator, proposal=proposal, diagnostics=diagnostics)
        gap = bdmc(model, escalation.bdmc_images, s, generator).gap if escalation.bdmc_images else math.nan
        parts = [gap] if escalation.bdmc_images else []
        parts += [abs(log_is.mean().item() - log_px.mean().item())] if log_is is not None else []
        error = max(parts) if parts else math.nan
        history.append((n, error))
        if not error >= escalation.tolerance or 2 * n > escalation.max_intermediate:  # small enough, or the cap
            return Escalated(log_px, n, gap, error, tuple(history))
        n *= 2


class BDMCResult(NamedTuple):
    x: torch.Tensor  # (N, P) the simulated images
    lower: torch.Tensor  # (N,) forward AIS: a stochastic lower bound of log p(x), nats
    upper: torch.Tensor  # (N,) reverse AIS: a stochastic upper bound of log p(x), nats

    @property
    def gap(self) -> float:
        """Mean of upper - lower, nats per image: how far the forward estimate can be below log p(x)."""
        return (self.upper - self.lower).mean().item()


@torch.no_grad()
def simulate(model, n: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(z*, x): z* ~ p(z) (n, D) (model.prior_sample) and x ~ p(x | z*) (n, P), so z* is an exact posterior sample
    for x."""
    z = model.prior_sample(n, generator)
    return z, model.likelihood.sample(model.decoder(z), generator)


def bdmc(model, n_images: int, settings: AISSettings = DEFAULT_AIS, generator=None) -> BDMCResult:
    """Bidirectional Monte Carlo on n_images simulated from the model: forward AIS (as `ais`, the same settings) and
    reverse AIS from the exact posterior sample, every chain of an image starting there. Returns BDMCResult."""
    s = settings
    z_star, x = simulate(model, n_images, generator)
    q_all = _start(model, x, generator, s.start, None)
    betas = ais_lib.sigmoid_schedule(s.n_intermediate).tolist()
    chunk = max(1, s.batch_size // s.n_chains)
    lower, upper = [], []
    for i in range(0, n_images, chunk):
        xb, q, zb = x[i : i + chunk], q_all[i : i + chunk], z_star[i : i + chunk]
        z, _ = q.sample(s.n_chains, generator)
        log_w, _ = ais_lib.run(model, xb, q, z, betas, s.n_leapfrog, s.step_size, generator, s.adapt)
        lower.append(log_mean_exp(log_w, 0))
        z = zb.expand(s.n_chains, *zb.shape).clone()
        log_w, _ = ais_lib.run(model, xb, q, z, betas[::-1], s.n_leapfrog, s.step_size, generator, s.adapt)
        upper.append(-log_mean_exp(log_w, 0))
    return BDMCResult(x, torch.cat(lower), torch.cat(upper))
