"""The VAE family: a Gaussian encoder q(z|x) trained on the ELBO (VAE), the importance-weighted
bound (IWAE, Burda et al. 2015), or the ELBO with the decoder trained on MALA-refined samples
(Langevin-refined VAE, Hoffman 2017)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from lae import mala, proposals
from lae.likelihoods import LOG_2PI
from lae.models import LatentModel, ModelConfig
from lae.nets import build_trunk, initialize

NEGLIGIBLE_LOG_WEIGHT = 40.0  # IWAE: log importance weights this far below the largest are left out (exp(-40) ~ 4e-18)


@dataclass(frozen=True)
class VAEConfig(ModelConfig):
    """The VAE takes the shared fields only."""


@dataclass(frozen=True)
class IWAEConfig(ModelConfig):
    k: int = 5  # importance samples in the bound
    run_options = ("k",)

    @classmethod
    def latent_samples(cls, options: dict) -> int:
        return cls.option(options, "k")


@dataclass(frozen=True)
class LVAEConfig(ModelConfig):
    step_size: float = 1e-2  # MALA step on z (per data point)
    n_steps: int = 2
    mh: bool = True
    run_options = ("step_size", "n_steps", "mh")

    @classmethod
    def latent_samples(cls, options: dict) -> int:
        return cls.option(options, "n_steps") + 1


class VAE(LatentModel):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.trunk, n_features = build_trunk(config)
        self.head = nn.Linear(n_features, 2 * config.latent_dim)
        initialize(self, config.architecture)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) = N(mu, diag(exp(logvar))): two (N, D) tensors."""
        mu, logvar = self.head(self.trunk(x)).chunk(2, dim=-1)
        return mu, logvar.clamp(-20.0, 10.0)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def _draw(self, mu, logvar, n, generator):
        eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + (0.5 * logvar).exp() * eps, eps

    def log_weights(self, x: torch.Tensor, k: int, generator) -> torch.Tensor:
        """log p(x, z_j) - log q(z_j | x) for k draws z_j ~ q: (k, N) nats."""
        mu, logvar = self.encode(x)
        z, eps = self._draw(mu, logvar, k, generator)
        log_q = -0.5 * (eps * eps + logvar + LOG_2PI).sum(-1)
        return self.log_joint(x, z) - log_q

    def elbo(self, x: torch.Tensor, generator, decoder_params: dict | None = None) -> torch.Tensor:
        """Single-sample ELBO with the analytic KL: (N,) nats. decoder_params overrides the decoder's
        weights (the Langevin-refined VAE passes detached ones)."""
        mu, logvar = self.encode(x)
        z = self._draw(mu, logvar, 1, generator)[0][0]
        out = self.decoder(z) if decoder_params is None else functional_call(self.decoder, decoder_params, (z,))
        kl = 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum(-1)
        return self.likelihood(x, out) - kl

    def loss(self, x, generator):
        elbo = self.elbo(x, generator).mean()
        return -elbo, {"elbo": elbo.detach()}

    def posterior_samples(self, x, n, generator):
        mu, logvar = self.encode(x)
        return self._draw(mu, logvar, n, generator)[0]

    def proposal(self, x, generator):
        """Laplace-shaped Gaussian (lae.proposals.laplace) from the encoder's mean: Newton steps to the posterior
        mode, covariance from the Hessian there (for LVAE too: the amortized encoder, without refinement)."""
        with torch.no_grad():
            mu, _ = self.encode(x)
        return proposals.laplace(self.log_joint, x, mu)


class IWAE(VAE):
    config: IWAEConfig

    def loss(self, x, generator):
        """-(IWAE bound), nats per image. Importance weights below exp(-NEGLIGIBLE_LOG_WEIGHT) times the largest
        are left out: in float32 they change neither the bound (1 + 4e-18 == 1) nor any gradient above its rounding,
        but their gradients underflow to subnormal floats, which made the backward's matmuls up to 3x slower."""
        log_w = self.log_weights(x, self.config.k, generator)
        log_w = log_w.masked_fill(log_w < log_w.amax(0) - NEGLIGIBLE_LOG_WEIGHT, -math.inf)
        bound = (torch.logsumexp(log_w, 0) - math.log(self.config.k)).mean()
        return -bound, {"iwae_bound": bound.detach()}


class LVAE(VAE):
    """Encoder on the ELBO; decoder on -log p(x | z_T), z_T after n_steps MALA moves on z from q."""

    config: LVAEConfig

    def z_energy(self, x: torch.Tensor) -> mala.EnergyFn:
        """Per-image energy -log p(x_i, z_i) on z (N, D): one MALA chain per image."""

        def fn(z):
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                energy = -self.log_joint(x, z)
                (g,) = torch.autograd.grad(energy.sum(), z)
            return energy.detach(), g

        return fn

    def refine(self, x, z0, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n_steps MALA moves from z0 (N, D): (z_T, mean acceptance rate)."""
        c = self.config
        energy_fn = self.z_energy(x)
        state = mala.init(z0.detach(), energy_fn)
        rates = []
        for _ in range(c.n_steps):
            state, info = mala.step(generator, state, energy_fn, c.step_size, c.mh)
            rates.append(info.acceptance_rate.mean())
        return state.position, torch.stack(rates).mean()

    def loss(self, x, generator):
        """Training: -ELBO (encoder only) + -log p(x | z_T) (decoder only). Eval mode: -ELBO, so the
        reported figure is comparable with the VAE's."""
        if not self.training:
            return super().loss(x, generator)
        detached = {k: v.detach() for k, v in self.decoder.named_parameters()}
        elbo = self.elbo(x, generator, decoder_params=detached)
        with torch.no_grad():
            mu, logvar = self.encode(x)
            z0 = self._draw(mu, logvar, 1, generator)[0][0]
        z_t, rate = self.refine(x, z0, generator)
        decoder_nll = -self.log_likelihood(x, z_t).mean()
        elbo = elbo.mean()
        return -elbo + decoder_nll, {"elbo": elbo.detach(), "accept": rate, "decoder_nll": decoder_nll.detach()}

    def posterior_samples(self, x, n, generator):
        z0 = super().posterior_samples(x, n, generator).detach()  # (n, N, D)
        z_t, _ = self.refine(x.expand(n, *x.shape).reshape(-1, x.shape[-1]), z0.reshape(-1, z0.shape[-1]), generator)
        return z_t.reshape(z0.shape)
