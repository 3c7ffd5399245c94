"""VAE with normalizing flows (Rezende & Mohamed 2015): the Gaussian encoder's draw z_0 is pushed through K planar
flows, z_K = f_K(...f_1(z_0)), and log q(z_K | x) = log q_0(z_0 | x) - sum_k log |det df_k/dz|.

A planar flow is f(z) = z + u_hat tanh(w.z + b), with log |det| = log |1 + u_hat.psi(z)|, psi = tanh'(w.z + b) w.
u_hat = u + (m(w.u) - w.u) w / |w|^2, m(a) = -1 + softplus(a), keeps w.u_hat >= -1, so f is invertible and the
density formula, hence the bound, holds (Rezende & Mohamed, appendix A.1). The official LAE code's FlowVAE
(github iShohei220/LAE, baseline/Flow/model.py) uses u itself, without that constraint; everything else follows it:
3 flows, and the single-sample ELBO with the base distribution's entropy in closed form.

Shapes: z (..., N, D); log-determinants (..., N).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lae import proposals
from lae.likelihoods import LOG_2PI
from lae.models import ModelConfig
from lae.nets import initialize
from lae.vae import VAE


@dataclass(frozen=True)
class VAEFlowConfig(ModelConfig):
    n_flows: int = 3  # planar flows after the Gaussian encoder (the LAE paper's VAE-flow baseline: 3)


class PlanarFlow(nn.Module):
    """One planar flow on R^D; `w` is fc1's weight (1, D) with bias b, `u` is fc2's weight (D, 1)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(latent_dim, 1)
        self.fc2 = nn.Linear(1, latent_dim, bias=False)

    def u_hat(self) -> torch.Tensor:
        """The constrained u: (D,), with w.u_hat >= -1."""
        w, u = self.fc1.weight[0], self.fc2.weight[:, 0]
        wu = w @ u
        return u + (F.softplus(wu) - 1.0 - wu) * w / (w @ w).clamp(min=1e-12)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (..., D) -> (f(z) (..., D), log |det df/dz| (...))."""
        w, u_hat = self.fc1.weight[0], self.u_hat()
        a = z @ w + self.fc1.bias[0]  # (...)
        t = torch.tanh(a)
        out = z + t.unsqueeze(-1) * u_hat
        log_det = torch.log((1.0 + (1.0 - t * t) * (w @ u_hat)).abs().clamp(min=1e-30))
        return out, log_det


class VAEFlow(VAE):
    config: VAEFlowConfig

    def __init__(self, config: VAEFlowConfig):
        super().__init__(config)
        self.flows = nn.ModuleList(PlanarFlow(config.latent_dim) for _ in range(config.n_flows))
        initialize(self.flows, config.architecture)

    def flow(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_0 (..., D) -> (z_K (..., D), sum_k log |det| (...))."""
        z, total = z0, torch.zeros(z0.shape[:-1], device=z0.device, dtype=z0.dtype)
        for f in self.flows:
            z, log_det = f(z)
            total = total + log_det
        return z, total

    def log_weights(self, x, k, generator):
        """log p(x, z_K) - log q(z_K | x) for k draws: (k, N) nats."""
        mu, logvar = self.encode(x)
        z0, eps = self._draw(mu, logvar, k, generator)
        z, log_det = self.flow(z0)
        log_q = -0.5 * (eps * eps + logvar + LOG_2PI).sum(-1) - log_det
        return self.log_joint(x, z) - log_q

    def elbo(self, x, generator, decoder_params=None):
        """Single-sample ELBO: log p(x, z_K) + H[q_0] + sum_k log |det|, H in closed form: (N,) nats."""
        mu, logvar = self.encode(x)
        z, log_det = self.flow(self._draw(mu, logvar, 1, generator)[0][0])
        entropy = 0.5 * (logvar + 1.0 + LOG_2PI).sum(-1)
        return self.log_prior(z) + self.log_likelihood(x, z) + entropy + log_det

    def posterior_samples(self, x, n, generator):
        mu, logvar = self.encode(x)
        return self.flow(self._draw(mu, logvar, n, generator)[0])[0]

    def representation(self, x):
        return self.flow(self.encode(x)[0])[0]

    def proposal(self, x, generator):
        """Laplace-shaped Gaussian (lae.proposals.laplace) started from the flowed encoder mean."""
        with torch.no_grad():
            center = self.representation(x)
        return proposals.laplace(self.log_joint, x, center)
