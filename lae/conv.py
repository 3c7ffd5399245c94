"""The conv architecture (RunConfig.architecture = "conv"): a small convolutional encoder trunk and decoder for
square images whose side is a multiple of 4 (28 x 28 MNIST, 8 x 8 digits), after the course project's conv variant
(IE506, 2023: 3 x 3 stride-2 convolutions of 32 and 64 channels).

Shapes: x (N, P), P = side * side pixels in [0, 1]; z (..., D).

    trunk g(x)  (N, P) -> (N, 1, s, s) -> conv 3x3 stride 2 (32) -> ReLU -> conv 3x3 stride 2 (64) -> ReLU
                -> flatten (F = 64 (s/4)^2) -> `depth` Linear -> ReLU layers of `hidden`: (N, H), H = hidden
                (F when depth is 0). The encoder's last linear layer sits on these features as with the MLP
                trunk: LAE's Phi (D, H), the VAE family's Gaussian head.
    decoder     (..., D) -> `depth` Linear -> ReLU layers of `hidden` -> Linear to F -> ReLU -> (64, s/4, s/4)
                -> transposed conv 4x4 stride 2 (32) -> ReLU -> transposed conv 4x4 stride 2 (1, no bias)
                -> flatten -> a bias per pixel: likelihood parameters (..., P).

The decoder ends in a bias per pixel (P,), as the MLP decoder's output layer does: each pixel's base rate (MNIST's
always-black border) is learned on its own, not through the shared transposed-conv filters. Initialisation:
PyTorch's defaults.
"""

from __future__ import annotations

import math

import torch
from torch import nn

CHANNELS = (32, 64)  # the two conv layers' channels, encoder order


def image_side(n_pixels: int) -> int:
    """The side of a square image of n_pixels pixels; ValueError unless it is a multiple of 4."""
    side = math.isqrt(n_pixels)
    if side * side != n_pixels or side % 4:
        raise ValueError(f"the conv architecture needs square images with a side divisible by 4; got {n_pixels} pixels")
    return side


def flat_features(n_pixels: int) -> int:
    """F: the flattened conv features of one image, 64 (side / 4)^2 (3,136 for 28 x 28)."""
    return CHANNELS[1] * (image_side(n_pixels) // 4) ** 2


def activations(n_pixels: int) -> int:
    """Conv activations of one image in one direction (encoder or decoder): 32 (s/2)^2 + 64 (s/4)^2."""
    side = image_side(n_pixels)
    return CHANNELS[0] * (side // 2) ** 2 + CHANNELS[1] * (side // 4) ** 2


def _dense(in_dim: int, hidden: int, depth: int) -> tuple[list[nn.Module], int]:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(in_dim, hidden), nn.ReLU()]
        in_dim = hidden
    return layers, in_dim


def conv_trunk(n_pixels: int, hidden: int, depth: int) -> tuple[nn.Sequential, int]:
    """The trunk g(x) (module docstring): (module mapping (N, P) -> (N, H), H)."""
    side = image_side(n_pixels)
    dense, width = _dense(flat_features(n_pixels), hidden, depth)
    net = nn.Sequential(
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, CHANNELS[0], 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(CHANNELS[0], CHANNELS[1], 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        *dense,
    )
    return net, width


class PixelBias(nn.Module):
    """x (N, P) -> x + bias, one learned bias per pixel (P,): each pixel's base rate (module docstring)."""

    def __init__(self, n_pixels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_pixels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class ConvDecoder(nn.Module):
    """z (..., D) -> likelihood parameters (..., P) (module docstring): Bernoulli logits or logistic means."""

    def __init__(self, latent_dim: int, hidden: int, depth: int, n_pixels: int):
        super().__init__()
        quarter = image_side(n_pixels) // 4
        dense, width = _dense(latent_dim, hidden, depth)
        self.net = nn.Sequential(
            *dense,
            nn.Linear(width, flat_features(n_pixels)),
            nn.ReLU(),
            nn.Unflatten(1, (CHANNELS[1], quarter, quarter)),
            nn.ConvTranspose2d(CHANNELS[1], CHANNELS[0], 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(CHANNELS[0], 1, 4, stride=2, padding=1, bias=False),
            nn.Flatten(),
            PixelBias(n_pixels),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        shape = z.shape[:-1]
        out = self.net(z.reshape(-1, z.shape[-1]))
        return out.reshape(*shape, out.shape[-1])
