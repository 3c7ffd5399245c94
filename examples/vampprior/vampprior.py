"""The VampPrior VAE (Tomczak and Welling, "VAE with a VampPrior", AISTATS 2018) as a lae-bench model family.

The prior is the mixture of the encoder's own posteriors at K learned pseudo-inputs u_1..u_K:

    p(z) = (1/K) sum_k q(z | u_k),    q(z | u) = N(mu(u), diag(exp(logvar(u))))   (the VAE's Gaussian encoder)

trained, with the encoder and the decoder, on the single-sample ELBO E_q[log p(x | z) + log p(z) - log q(z | x)]
(no closed-form KL against a mixture: the sample's log-densities). The pseudo-inputs live in image space, u_k =
sigmoid(a_k) in (0, 1)^P, initialised near 0.5.

What the suite's estimators rely on: they reach the prior only through `log_joint`, which the base class builds from
`log_prior`, and BDMC's simulated images and `generate` draw from `prior_sample`; both are overridden here, so IS, AIS
(from the proposal or the prior) and BDMC estimate this model's log p(x). The importance-sampling proposal is the
VAE's (a Laplace fit of log_joint at the posterior mode, lae.proposals.laplace), now with the mixture prior inside.

Registered by this package's entry point (pyproject.toml: group lae_bench.families, vampprior = "vampprior:FAMILY");
lae.families discovers it, so `python -m bench train --model vampprior` works once the package is installed.
Shapes: x (N, P) in [0, 1], z (..., N, D); log-densities in nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lae.likelihoods import LOG_2PI
from lae.models import ModelConfig
from lae.vae import VAE

PSEUDO_INIT_STD = 0.01  # the pseudo-inputs' initial logits: N(0, 0.01^2), images of about 0.5 everywhere


@dataclass(frozen=True)
class VampPriorConfig(ModelConfig):
    n_pseudo: int = 50  # K pseudo-inputs (the paper: 500 on MNIST; fewer keep the prior cheap)


class VampPrior(VAE):
    config: VampPriorConfig

    def __init__(self, config: VampPriorConfig):
        super().__init__(config)
        self.pseudo_logits = nn.Parameter(PSEUDO_INIT_STD * torch.randn(config.n_pseudo, config.n_pixels))

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior's K Gaussians: means and log-variances, (K, D) each (the encoder at the pseudo-inputs)."""
        return self.encode(torch.sigmoid(self.pseudo_logits))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log (1/K) sum_k N(z; mu_k, diag(var_k)): z (..., D) -> (...) nats."""
        mu, logvar = self.components()
        diff = z.unsqueeze(-2) - mu  # (..., K, D)
        log_n = -0.5 * (diff * diff * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)  # (..., K)
        return torch.logsumexp(log_n, -1) - math.log(self.config.n_pseudo)

    @torch.no_grad()
    def prior_sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """n draws of the mixture: a uniform component each, then its Gaussian: (n, D)."""
        mu, logvar = self.components()
        k = torch.randint(self.config.n_pseudo, (n,), generator=generator, device=mu.device)
        eps = torch.randn((n, mu.shape[-1]), generator=generator, device=mu.device, dtype=mu.dtype)
        return mu[k] + (0.5 * logvar[k]).exp() * eps

    def elbo(self, x: torch.Tensor, generator, decoder_params: dict | None = None) -> torch.Tensor:
        """Single-sample ELBO, (N,) nats: log p(x | z) + log p(z) - log q(z | x) at one z ~ q(z | x)."""
        if decoder_params is not None:
            raise ValueError("VampPrior.elbo takes no decoder_params")
        mu, logvar = self.encode(x)
        z, eps = self._draw(mu, logvar, 1, generator)
        log_q = -0.5 * (eps * eps + logvar + LOG_2PI).sum(-1)  # (1, N)
        return (self.log_joint(x, z) - log_q)[0]


FAMILY = (VampPriorConfig, VampPrior)  # the entry point's value: lae.families reads (config class, model class)
