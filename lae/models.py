"""The interface every model family shares, and `build_model`.

Shapes: x (N, P) images in [0, 1]; z (..., N, D). Losses are in nats per image.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import LAEConfig, LVAEConfig, IWAEConfig, ModelConfig, VAEConfig
from .likelihoods import log_prior, make_likelihood
from .nets import Decoder


class LatentModel(nn.Module):
    """Prior N(0, I), a decoder and a likelihood; subclasses add inference and a training loss."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.decoder = Decoder(config.latent_dim, config.hidden, config.decoder_depth, config.n_pixels)
        self.likelihood = make_likelihood(config.likelihood, config.n_pixels, config.noise_std)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) in nats: x (N, P), z (..., N, D) -> (..., N)."""
        return self.likelihood(x, self.decoder(z))

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) = log p(z) + log p(x | z): (..., N)."""
        return log_prior(z) + self.log_likelihood(x, z)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, dict]:
        """Training objective (scalar, nats per image) and float diagnostics. In eval mode a model
        leaves its state (LAE's chains) untouched."""
        raise NotImplementedError

    def elbo(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor | None:
        """Single-sample ELBO per image, (N,) nats, for families that have one; None for those that
        do not (LAE: no variational distribution)."""
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
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=device)
        return self.likelihood.mean(self.decoder(z))


def build_model(config: ModelConfig) -> LatentModel:
    from .lae import LAE
    from .vae import IWAE, LVAE, VAE

    kinds = {VAEConfig: VAE, IWAEConfig: IWAE, LVAEConfig: LVAE, LAEConfig: LAE}
    return kinds[type(config)](config)
