"""Langevin Autoencoder (Taniguchi et al., NeurIPS 2022), Algorithm 2.

The encoder z = f(x; Phi) = Phi g(x; psi) is deterministic. Phi (n_chains, D, H) is never trained by
gradient descent: it is the state of ALD, a MALA chain on V(Phi) = sum_i [-log p(z_i) - log p(x_i|z_i)]
over the minibatch (lae.mala.ald_energy), persisting from minibatch to minibatch. The decoder theta
and the trunk psi are trained on the mean energy over the n_steps Langevin states and the chains.

Cost per minibatch: one trunk forward, n_steps + 1 energy evaluations (forward + gradient in z only),
and one backward through the evaluations that became chain states (their graphs are reused, not
recomputed).
"""
from __future__ import annotations

import math
import warnings

import torch

from . import mala
from .config import LAEConfig
from .models import LatentModel
from .nets import mlp, trunk_dim


class LAE(LatentModel):
    config: LAEConfig

    def __init__(self, config: LAEConfig):
        super().__init__(config)
        p, h = config.n_pixels, config.hidden
        self.trunk = mlp(p, h, config.encoder_depth, None)
        self.n_features = trunk_dim(p, h, config.encoder_depth)
        bound = 1.0 / math.sqrt(self.n_features)  # nn.Linear's default initialisation, per chain
        phi = (torch.rand(config.n_chains, config.latent_dim, self.n_features) * 2 - 1) * bound
        self.register_buffer("phi", phi)
        # The step size in use: config.step_size, or its adapted value when target_accept is set.
        self.register_buffer("log_step_size", torch.tensor(math.log(config.step_size)))
        self._warned = False

    @property
    def step_size(self) -> float:
        return math.exp(float(self.log_step_size))

    ADAPT_RATE = 0.1  # Robbins-Monro gain on log step_size per minibatch

    def energy_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """V per chain: z (C, N, D) -> (C,) nats, summed over the N images."""
        return -self.log_joint(x, z).sum(-1)

    def _check_rank(self, n: int) -> None:
        if self.n_features < n and not self._warned:
            warnings.warn(f"LAE feature width {self.n_features} < batch size {n}: g(x) cannot have rank n, so "
                          "ALD's samples are not exact posterior samples (Theorem 1); raise hidden or lower batch_size",
                          stacklevel=3)
            self._warned = True

    def run_chains(self, x, generator, features=None, on_eval=None, phi=None):
        """n_steps ALD moves on Phi for the minibatch x (N, P), starting from `phi` (default: the
        stored chains). Returns (final state, list of infos, features)."""
        c = self.config
        self._check_rank(x.shape[0])
        g = self.trunk(x) if features is None else features
        energy_fn = mala.ald_energy(g, lambda z: self.energy_z(x, z), on_eval)
        state = mala.init(self.phi if phi is None else phi, energy_fn)
        infos = []
        step_size = self.step_size
        for _ in range(c.n_steps):
            state, info = mala.step(generator, state, energy_fn, step_size, c.mh)
            infos.append(info)
        return state, infos, g

    def loss(self, x, generator):
        c, n = self.config, x.shape[0]
        evals: list[torch.Tensor] = []  # energies (C,) at the T + 1 evaluated points, with graphs
        state, infos, _ = self.run_chains(x, generator, on_eval=evals.append if self.training else None)
        accept = torch.stack([i.acceptance_rate for i in infos]).mean().item()
        if not self.training:
            mean_energy = torch.stack([i.energy for i in infos]).mean() / n
            return mean_energy, {"accept": accept}
        # Which evaluation is each chain's state after steps 1..T: weight = steps it was held.
        weights = torch.zeros(c.n_steps + 1, c.n_chains, device=x.device)
        held = torch.zeros(c.n_chains, dtype=torch.long, device=x.device)
        chains = torch.arange(c.n_chains, device=x.device)
        for t, info in enumerate(infos, start=1):
            held = torch.where(info.is_accepted, t, held)
            weights[held, chains] += 1.0
        used = [s for s in range(c.n_steps + 1) if weights[s].any()]
        loss = sum((weights[s] * evals[s]).sum() for s in used) / (c.n_steps * c.n_chains * n)
        self.phi = state.position  # rebind, not copy_: the graphs of the evaluations still hold the old Phi
        if c.target_accept is not None:
            self.log_step_size += self.ADAPT_RATE * (accept - c.target_accept)
        return loss, {"accept": accept, "step_size": self.step_size}

    def representation(self, x):
        return torch.matmul(self.trunk(x), self.phi.mean(0).t())

    def posterior_samples(self, x, n, generator):
        """ceil(n / n_chains) ALD steps from the stored chains (left unchanged); every chain's
        state after every step is a sample: (n, N, D). Use the training batch size for N."""
        with torch.no_grad():
            g = self.trunk(x)
        c = self.config
        energy_fn = mala.ald_energy(g, lambda z: self.energy_z(x, z))
        state = mala.init(self.phi.clone(), energy_fn)
        out, step_size = [], self.step_size
        while len(out) * c.n_chains < n:
            state, _ = mala.step(generator, state, energy_fn, step_size, c.mh)
            out.append(torch.matmul(g, state.position.transpose(1, 2)))  # (C, N, D)
        return torch.cat(out)[:n]
