"""Networks: MLP trunks for encoders, MLP decoders. Objectives live in the models, not here.

Shapes: x is (N, P) with P = pixels per image; z is (..., D) with D = latent_dim.
`depth` counts hidden layers: depth 0 is a linear map (the seed project's setting).
"""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, depth: int, out_dim: int | None) -> nn.Sequential:
    """`depth` hidden layers of `hidden` ReLU units, then a linear output layer of `out_dim`
    (omitted when out_dim is None: the result is a feature trunk ending in a ReLU)."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    if out_dim is not None:
        layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def trunk_dim(in_dim: int, hidden: int, depth: int) -> int:
    """Feature dimension H of g(x): `hidden` for an MLP trunk, the input size for a linear encoder."""
    return hidden if depth > 0 else in_dim


class Decoder(nn.Module):
    """z (..., D) -> likelihood parameters (..., P): Bernoulli logits or logistic means."""

    def __init__(self, latent_dim: int, hidden: int, depth: int, out_dim: int):
        super().__init__()
        self.net = mlp(latent_dim, hidden, depth, out_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        shape = z.shape[:-1]
        out = self.net(z.reshape(-1, z.shape[-1]))
        return out.reshape(*shape, out.shape[-1])
