"""The interface every model family shares. Each family (lae.vae, lae.lae) states what it offers by overriding
these methods; lae.families lists the families and builds them.

Shapes: x (N, P) images in [0, 1]; z (..., N, D). Losses and log-densities are in nats per image.

What the harness and the estimators ask of a model:
    loss(x, generator) -> (scalar, stats)   training objective; then, after the optimizer step, update()
    elbo(x, generator) -> (N,) | None        single-sample ELBO, None for a family without one (LAE)
    proposal(x, generator)                  importance-sampling proposal, a GaussianProposal over (N, D)
    proposal_images() -> int | None         how many images `proposal` must be built from at once
    posterior_samples(x, n, generator)      (n, N, D) approximate posterior samples
    representation(x) -> (N, D)             deterministic, differentiable code
    log_joint(x, z), generate(n, generator)
    log_prior(z), prior_sample(n, generator)  N(0, I) unless a family overrides both (the estimators, AIS, BDMC's
                                             simulated images and the samples of `generate` all go through them)
    exact_posterior (class attribute)       True when posterior_samples are exact posterior draws (MCMC: after
                                             its burn-in) for any parameters; lae.conformance checks the claim
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from lae.likelihoods import log_prior, make_likelihood
from lae.nets import build_decoder
from lae.proposals import GaussianProposal
from lae.utils import model_device


@dataclass(frozen=True)
class ModelConfig:
    """What every model shares: the networks and the likelihood. Each family's config (lae.vae, lae.lae)
    extends it and names, in `run_options`, the RunConfig fields it takes."""

    n_pixels: int
    latent_dim: int = 16
    encoder_depth: int = 1
    decoder_depth: int = 1
    hidden: int = 256
    architecture: str = "mlp"  # lae.nets.ARCHITECTURES
    likelihood: str = "bernoulli"  # bernoulli | logistic | logistic_shared | gaussian (tests: fixed noise_std)
    noise_std: float = 1.0  # gaussian likelihood only
    run_options: ClassVar[tuple[str, ...]] = ()  # RunConfig fields this family takes (None there: the default)

    # What the harness's memory estimate (lae.config.RunConfig.memory_bytes) needs to know of a family, asked of its
    # config class with the run's values of `run_options` (None: the family's default), so that no harness file
    # names a family. The defaults describe a Gaussian-encoder family decoding one latent sample per image.
    @classmethod
    def option(cls, options: dict, name: str):
        """The value of one of `run_options` in a run: options[name], or this config's default when None/absent."""
        value = options.get(name)
        return getattr(cls, name) if value is None else value

    @classmethod
    def latent_samples(cls, options: dict) -> int:
        """Decoder evaluations per image in one training step (IWAE k, LAE n_chains x (n_steps + 1), ...)."""
        return 1

    @classmethod
    def head_parameters(cls, options: dict, latent_dim: int, features: int) -> int:
        """Parameters of the encoder's last layer on `features` trunk features: a Gaussian head (mean, log-variance)."""
        return 2 * latent_dim * (features + 1)


class LatentModel(nn.Module):
    """Prior N(0, I) (a family may override `log_prior` and `prior_sample` together), a decoder and a likelihood;
    subclasses add inference and a training loss."""

    exact_posterior: ClassVar[bool] = False  # posterior_samples draw from p(z | x) itself (lae.conformance checks)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.decoder = build_decoder(config)
        self.likelihood = make_likelihood(config.likelihood, config.n_pixels, config.noise_std)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) in nats: x (N, P), z (..., N, D) -> (..., N)."""
        return self.likelihood(x, self.decoder(z))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) in nats: z (..., D) -> (...). N(0, I) here."""
        return log_prior(z)

    def prior_sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """n draws z ~ p(z): (n, D), on the model's device. N(0, I) here."""
        return torch.randn(n, self.config.latent_dim, generator=generator, device=model_device(self))

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) = log p(z) + log p(x | z): (..., N)."""
        return self.log_prior(z) + self.log_likelihood(x, z)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, dict]:
        """Training objective (scalar, nats per image) and diagnostics as detached 0-d tensors (the trainer reads them
        once per logging interval: no host synchronisation inside a step). Changes no state: a family with a
        state of its own (LAE's chains and step size) keeps the new one for `update`."""
        raise NotImplementedError

    def update(self) -> None:
        """Apply the state proposed by the last training-mode `loss` (the trainer calls it after the optimizer
        step). Nothing to apply for families without a state of their own."""

    def elbo(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor | None:
        """Single-sample ELBO per image, (N,) nats, for families that have one; None for those that
        do not (LAE: no variational distribution)."""
        return None

    def proposal(self, x: torch.Tensor, generator: torch.Generator | None) -> GaussianProposal:
        """The family's importance-sampling proposal q(z | x) for images x (N, P), over z (N, D)."""
        raise NotImplementedError(f"{type(self).__name__} has no importance-sampling proposal")

    def proposal_images(self) -> int | None:
        """How many images `proposal` must be built from at once: None (any number) unless the proposal runs a
        sampler whose step size is tied to its batch size (LAE: its training batch size, LAEConfig.batch_size)."""
        return None

    def posterior_samples(self, x: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """n approximate posterior samples per image: (n, N, D)."""
        raise NotImplementedError

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic, differentiable code of x: (N, D)."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """n images from the prior through the decoder's mean: (n, P)."""
        z = self.prior_sample(n, generator)
        return self.likelihood.mean(self.decoder(z))
