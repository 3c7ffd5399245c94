"""Langevin Autoencoder (Taniguchi et al., NeurIPS 2022), Algorithm 2.

The encoder z = f(x; Phi) = Phi g(x; psi) is deterministic. Phi (n_chains, D, H) is never trained by
gradient descent: it is the state of ALD, a MALA chain on V(Phi) = sum_i [-log p(z_i) - log p(x_i|z_i)]
over the minibatch (lae.mala.ald_energy), persisting from minibatch to minibatch. The decoder theta
and the trunk psi are trained on the mean energy over the n_steps Langevin states and the chains.

Per training minibatch, `loss(x)` runs the chains and returns the loss, keeping the chains' new Phi and the
adapted step size (lae.adaptation.robbins_monro when target_accept is set); the trainer applies them with `update()`
after the optimizer step. The adapted step lives in the buffer `log_step_size` (checkpointed, used for inference).

Cost per minibatch: one trunk forward, n_steps + 1 energy evaluations (forward + gradient in z only),
and one backward through the evaluations that became chain states (their graphs are reused, not
recomputed). Without MH every evaluation after the first becomes a chain state, so its decoder gradients are
taken in its z-gradient pass instead (`_loss_without_mh`): no second pass through the decoder.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch

from lae import adaptation, mala, proposals
from lae.models import LatentModel, ModelConfig
from lae.nets import build_trunk, initialize

PROPOSAL_SAMPLES = 32  # ALD posterior samples per image whose mean starts the IS proposal (lae.proposals.laplace)


@dataclass(frozen=True)
class LAEConfig(ModelConfig):
    step_size: float = 1e-4  # ALD step on Phi (the initial one when target_accept is set)
    n_chains: int = 1
    n_steps: int = 2
    mh: bool = True
    target_accept: float | None = None  # adapt log step_size by Robbins-Monro while training (None: fixed)
    batch_size: int = 100  # images per training minibatch: ALD's step size is tied to it, so the proposal's ALD
    # runs on chunks of as many images (RunConfig.batch_size)
    run_options = ("step_size", "n_chains", "n_steps", "mh", "target_accept", "batch_size")

    @classmethod
    def latent_samples(cls, options: dict) -> int:
        return cls.option(options, "n_chains") * (cls.option(options, "n_steps") + 1)

    @classmethod
    def head_parameters(cls, options: dict, latent_dim: int, features: int) -> int:
        return cls.option(options, "n_chains") * latent_dim * features  # Phi (C, D, H), no bias


class _Proposed(NamedTuple):
    """What a training-mode `loss` leaves for `update`: the chains' new Phi (C, D, H) and log step size ()."""

    phi: torch.Tensor
    log_step_size: torch.Tensor


class _Precomputed(torch.autograd.Function):
    """A scalar whose gradients are already known: apply(value, scale, grads, *inputs) returns value (a copy), and
    its backward gives inputs[i] the gradient grad_output * scale * grads[i] (None: no gradient)."""

    @staticmethod
    def forward(ctx, value, scale, grads, *inputs):
        ctx.scale, ctx.grads = scale, grads
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output):
        factor = grad_output * ctx.scale
        return (None, None, None, *(None if g is None else g * factor for g in ctx.grads))


def initial_phi(config: ModelConfig, n_features: int) -> torch.Tensor:
    """Phi's initial value (config.n_chains, D, H), H = n_features, drawn from torch's global generator after the
    trunk's (lae.controls starts from the same value): orthogonal per chain as the official code's last encoder layer
    for the layernorm architecture, else nn.Linear's default initialisation per chain."""
    if config.architecture == "layernorm":
        return torch.stack(
            [torch.nn.init.orthogonal_(torch.empty(config.latent_dim, n_features)) for _ in range(config.n_chains)]
        )
    bound = 1.0 / math.sqrt(n_features)
    return (torch.rand(config.n_chains, config.latent_dim, n_features) * 2 - 1) * bound


