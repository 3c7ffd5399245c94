"""Test log-likelihood estimators: importance sampling (IS) with the model's own proposal, and
annealed importance sampling (AIS) from the prior, which needs only the decoder.

Both return log p(x) estimates in nats per image, shape (N,), for images x (N, P). Both are
stochastic lower bounds in expectation (E[log p_hat(x)] <= log p(x), Jensen), so higher is better
and a gap to the truth is estimator bias, not model quality.

    log_px = importance_sampling(model, x, n_samples=1000, generator=gen)
    log_px = ais(model, x, n_intermediate=500, n_chains=8, n_leapfrog=2, step_size=0.1, generator=gen)

IS proposals: the model's own, `model.proposal(x, generator, ald_batch)` (lae.models; lae.proposals for the
Gaussians): the VAE family's q(z|x), LAE's Laplace-shaped Gaussian from its ALD posterior samples. A proposal that
runs ALD is built on chunks of `model.proposal_images(ald_batch)` images (ALD's step size is tied to its batch size).

AIS (Neal 2001; Wu et al. 2017 for decoder-based models): geometric path
pi_b(z) ~ N(z; 0, I) p(x|z)^b from b = 0 (the prior, sampled exactly) to b = 1 (the posterior),
`n_intermediate` distributions strictly between with a sigmoid schedule (dense at both ends),
one HMC transition (`n_leapfrog` leapfrog steps, MH-corrected) at each intermediate distribution,
log-weights accumulated as sum_t (b_t - b_{t-1}) log p(x | z_{t-1}), then log-mean-exp over
`n_chains` independent chains per image. The leapfrog step size is per image, adapted after every
transition toward TARGET_ACCEPT mean acceptance over that image's chains (lae.adaptation.sign_rule; the kernel
at step t depends only on the past, so every transition still leaves pi_{b_t} invariant). Images and chains
are one (C, N, D) tensor; each leapfrog step costs one decoder forward + backward in z.
Cost: n_intermediate * n_leapfrog * n_chains likelihood-and-gradient evaluations per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from lae import adaptation
from lae.utils import model_device

AIS_INTERMEDIATE = 500  # defaults of the headline AIS estimate (bench.metrics "default"/"full" presets)
AIS_CHAINS = 8
AIS_LEAPFROG = 2
AIS_STEP_SIZE = 0.1  # initial leapfrog step in z; adapted per image
TARGET_ACCEPT = 0.65  # HMC acceptance the per-image step size is adapted toward (lae.adaptation.sign_rule)
LAE_ALD_BATCH = 100  # images per ALD run when the caller does not pass RunConfig.batch_size
DEFAULT_BATCH = 2048  # (sample, image) pairs per decoder call


# ----------------------------------------------------------------------------------------- helpers
def log_mean_exp(a: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(a, dim) - math.log(a.shape[dim])


def loglik_and_grad(model, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x | z) (..., N) nats and its gradient in z (..., N, D), both detached; one forward and
    one backward of the decoder (no graph to the parameters is kept)."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        ll = model.log_likelihood(x, z)
        (g,) = torch.autograd.grad(ll.sum(), z)
    return ll.detach(), g


# ------------------------------------------------------------------------------ importance sampling
def importance_sampling(
    model,
    x: torch.Tensor,
    n_samples: int,
    generator,
    batch_size: int = DEFAULT_BATCH,
    ald_batch: int = LAE_ALD_BATCH,
    on_chunk: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """log p(x) ~ logsumexp_k [log p(x, z_k) - log q(z_k | x)] - log K, z_k ~ q (the model's
    proposal): (N,) nats per image. Batched over images and samples: at most `batch_size`
    (sample, image) pairs per decoder call. ald_batch: LAE only, pass RunConfig.batch_size (ALD's
    step size is tuned to it). on_chunk(n_images_in_chunk) reports progress."""
    x = x.to(model_device(model))
    data_chunk = model.proposal_images(ald_batch)
    if data_chunk is None:  # as many images as fit n_samples draws each in one decoder call
        data_chunk = max(1, batch_size // min(n_samples, batch_size))
    out = []
    for xb in x.split(data_chunk):
        q = model.proposal(xb, generator, ald_batch)
        k_chunk = max(1, batch_size // xb.shape[0])
        log_w = []
        with torch.no_grad():
            for start in range(0, n_samples, k_chunk):
                z, log_q = q.sample(min(k_chunk, n_samples - start), generator)
                log_w.append(model.log_joint(xb, z) - log_q)
        out.append(log_mean_exp(torch.cat(log_w), 0))
        if on_chunk is not None:
            on_chunk(xb.shape[0])
    return torch.cat(out)


# ------------------------------------------------------------------------------------------------ AIS
def sigmoid_schedule(n_intermediate: int, delta: float = 4.0) -> torch.Tensor:
    """Inverse temperatures 0 = b_0 < b_1 < ... < b_K < b_{K+1} = 1 (K = n_intermediate), float64,
    spaced as a rescaled sigmoid (Grosse et al. 2015): small steps near the prior and the posterior."""
    t = torch.linspace(-delta, delta, n_intermediate + 2, dtype=torch.float64)
    s = torch.sigmoid(t)
    return (s - s[0]) / (s[-1] - s[0])


def ais(
    model,
    x: torch.Tensor,
    n_intermediate: int = AIS_INTERMEDIATE,
    n_chains: int = AIS_CHAINS,
    n_leapfrog: int = AIS_LEAPFROG,
    step_size: float = AIS_STEP_SIZE,
    generator=None,
    batch_size: int = DEFAULT_BATCH,
    adapt: bool = True,
    on_chunk: Callable[[int], None] | None = None,
    diagnostics: dict | None = None,
) -> torch.Tensor:
    """AIS estimate of log p(x): (N,) nats per image (module docstring for the algorithm).

    n_intermediate: distributions strictly between prior and posterior (one HMC transition each);
    n_chains: independent AIS runs per image; n_leapfrog: leapfrog steps per transition;
    step_size: initial leapfrog step (units of z), adapted per image unless adapt=False.
    Images are processed in chunks of batch_size // n_chains. diagnostics, if given, receives
    "accept" (mean HMC acceptance) and "step_size" (mean final step size)."""
    x = x.to(model_device(model))
    betas = sigmoid_schedule(n_intermediate).tolist()
    chunk = max(1, batch_size // n_chains)
    out, accepts, steps = [], [], []
    for xb in x.split(chunk):
        log_w, acc, eps = _ais_chunk(model, xb, betas, n_chains, n_leapfrog, step_size, generator, adapt)
        out.append(log_mean_exp(log_w, 0))
        accepts.append(acc * xb.shape[0])
        steps.append(eps.sum().item())
        if on_chunk is not None:
            on_chunk(xb.shape[0])
    if diagnostics is not None:
        diagnostics["accept"] = sum(accepts) / x.shape[0]
        diagnostics["step_size"] = sum(steps) / x.shape[0]
    return torch.cat(out)


def _ais_chunk(model, x, betas, n_chains, n_leapfrog, step_size, generator, adapt):
    """AIS log-weights (C, N) for one chunk of images, the mean acceptance and final step sizes (N,)."""
    n, d = x.shape[0], model.config.latent_dim
    kw = dict(generator=generator, device=x.device, dtype=x.dtype)
    z = torch.randn((n_chains, n, d), **kw)  # exact draws from pi_0 = N(0, I)
    ll, gll = loglik_and_grad(model, x, z)
    log_w = torch.zeros(n_chains, n, dtype=torch.float64, device=x.device)
    eps0 = torch.full((n,), float(step_size), device=x.device, dtype=x.dtype)
    eps_state = adaptation.init(eps0.log(), eps0)  # the leapfrog step per image, (N,)
    acc_total, n_trans = 0.0, 0
    for t in range(1, len(betas) - 1):
        b = betas[t]
        log_w += (b - betas[t - 1]) * ll.double()
        # One HMC transition leaving pi_b invariant. U(z) = |z|^2 / 2 - b log p(x|z).
        e = adaptation.final(eps_state).view(1, n, 1)
        p = torch.randn((n_chains, n, d), **kw)
        u0 = 0.5 * (z * z).sum(-1) - b * ll
        h0 = u0 + 0.5 * (p * p).sum(-1)
        zn, lln, glln = z, ll, gll
        pn = p - 0.5 * e * (zn - b * glln)
        for leap in range(n_leapfrog):
            zn = zn + e * pn
            lln, glln = loglik_and_grad(model, x, zn)
            grad_u = zn - b * glln
            pn = pn - (e if leap < n_leapfrog - 1 else 0.5 * e) * grad_u
        h1 = 0.5 * (zn * zn).sum(-1) - b * lln + 0.5 * (pn * pn).sum(-1)
        log_alpha = torch.nan_to_num(h0 - h1, nan=-math.inf)
        u = torch.rand(log_alpha.shape, generator=generator, device=x.device, dtype=x.dtype)
        accepted = u.log() < log_alpha
        m = accepted.unsqueeze(-1)
        z, ll, gll = torch.where(m, zn, z), torch.where(accepted, lln, ll), torch.where(m, glln, gll)
        rate = log_alpha.clamp(max=0.0).exp().mean(0)  # (N,) mean over chains
        acc_total += rate.mean().item()
        n_trans += 1
        if adapt:
            eps_state = adaptation.sign_rule(eps_state, rate, TARGET_ACCEPT)
    log_w += (betas[-1] - betas[-2]) * ll.double()
    return log_w, acc_total / max(1, n_trans), adaptation.final(eps_state)
