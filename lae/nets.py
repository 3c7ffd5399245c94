"""Networks: encoder trunks g(x) and decoders, one builder per part, chosen by the config's `architecture`.
Objectives live in the models, not here.

Shapes: x is (N, P) with P = pixels per image; z is (..., D) with D = latent_dim.
`depth` counts hidden layers: depth 0 is a linear map (the seed project's setting).

Architectures (ARCHITECTURES):
    mlp        Linear -> ReLU blocks, PyTorch's default initialisation (the suite's default).
    layernorm  Linear -> LayerNorm -> ReLU blocks, orthogonal weights and zero biases in every linear layer: the
               official LAE code's networks (github iShohei220/LAE, model.py) and the course project's.
    conv       two stride-2 conv layers each way around the dense layers (lae.conv), for square images whose side
               is a multiple of 4; the encoder's last linear layer (LAE's Phi) sits on the conv trunk's features.
"""

from __future__ import annotations

import torch
from torch import nn

from lae import conv

ARCHITECTURES = ("mlp", "layernorm", "conv")


def mlp(in_dim: int, hidden: int, depth: int, out_dim: int | None, architecture: str = "mlp") -> nn.Sequential:
    """`depth` hidden layers of `hidden` ReLU units (each after a LayerNorm for "layernorm"), then a linear output
    layer of `out_dim` (omitted when out_dim is None: the result is a feature trunk ending in a ReLU)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose {', '.join(ARCHITECTURES)}")
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers.append(nn.Linear(width, hidden))
        if architecture == "layernorm":
            layers.append(nn.LayerNorm(hidden))
        layers.append(nn.ReLU())
        width = hidden
    if out_dim is not None:
        layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def trunk_dim(in_dim: int, hidden: int, depth: int) -> int:
    """Feature dimension H of g(x): `hidden` for an MLP trunk, the input size for a linear encoder."""
    return hidden if depth > 0 else in_dim


def build_trunk(config) -> tuple[nn.Module, int]:
    """The encoder trunk g(x) of a ModelConfig: (module mapping (N, P) -> (N, H), H)."""
    p, h, depth = config.n_pixels, config.hidden, config.encoder_depth
    if config.architecture == "conv":
        return conv.conv_trunk(p, h, depth)
    return mlp(p, h, depth, None, config.architecture), trunk_dim(p, h, depth)


def initialize(module: nn.Module, architecture: str) -> None:
    """The architecture's initialisation of every linear layer in `module` (in place): orthogonal weights and zero
    biases for "layernorm" (the official LAE code's `reset_parameters`), PyTorch's default (left as is) otherwise."""
    if architecture != "layernorm":
        return
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Decoder(nn.Module):
    """z (..., D) -> likelihood parameters (..., P): Bernoulli logits or logistic means."""

    def __init__(self, latent_dim: int, hidden: int, depth: int, out_dim: int, architecture: str = "mlp"):
        super().__init__()
        self.net = mlp(latent_dim, hidden, depth, out_dim, architecture)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        shape = z.shape[:-1]
        out = self.net(z.reshape(-1, z.shape[-1]))
        return out.reshape(*shape, out.shape[-1])


def build_decoder(config) -> nn.Module:
    """The decoder of a ModelConfig: z (..., D) -> (..., P)."""
    if config.architecture == "conv":
        return conv.ConvDecoder(config.latent_dim, config.hidden, config.decoder_depth, config.n_pixels)
    return Decoder(config.latent_dim, config.hidden, config.decoder_depth, config.n_pixels, config.architecture)
