"""LAE's no-sampling controls: what LAE becomes without its Langevin chain.

Both keep everything of LAE (lae.lae) but the sampler: the encoder z = f(x; Phi) = Phi g(x; psi) with Phi
(n_chains, D, H) started at LAE's initial value (lae.lae.initial_phi, the same draw at the same seed), and the
energy V(Phi) = sum_i [-log p(z_i) - log p(x_i | z_i)] over the minibatch, at temperature 1. The trunk psi and the
decoder are trained on the mean energy per image and chain, as LAE's are on its chains' states. What differs:

- `frozen`: Phi stays at its initial value (a buffer, no ALD move): LAE whose chain never moves, as a fixed step
  that MH always rejects leaves it.
- `map`: Phi is a parameter the optimizer trains with psi and the decoder on the same energy, with no noise and no
  MH: amortized MAP, a prior-regularized deterministic autoencoder (Ghosh et al., ICLR 2020).

So LAE's loss at a given Phi equals theirs (tests/test_controls.py), and a difference in the results is the chain's.
Their "posterior samples" are a point mass at each chain's code Phi_c g(x) (the exactness check that LAE passes on
the linear-Gaussian model fails for them); the probe reads the code of the mean Phi (as LAE's); the
importance-sampling proposal is the Laplace fit (lae.proposals.laplace) started at that code, whose Newton steps move
it to the posterior mode, so IS, AIS and BDMC measure them as every family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lae import proposals
from lae.lae import initial_phi
from lae.models import LatentModel, ModelConfig
from lae.nets import build_trunk, initialize


@dataclass(frozen=True)
class ControlConfig(ModelConfig):
    n_chains: int = 1  # codes per image, one per Phi_c (LAE's chains, stopped): the loss averages their energies
    run_options = ("n_chains",)

    @classmethod
    def latent_samples(cls, options: dict) -> int:
        return cls.option(options, "n_chains")  # one code per image and chain, no ALD steps

    @classmethod
    def head_parameters(cls, options: dict, latent_dim: int, features: int) -> int:
        return cls.option(options, "n_chains") * latent_dim * features  # Phi (C, D, H), no bias, as LAE's


@dataclass(frozen=True)
class FrozenConfig(ControlConfig):
    """`frozen`: Phi fixed at its initial value."""


@dataclass(frozen=True)
class MAPConfig(ControlConfig):
    """`map`: Phi trained by the optimizer (amortized MAP)."""


class _Control(LatentModel):
    """The shared part: trunk, Phi, energy, loss and inference. Subclasses say whether Phi is trained."""

    config: ControlConfig
    trained_phi: bool

    def __init__(self, config: ControlConfig):
        super().__init__(config)
        self.trunk, self.n_features = build_trunk(config)
        initialize(self, config.architecture)
        phi = initial_phi(config, self.n_features)
        if self.trained_phi:
            self.phi = nn.Parameter(phi)
        else:
            self.register_buffer("phi", phi)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Each chain's code z = g(x) Phi_c^T: x (N, P) -> (C, N, D)."""
        return torch.matmul(self.trunk(x), self.phi.transpose(1, 2))

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """V(Phi_c) per chain: (C,) nats, summed over the N images (lae.lae.LAE.energy_z at the codes)."""
        return -self.log_joint(x, self.codes(x)).sum(-1)

    def loss(self, x, generator):
        """The mean energy per image and chain (nats per image); deterministic (generator unused), no diagnostics."""
        c, n = self.config, x.shape[0]
        return self.energy(x).sum() / (c.n_chains * n), {}

    def representation(self, x):
        return torch.matmul(self.trunk(x), self.phi.mean(0).t())

    def posterior_samples(self, x, n, generator):
        """A point mass per chain: the chains' codes in turn, (n, N, D) (LAE's samples when its chain is stuck)."""
        with torch.no_grad():
            z = self.codes(x)
        return z.repeat(math.ceil(n / z.shape[0]), 1, 1)[:n]

    def proposal(self, x, generator):
        """Laplace-shaped Gaussian (lae.proposals.laplace) started at the code; no sampler, so any number of images
        at once."""
        with torch.no_grad():
            center = self.representation(x)
        return proposals.laplace(self.log_joint, x, center)


class Frozen(_Control):
    trained_phi = False


class MAP(_Control):
    trained_phi = True
