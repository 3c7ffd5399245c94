"""The tractable model: z ~ N(0, I_D), x = W z + b + noise_std * eps, eps ~ N(0, I_P).

Exact posterior p(z | x) = N(Sigma W^T (x - b) / s^2, Sigma), Sigma = (I + W^T W / s^2)^-1, and exact
log p(x) = log N(x; b, W W^T + s^2 I). Every sampler and estimator is checked against these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from lae.families import FAMILIES, build_model
from lae.models import LatentModel, ModelConfig


@dataclass
class LinearGaussian:
    W: torch.Tensor  # (P, D)
    b: torch.Tensor  # (P,)
    noise_std: float

    @classmethod
    def random(cls, n_pixels: int, latent_dim: int, noise_std: float, seed: int, scale: float = 0.5) -> LinearGaussian:
        g = torch.Generator().manual_seed(seed)
        W = scale * torch.randn(n_pixels, latent_dim, generator=g, dtype=torch.float64)
        b = 0.1 * torch.randn(n_pixels, generator=g, dtype=torch.float64)
        return cls(W, b, noise_std)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.W.shape[1], generator=generator, dtype=self.W.dtype)
        noise = torch.randn(n, self.W.shape[0], generator=generator, dtype=self.W.dtype)
        return z @ self.W.T + self.b + self.noise_std * noise

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact posterior means (N, D) and the shared covariance (D, D)."""
        W, s2 = self.W, self.noise_std**2
        cov = torch.linalg.inv(torch.eye(W.shape[1], dtype=W.dtype) + W.T @ W / s2)
        return (x.to(W.dtype) - self.b) @ W @ cov / s2, cov

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) in nats: (N,)."""
        W = self.W
        cov = W @ W.T + self.noise_std**2 * torch.eye(W.shape[0], dtype=W.dtype)
        dist = torch.distributions.MultivariateNormal(self.b, covariance_matrix=cov)
        return dist.log_prob(x.to(W.dtype))

    def model(self, kind: str, **options) -> LatentModel:
        """A model of the given family (lae.families) whose decoder is exactly this model (linear, Gaussian
        noise). Encoders are linear (encoder_depth 0): for LAE the features g(x) are x itself."""
        P, D = self.W.shape
        cfg: ModelConfig = FAMILIES[kind].config(
            n_pixels=P,
            latent_dim=D,
            encoder_depth=0,
            decoder_depth=0,
            hidden=P,
            likelihood="gaussian",
            noise_std=self.noise_std,
            **options,
        )
        model = build_model(cfg)
        with torch.no_grad():
            layer = model.decoder.net[0]
            layer.weight.copy_(self.W)
            layer.bias.copy_(self.b)
        return model

    def with_noise(self, noise_std: float) -> LinearGaussian:
        return dataclasses.replace(self, noise_std=noise_std)
