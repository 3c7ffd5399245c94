"""MALA kernel (Langevin proposal + Metropolis-Hastings), written as a small BlackJAX-style kernel.

One kernel serves two samplers:
- ALD (`ald_energy`): the position is the encoder's last-layer weights Phi for `n_chains` independent
  chains, shape (C, D, H); the energy is V(Phi) = sum_i [-log p(z_i) - log p(x_i | z_i)] with
  z_i = Phi g(x_i), summed over the minibatch, at temperature 1.
- Langevin-refined VAE: the position is z itself, shape (N, D): one chain per data point.

Proposal: x' ~ N(x - step_size * grad V(x), 2 * step_size * I). The MH correction uses the correct
reverse proposal density q(x | x') = N(x; x' - step_size * grad V(x'), 2 * step_size * I). The energy and
gradient of an accepted proposal are carried in the state, so T steps cost T + 1 energy evaluations.

    state = init(position, energy_fn)
    state, info = step(generator, state, energy_fn, step_size)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

# position (C, ...) -> (energy (C,), grad (C, ...)); both detached.
EnergyFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class MALAState(NamedTuple):
    position: torch.Tensor  # (C, ...)
    energy: torch.Tensor  # (C,) nats
    grad: torch.Tensor  # (C, ...) dV/dposition


class MALAInfo(NamedTuple):
    acceptance_rate: torch.Tensor  # (C,) min(1, exp(log alpha)); 1 when MH is off
    is_accepted: torch.Tensor  # (C,) bool
    energy: torch.Tensor  # (C,) energy of the new state
    sq_jump: torch.Tensor | None = None  # (C,) squared distance moved |x_new - x|^2 (0 for a rejected move)


def init(position: torch.Tensor, energy_fn: EnergyFn) -> MALAState:
    energy, grad = energy_fn(position)
    return MALAState(position, energy, grad)


def _sum_event(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(1)


def step(
    generator: torch.Generator | None, state: MALAState, energy_fn: EnergyFn, step_size: float, mh: bool = True
) -> tuple[MALAState, MALAInfo]:
    """One MALA move of every chain at once. step_size is in units of position^2 per unit energy."""
    pos, energy, grad = state
    noise = torch.randn(pos.shape, generator=generator, device=pos.device, dtype=pos.dtype)
    proposal = pos - step_size * grad + (2.0 * step_size) ** 0.5 * noise
    prop_energy, prop_grad = energy_fn(proposal)
    if not mh:  # unadjusted Langevin: every chain moves
        accepted = torch.ones(prop_energy.shape, dtype=torch.bool, device=pos.device)
        return MALAState(proposal, prop_energy, prop_grad), MALAInfo(
            torch.ones_like(prop_energy), accepted, prop_energy, _sum_event((proposal - pos) ** 2)
        )
    log_q_forward = -0.5 * _sum_event(noise * noise)  # log q(x' | x) up to the shared constant
    back = pos - proposal + step_size * prop_grad
    log_q_reverse = -_sum_event(back * back) / (4.0 * step_size)  # log q(x | x')
    log_alpha = energy - prop_energy + log_q_reverse - log_q_forward
    log_alpha = torch.nan_to_num(log_alpha, nan=-torch.inf)
    u = torch.rand(log_alpha.shape, generator=generator, device=pos.device, dtype=pos.dtype)
    accepted = torch.log(u) < log_alpha
    rate = log_alpha.clamp(max=0.0).exp()
    mask = accepted.reshape(-1, *([1] * (pos.dim() - 1)))
    new = MALAState(
        torch.where(mask, proposal, pos), torch.where(accepted, prop_energy, energy), torch.where(mask, prop_grad, grad)
    )
    sq_jump = torch.where(accepted, _sum_event((proposal - pos) ** 2), 0.0)
    return new, MALAInfo(rate, accepted, new.energy, sq_jump)


def ald_energy(
    features: torch.Tensor,
    energy_z: Callable[[torch.Tensor], torch.Tensor],
    on_eval: Callable[[torch.Tensor], None] | None = None,
) -> EnergyFn:
    """Energy function on the last-layer weights Phi (C, D, H) for fixed features g(x) (N, H).

    energy_z maps z (C, N, D) to per-chain energies (C,) summed over the N points, at temperature 1.
    on_eval, if given, receives that energy with its autograd graph (to theta and, through z, to the
    features' parameters psi) so a trainer can reuse it; the returned values are detached.

    Step size and batch size: V is a sum (not a mean) over the N points, so the chain on z = Phi g(x)
    is Langevin preconditioned by step_size * G G^T (G = features, N x H). Point i moves with effective
    step step_size * |g(x_i)|^2, independent of N; but the largest eigenvalue of G G^T grows about
    linearly in N for correlated features (ReLU features share a mean), and the proposal has C*D*H
    dimensions, so at a fixed acceptance rate step_size must shrink roughly as 1/N: when you double
    the batch size, halve step_size.
    """

    def fn(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        energy, _, _, grad_phi = ald_evaluate(features, phi, energy_z, retain_graph=on_eval is not None)
        if on_eval is not None:
            on_eval(energy)
        return energy.detach(), grad_phi

    return fn


def ald_evaluate(
    features: torch.Tensor,
    phi: torch.Tensor,
    energy_z: Callable[[torch.Tensor], torch.Tensor],
    params: Sequence[torch.Tensor] = (),
    retain_graph: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, ...], torch.Tensor]:
    """One ALD evaluation at Phi (C, D, H): z = g Phi^T (C, N, D) for features g (N, H), the energies (C,) with
    their graph, and in one backward pass the gradients of their sum in z (C, N, D) and in `params` (None for a
    parameter the energy does not use). -> (energy, dV/dz, param grads, dV/dPhi (C, D, H))."""
    with torch.enable_grad():
        z = torch.matmul(features, phi.transpose(1, 2))
        if not z.requires_grad:
            z.requires_grad_(True)
        energy = energy_z(z)
        gz, *param_grads = torch.autograd.grad(
            energy.sum(), [z, *params], retain_graph=retain_graph, allow_unused=bool(params)
        )
    return energy, gz, tuple(param_grads), torch.matmul(gz.transpose(1, 2), features.detach())
