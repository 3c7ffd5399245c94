"""Annealed importance sampling (Neal 2001), forward and reverse, the engine of lae.estimators.ais and
lae.estimators.bdmc (bidirectional Monte Carlo: Grosse, Ghahramani & Adams 2015; Wu et al. 2017).

The path runs from a Gaussian start q(z | x_i) = N(mean_i, L_i L_i^T) to the posterior:
    f_b(z) = q(z)^(1 - b) p(x, z)^b,   0 = b_0 < b_1 < ... < b_{K+1} = 1,   so Z_0 = 1 and Z_1 = p(x).
q is the prior N(0, I) (the classical decoder-only path, `prior`) or the model's own importance-sampling proposal
(a Laplace fit at the posterior mode): a start close to the posterior makes the path short. Each of the K
intermediate distributions gets one HMC transition (`n_leapfrog` leapfrog steps, Metropolis-corrected) in the
whitened coordinates u = L^-1 (z - mean), i.e. HMC with mass matrix (L L^T)^-1, so where q has the posterior's
shape every direction moves alike. The leapfrog step is per image, adapted after every transition toward a mean
acceptance of TARGET_ACCEPT over that image's chains (lae.adaptation.sign_rule; it depends only on the past, so
every transition leaves its f_b invariant).

`run` along an ascending schedule from exact draws of q is forward AIS: log w = sum_t (b_t - b_{t-1}) [log p(x, z)
- log q(z)], and log-mean-exp over chains is a stochastic lower bound of log p(x). Along the reversed schedule from
an exact posterior sample it is reverse AIS, whose weights estimate 1 / p(x) without bias, so -log-mean-exp of
them is a stochastic upper bound.

Shapes: x (N, P); z (C, N, D), C chains per image; log weights (C, N) float64.
Cost: K * n_leapfrog * C likelihood-and-gradient evaluations per image and direction.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from lae import adaptation
from lae.proposals import GaussianProposal

TARGET_ACCEPT = 0.65  # HMC acceptance the per-image leapfrog step is adapted toward


class AISInfo(NamedTuple):
    accept: float  # mean HMC acceptance over transitions, chains and images
    step_size: torch.Tensor  # (N,) final leapfrog step per image (whitened units)


def sigmoid_schedule(n_intermediate: int, delta: float = 4.0) -> torch.Tensor:
    """Inverse temperatures 0 = b_0 < b_1 < ... < b_K < b_{K+1} = 1 (K = n_intermediate), float64,
    spaced as a rescaled sigmoid (Grosse et al. 2015): small steps near both ends."""
    t = torch.linspace(-delta, delta, n_intermediate + 2, dtype=torch.float64)
    s = torch.sigmoid(t)
    return (s - s[0]) / (s[-1] - s[0])


def prior(n: int, d: int, like: torch.Tensor) -> GaussianProposal:
    """N(0, I) for n images as a GaussianProposal (the decoder-only start), on `like`'s device and dtype."""
    eye = torch.eye(d, device=like.device, dtype=like.dtype)
    return GaussianProposal(torch.zeros(n, d, device=like.device, dtype=like.dtype), eye.expand(n, d, d))


def _joint(model, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x, z) (C, N) and its gradient in z (C, N, D), detached: one decoder forward and backward."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        lj = model.log_joint(x, z)
        (g,) = torch.autograd.grad(lj.sum(), z)
    return lj.detach(), g


def run(
    model,
    x: torch.Tensor,
    start: GaussianProposal,
    z: torch.Tensor,
    betas: list[float],
    n_leapfrog: int,
    step_size: float,
    generator,
    adapt: bool = True,
) -> tuple[torch.Tensor, AISInfo]:
    """AIS on the path from `start` to the posterior along `betas` (ascending: forward; descending from 1:
    reverse), from positions z (C, N, D) drawn from f_{betas[0]}. Returns log weights (C, N) float64 and AISInfo."""
    n_chains, n, d = z.shape
    kw = dict(generator=generator, device=x.device, dtype=x.dtype)
    L = start.scale_tril  # (N, D, D); z = mean + L u

    def state(z):
        lj, gj = _joint(model, x, z)
        lq, gq = start.log_prob_and_grad(z)
        return lj, gj, lq, gq

    def grad_u(b, gj, gq):  # dU/du = L^T dU/dz with U = -(1 - b) log q - b log p(x, z)
        return -torch.einsum("nji,cnj->cni", L, (1 - b) * gq + b * gj)

    lj, gj, lq, gq = state(z)
    log_w = torch.zeros(n_chains, n, dtype=torch.float64, device=x.device)
    eps0 = torch.full((n,), float(step_size), device=x.device, dtype=x.dtype)
    eps_state = adaptation.init(eps0.log(), eps0)
    acc_total = 0.0
    for t in range(1, len(betas) - 1):
        b = betas[t]
        log_w += (b - betas[t - 1]) * (lj - lq).double()
        e = adaptation.final(eps_state).view(1, n, 1)
        p = torch.randn((n_chains, n, d), **kw)
        h0 = -((1 - b) * lq + b * lj) + 0.5 * (p * p).sum(-1)
        zn, new = z, (lj, gj, lq, gq)
        pn = p - 0.5 * e * grad_u(b, new[1], new[3])
        for leap in range(n_leapfrog):
            zn = zn + e * torch.einsum("nij,cnj->cni", L, pn)
            new = state(zn)
            pn = pn - (e if leap < n_leapfrog - 1 else 0.5 * e) * grad_u(b, new[1], new[3])
        h1 = -((1 - b) * new[2] + b * new[0]) + 0.5 * (pn * pn).sum(-1)
        log_alpha = torch.nan_to_num(h0 - h1, nan=-math.inf)
        accepted = torch.rand(log_alpha.shape, **kw).log() < log_alpha
        m = accepted.unsqueeze(-1)
        z = torch.where(m, zn, z)
        lj, lq = torch.where(accepted, new[0], lj), torch.where(accepted, new[2], lq)
        gj, gq = torch.where(m, new[1], gj), torch.where(m, new[3], gq)
        rate = log_alpha.clamp(max=0.0).exp().mean(0)  # (N,) mean over chains
        acc_total += rate.mean().item()
        if adapt:
            eps_state = adaptation.sign_rule(eps_state, rate, TARGET_ACCEPT)
    log_w += (betas[-1] - betas[-2]) * (lj - lq).double()
    return log_w, AISInfo(acc_total / max(1, len(betas) - 2), adaptation.final(eps_state))
