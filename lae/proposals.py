"""Importance-sampling proposals: a Gaussian per image, and the Laplace construction every family's proposal uses.

A model's `proposal(x, generator)` returns a GaussianProposal (lae.models), `laplace(model.log_joint, x,
center)` from a center the family supplies:
- VAE family: the encoder's mean (the amortized q(z|x) itself, a diagonal Gaussian, puts importance sampling
  several tenths of a nat per image low on MNIST: the amortization gap).
- LAE: the mean of its ALD posterior samples.
From that center: up to NEWTON_STEPS
  safeguarded Newton steps toward the posterior mode (a step is kept per image only if it raises log p(x, z)), and
  covariance INFLATE^2 * H^-1, H = Hessian of -log p(x, z) in z at that center (Laplace), its eigenvalues floored at
  MIN_PRECISION. The inflation keeps the proposal a little wider than the posterior (a too-narrow proposal makes IS
  weights heavy-tailed). For a ReLU decoder with Bernoulli or logistic likelihood H >= I (the log-likelihood is
  concave in the piecewise-linear logits), so the floor of 1, the prior precision, only guards against numerical
  trouble.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lae.likelihoods import LOG_2PI

INFLATE = 1.2  # proposal std inflation of the Laplace proposal (multiplies the covariance by its square)
NEWTON_STEPS = 3  # Newton steps from the starting center toward the posterior mode (kept only if they help)
MIN_PRECISION = 1.0  # eigenvalue floor of the Laplace precision (nats per unit z^2)

# log p(x, z): x (N, P), z (N, D) -> (N,) nats (a model's `log_joint`)
LogJoint = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class GaussianProposal:
    """q(z | x_i) = N(mean_i, L_i L_i^T): mean (N, D), scale_tril (N, D, D) lower triangular."""

    mean: torch.Tensor
    scale_tril: torch.Tensor

    def sample(self, k: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """k draws per image and their log q: (k, N, D), (k, N) nats."""
        eps = torch.randn((k, *self.mean.shape), generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        z = self.mean + torch.einsum("nij,knj->kni", self.scale_tril, eps)
        log_det = torch.diagonal(self.scale_tril, dim1=-2, dim2=-1).log().sum(-1)  # (N,)
        log_q = -0.5 * (eps * eps).sum(-1) - log_det - 0.5 * self.mean.shape[-1] * LOG_2PI
        return z, log_q

    def log_prob_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log q(z) (C, N) nats and its gradient in z (C, N, D), for z (C, N, D)."""
        u = torch.linalg.solve_triangular(self.scale_tril, (z - self.mean).permute(1, 2, 0), upper=False)  # (N, D, C)
        log_det = torch.diagonal(self.scale_tril, dim1=-2, dim2=-1).log().sum(-1)  # (N,)
        log_q = -0.5 * (u * u).sum(1).T - log_det - 0.5 * self.mean.shape[-1] * LOG_2PI
        grad = -torch.linalg.solve_triangular(self.scale_tril.transpose(-1, -2), u, upper=True)
        return log_q, grad.permute(2, 0, 1)

    def __getitem__(self, images: slice) -> GaussianProposal:
        """The proposal of some of the images: q[i:j]."""
        return GaussianProposal(self.mean[images], self.scale_tril[images])

    @staticmethod
    def cat(parts: list[GaussianProposal]) -> GaussianProposal:
        """One proposal over the images of several, in order."""
        return GaussianProposal(torch.cat([q.mean for q in parts]), torch.cat([q.scale_tril for q in parts]))


def _energy_grad_hessian(log_joint: LogJoint, x: torch.Tensor, z: torch.Tensor):
    """-log p(x_i, z_i) (N,), its gradient (N, D) and Hessian (N, D, D) in z_i for each image, z (N, D), all
    detached. Images are independent, so D double-backward passes of the summed gradient give every image's
    Hessian rows."""
    d = z.shape[-1]
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        energy = -log_joint(x, z)
        (g,) = torch.autograd.grad(energy.sum(), z, create_graph=True)
        rows = [torch.autograd.grad(g[:, j].sum(), z, retain_graph=j < d - 1)[0] for j in range(d)]
    h = torch.stack(rows, 1).detach()
    return energy.detach(), g.detach(), 0.5 * (h + h.transpose(1, 2))


def _floored_inverse(h: torch.Tensor) -> torch.Tensor:
    """(N, D, D) symmetric -> inverse with eigenvalues floored at MIN_PRECISION, float64."""
    evals, evecs = torch.linalg.eigh(h.double())
    return (evecs / evals.clamp(min=MIN_PRECISION).unsqueeze(-2)) @ evecs.transpose(-1, -2)


def laplace(log_joint: LogJoint, x: torch.Tensor, center: torch.Tensor, inflate: float = INFLATE) -> GaussianProposal:
    """Laplace-shaped Gaussian for images x (N, P), started at center (N, D) (module docstring)."""
    energy, g, h = _energy_grad_hessian(log_joint, x, center)
    for _ in range(NEWTON_STEPS):  # safeguarded Newton toward the mode: a step is kept only where it lowers the energy
        cand = center - (_floored_inverse(h) @ g.double().unsqueeze(-1)).squeeze(-1).to(center.dtype)
        e2, g2, h2 = _energy_grad_hessian(log_joint, x, cand)
        better = e2 < energy
        m = better.view(-1, 1)
        center, energy = torch.where(m, cand, center), torch.where(better, e2, energy)
        g, h = torch.where(m, g2, g), torch.where(m.unsqueeze(-1), h2, h)
    cov = inflate**2 * _floored_inverse(h)
    return GaussianProposal(center, torch.linalg.cholesky(cov).to(center.dtype))