class LAE(LatentModel):
    config: LAEConfig
    exact_posterior = True  # ALD's chain states are exact posterior draws when g(x) has rank N (Theorem 1)

    def __init__(self, config: LAEConfig):
        super().__init__(config)
        self.trunk, self.n_features = build_trunk(config)
        initialize(self, config.architecture)
        self.register_buffer("phi", initial_phi(config, self.n_features))
        # The step size in use: config.step_size, or its adapted value when target_accept is set.
        self.register_buffer("log_step_size", torch.tensor(math.log(config.step_size)))
        self._proposed: _Proposed | None = None  # left by a training-mode loss, applied by update()
        self._warned = False

    @property
    def step_size(self) -> float:
        """The ALD step size in use (per weight of Phi)."""
        return adaptation.final(adaptation.init(self.log_step_size))

    def energy_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """V per chain: z (C, N, D) -> (C,) nats, summed over the N images."""
        return -self.log_joint(x, z).sum(-1)

    def _check_rank(self, n: int) -> None:
        if self.n_features < n and not self._warned:
            warnings.warn(
                f"LAE feature width {self.n_features} < batch size {n}: g(x) cannot have rank n, so "
                "ALD's samples are not exact posterior samples (Theorem 1); raise hidden or lower batch_size",
                stacklevel=3,
            )
            self._warned = True

    def run_chains(self, x, generator, on_eval=None, energy_fn=None) -> tuple[mala.MALAState, list[mala.MALAInfo]]:
        """n_steps ALD moves on Phi for the minibatch x (N, P), from the stored chains (left unchanged).
        on_eval: see mala.ald_energy; energy_fn: another energy on Phi for x (default mala.ald_energy's).
        Returns (final state, the steps' infos)."""
        c = self.config
        self._check_rank(x.shape[0])
        if energy_fn is None:
            energy_fn = mala.ald_energy(self.trunk(x), lambda z: self.energy_z(x, z), on_eval)
        state = mala.init(self.phi, energy_fn)
        infos = []
        step_size = adaptation.init(self.log_step_size).step_size  # 0-d, on the device: nothing read back
        for _ in range(c.n_steps):
            state, info = mala.step(generator, state, energy_fn, step_size, c.mh)
            infos.append(info)
        return state, infos

    def loss(self, x, generator):
        """Training: the mean energy over the chains' states after steps 1..T (nats per image), to train the
        decoder and the trunk; the chains' new Phi and the adapted step size are kept for `update`. Eval mode: the
        mean energy, nothing kept. Diagnostics are detached 0-d tensors (nothing is read back to the host, except
        on the CPU, see `_held_energy`): accept (the mean MH acceptance) and, training, step_size (float64) and jump
        (`_keep`)."""
        c, n = self.config, x.shape[0]
        if self.training and not c.mh:
            return self._loss_without_mh(x, generator)
        evals: list[torch.Tensor] = []  # energies (C,) at the T + 1 evaluated points, with graphs
        state, infos = self.run_chains(x, generator, on_eval=evals.append if self.training else None)
        if not self.training:
            mean_energy = torch.stack([i.energy for i in infos]).mean() / n
            return mean_energy, {"accept": torch.stack([i.acceptance_rate for i in infos]).mean().detach()}
        loss = self._held_energy(evals, infos, skip_unused=x.device.type == "cpu") / (c.n_steps * c.n_chains * n)
        return loss, self._keep(state, infos)

    def _loss_without_mh(self, x, generator):
        """`loss` in training without MH. Every step moves, so each chain holds evaluations 1..T once each and the
        loss's gradient is known when an evaluation is made: evaluation s >= 1 takes its gradients in theta (the
        decoder's and the likelihood's parameters) in the same backward pass as its z-gradient, and the trunk's
        follow from the z-gradients, d/dg sum_c V(g Phi_c^T) = sum_c dV/dz_c Phi_c (N, H). One backward pass per
        evaluation instead of two, and no graph is kept. Same value and gradients as `_held_energy`'s loss, up
        to float rounding (the sums run in another order)."""
        c, n = self.config, x.shape[0]
        g = self.trunk(x)  # (N, H), with its graph to psi
        features = g.detach()
        theta = [p for m in (self.decoder, self.likelihood) for p in m.parameters() if p.requires_grad]
        value, grad_g, grad_theta = 0.0, torch.zeros_like(features), [None] * len(theta)  # sums over s >= 1
        calls = 0

        def energy_fn(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            nonlocal calls, value
            held = calls > 0  # evaluation 0 (the chains' start) is held by no chain
            calls += 1
            energy, gz, grads, grad_phi = mala.ald_evaluate(
                features, phi, lambda z: self.energy_z(x, z), theta if held else ()
            )
            if held:
                value = value + energy.detach().sum()
                grad_g.add_(torch.matmul(gz, phi).sum(0))
                for i, gt in enumerate(grads):
                    if gt is not None:
                        grad_theta[i] = gt if grad_theta[i] is None else grad_theta[i] + gt
            return energy.detach(), grad_phi

        state, infos = self.run_chains(x, generator, energy_fn=energy_fn)
        norm = c.n_steps * c.n_chains * n
        loss = _Precomputed.apply(value / norm, 1.0 / norm, [grad_g, *grad_theta], g, *theta)
        return loss, self._keep(state, infos)

    def _keep(self, state: mala.MALAState, infos: list[mala.MALAInfo]) -> dict:
        """Keep the chains' new Phi and the (adapted) step size for `update`; -> the training diagnostics: accept,
        step_size and jump, the squared distance |Phi_t - Phi_(t-1)|^2 (summed over Phi's D x H entries) per ALD step
        and chain, averaged over both (0 for a chain that rejects every move)."""
        accept = torch.stack([i.acceptance_rate for i in infos]).mean().detach()
        jump = torch.stack([i.sq_jump for i in infos]).mean().detach()
        step = adaptation.init(self.log_step_size)
        if self.config.target_accept is not None:
            step = adaptation.robbins_monro(step, accept, self.config.target_accept)
        self._proposed = _Proposed(state.position, step.log_step_size)
        return {"accept": accept, "step_size": step.step_size, "jump": jump}

    def _held_energy(self, evals: list[torch.Tensor], infos: list[mala.MALAInfo], skip_unused: bool) -> torch.Tensor:
        """Sum over steps t = 1..T and chains of the energy of the evaluation each chain holds after step t (with
        graphs): evaluation s weighs the number of steps a chain held it, from the (T, C) acceptances in one
        computation. Without MH every step moves: evaluations 1..T, once each, nothing to compute. With MH,
        skip_unused (the CPU, where reading a tensor costs no stall) leaves out the evaluations no chain holds (no
        backward through them); otherwise they are masked to zero, so the step never waits for the device."""
        t_steps = len(infos)
        if not self.config.mh:
            return torch.stack(evals[1:]).sum()
        accepted = torch.stack([i.is_accepted for i in infos])  # (T, C)
        steps = torch.arange(1, t_steps + 1, device=accepted.device).unsqueeze(1)
        held = torch.where(accepted, steps, 0).cummax(0).values  # (T, C): the evaluation held after step t
        weights = torch.zeros(t_steps + 1, held.shape[1], device=held.device).scatter_add_(
            0, held, torch.ones(held.shape, device=held.device)
        )  # (T + 1, C)
        if skip_unused:
            used = [s for s, any_chain in enumerate(weights.any(1).tolist()) if any_chain]
            return (weights[used] * torch.stack([evals[s] for s in used])).sum()
        energies = torch.stack(evals)
        return torch.where(weights > 0, weights * energies, 0.0).sum()

    def update(self) -> None:
        """Move to the chains' state and step size proposed by the last training-mode `loss` (once)."""
        if self._proposed is None:
            return
        # Rebind, not copy_: the graphs of that loss's energy evaluations hold the old Phi.
        self.phi = self._proposed.phi
        self.log_step_size.copy_(self._proposed.log_step_size)
        self._proposed = None

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

    def proposal(self, x, generator):
        """Laplace-shaped Gaussian (lae.proposals.laplace) started from the mean of PROPOSAL_SAMPLES ALD samples
        per image, ALD run on chunks of config.batch_size images (the batch size its step size was trained with)."""
        chunks = x.split(self.config.batch_size)
        center = torch.cat([self.posterior_samples(xb, PROPOSAL_SAMPLES, generator).detach().mean(0) for xb in chunks])
        return proposals.laplace(self.log_joint, x, center)

    def proposal_images(self):
        return self.config.batch_size
