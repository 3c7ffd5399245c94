"""Observation models log p(x | z), in nats per image, and the N(0, I) prior.

Bernoulli on logits for binarized data (x in {0, 1}); discretized logistic for 8-bit data
(x = k / 255, bins of width 1/255, the outermost bins extended to +-infinity, as in the LAE paper
and PixelCNN++). Bits per dimension = -log p(x) / (P * ln 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lae import fused

LOG_2PI = math.log(2 * math.pi)


def log_prior(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last axis: (..., D) -> (...)."""
    return -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * LOG_2PI


class Bernoulli(nn.Module):
    """log p(x | logits) = sum_p [x_p * l_p - softplus(l_p)]; (..., P) -> (...).

    For binary x this equals -sum_p softplus((1 - 2 x_p) * l_p): two elementwise passes instead of
    three, forward and backward. The sign tensor is computed once per minibatch (cached on the identity
    of x, which LAE reuses across its T + 1 energy evaluations); non-binary x takes the general form.
    x must lie in [0, 1]."""

    def __init__(self):
        super().__init__()
        self._cache: tuple[torch.Tensor, int, torch.Tensor | None] | None = None

    def _signs(self, x: torch.Tensor) -> torch.Tensor | None:
        if self._cache is None or self._cache[0] is not x or self._cache[1] != x._version:
            s = torch.add(1.0, x, alpha=-2.0)
            flat = s.reshape(-1)
            # For x in [0, 1], s^2 <= 1 with equality iff x is 0 or 1: binary iff sum s^2 == numel
            # (exact in float32 below 2^24 elements; one pass instead of abs, eq and all).
            binary = flat.numel() < 2**24 and float(torch.dot(flat, flat)) == flat.numel()
            self._cache = (x, x._version, s if binary else None)
        return self._cache[2]

    def forward(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        signs = self._signs(x)
        if signs is None:
            return (x * logits - F.softplus(logits)).sum(-1)
        return -F.softplus(signs * logits).sum(-1)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """x ~ p(x | logits): binary pixels, (..., P)."""
        return torch.bernoulli(torch.sigmoid(logits), generator=generator)


class DiscretizedLogistic(nn.Module):
    """Per-pixel logistic with mean from the decoder, integrated over the 8-bit bin of x. x, mean: (..., P) in
    [0, 1]; returns (...) nats.

    The scale: scale="pixel" learns a log-scale per pixel (`log_scale`, (P,)); scale="shared" learns one scalar
    `logit_tau` with scale softplus(tau)^-1/2 / 2, the official LAE code's parameterisation (its images live on
    [-1, 1], twice our [0, 1]: the bin probabilities are the same)."""

    def __init__(self, n_pixels: int, scale: str = "pixel"):
        super().__init__()
        if scale == "pixel":
            self.log_scale = nn.Parameter(torch.full((n_pixels,), -2.0))
        elif scale == "shared":
            self.logit_tau = nn.Parameter(torch.zeros(1))  # the official code's initial value
        else:
            raise ValueError(f"unknown logistic scale {scale!r}; choose pixel or shared")
        self.scale = scale
        self._cache: tuple[torch.Tensor, int, tuple[torch.Tensor, torch.Tensor]] | None = None  # x's bin masks

    def log_s(self) -> torch.Tensor:
        """The log-scale on [0, 1]: (P,) or (1,)."""
        if self.scale == "shared":
            return math.log(0.5) - 0.5 * torch.log(F.softplus(self.logit_tau)).clamp(max=14.0)
        return self.log_scale.clamp(min=-7.0)

    def forward(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """With a = (x - mean + 1/510) / s and b = (x - mean - 1/510) / s, the bin's edges: log sigmoid(a) in the
        x = 0 bin, log (1 - sigmoid(b)) in the x = 1 bin, log (sigmoid(a) - sigmoid(b)) in between, computed stably as
        log sigmoid(a) + log sigmoid(-b) + log(1 - exp(b - a)), where b - a = -1 / (255 s) is the scale's alone
        (lae.fused.discretized_logistic: the value and its gradients in one pass)."""
        if self._cache is None or self._cache[0] is not x or self._cache[1] != x._version:
            self._cache = (x, x._version, fused.logistic_masks(x))  # once per minibatch (LAE: T + 1 evaluations)
        return fused.discretized_logistic(x, mean, self.log_s(), self._cache[2])

    def mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean.clamp(0.0, 1.0)

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """x ~ p(x | mean): a logistic draw rounded to its 8-bit bin (the outer bins take the tails), (..., P)."""
        u = torch.rand(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype).clamp(1e-6, 1 - 1e-6)
        y = mean + self.log_s().exp() * (u.log() - (-u).log1p())
        return (y * 255.0).round().clamp(0.0, 255.0) / 255.0


class Gaussian(nn.Module):
    """log N(x; mean, noise_std^2 I) with a fixed noise_std: the tractable linear-Gaussian model's
    likelihood (tests, estimators' known answers)."""

    def __init__(self, noise_std: float):
        super().__init__()
        self.noise_std = float(noise_std)

    def forward(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        r = (x - mean) / self.noise_std
        return -0.5 * (r * r).sum(-1) - x.shape[-1] * (math.log(self.noise_std) + 0.5 * LOG_2PI)

    def mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """x ~ N(mean, noise_std^2 I), (..., P)."""
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + self.noise_std * eps


def make_likelihood(name: str, n_pixels: int, noise_std: float = 1.0) -> nn.Module:
    if name == "gaussian":
        return Gaussian(noise_std)
    if name == "bernoulli":
        return Bernoulli()
    if name == "logistic":
        return DiscretizedLogistic(n_pixels)
    if name == "logistic_shared":
        return DiscretizedLogistic(n_pixels, scale="shared")
    raise ValueError(f"unknown likelihood {name!r}; choose bernoulli, logistic, logistic_shared or gaussian")
