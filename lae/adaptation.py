"""Step-size adaptation, in BlackJAX's form: one state type, two rules that move it.

    state = init(log_step_size)                        # LAE: the scalar buffer `log_step_size`
    state = init(eps.log(), eps)                       # AIS: one step per image, (N,), kept exact
    state = robbins_monro(state, acceptance, target)   # or sign_rule(state, acceptance, target)
    step_size = final(state)

- robbins_monro (LAE, once per minibatch, from the MH acceptance of that minibatch's ALD steps, a 0-d tensor):
  log step_size += rate * (acceptance - target), rate ROBBINS_MONRO_RATE; a scalar state, its step a 0-d float64
  tensor on the state's device (nothing is read back to the host: `final` does that, for reporting).
- sign_rule (AIS, once per HMC transition, per image, from the acceptance (N,) averaged over that image's chains):
  log step_size += rate * sign(acceptance - target), rate SIGN_RATE. The step is multiplied by exp of the move
  rather than recomputed from the log, so it stays the initial step times a product of factors (the arithmetic
  the committed results were made with).

Adapting after every transition makes the chain inhomogeneous, not wrong: the kernel at step t depends only on the
past, so every transition still leaves its target invariant (AIS); for LAE the step is fixed within a minibatch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

ROBBINS_MONRO_RATE = 0.1  # gain on log step_size per update (LAE: per minibatch)
SIGN_RATE = 0.05  # log step_size moves by this per update (AIS: per transition)


class AdaptationState(NamedTuple):
    log_step_size: torch.Tensor  # () or (N,): the log of the step size, the quantity the rules move
    step_size: torch.Tensor  # the step the kernel uses now: exp(log_step_size), rounded as each rule says


def _exp(log_step_size: torch.Tensor) -> torch.Tensor:
    """exp of a log step size: in double precision for a scalar (0-d float64, on its device), else in its dtype."""
    return log_step_size.double().exp() if log_step_size.dim() == 0 else log_step_size.exp()


def init(log_step_size: torch.Tensor, step_size: torch.Tensor | None = None) -> AdaptationState:
    """The state at log_step_size, () or (N,). step_size: the exact starting step when the caller has it as a step
    (AIS: float32(0.1), which exp(log(0.1)) may miss by a rounding); default exp(log_step_size)."""
    return AdaptationState(log_step_size, _exp(log_step_size) if step_size is None else step_size)


def robbins_monro(
    state: AdaptationState, acceptance: torch.Tensor | float, target: float, rate: float = ROBBINS_MONRO_RATE
) -> AdaptationState:
    """log step_size += rate * (acceptance - target): the move computed in double precision and rounded to the
    state's dtype (LAE: float32); the step is recomputed as exp of the new log step size. Never reads a tensor."""
    log = state.log_step_size
    move = rate * (torch.as_tensor(acceptance, dtype=torch.float64, device=log.device) - target)
    log_step_size = log + move.to(log.dtype)
    return AdaptationState(log_step_size, _exp(log_step_size))


def sign_rule(
    state: AdaptationState, acceptance: torch.Tensor, target: float, rate: float = SIGN_RATE
) -> AdaptationState:
    """log step_size += rate * sign(acceptance - target), elementwise (acceptance: the state's shape); the step is
    multiplied by exp of that move."""
    move = rate * torch.sign(acceptance - target)
    return AdaptationState(state.log_step_size + move, state.step_size * torch.exp(move))


def final(state: AdaptationState) -> torch.Tensor | float:
    """The step size to use: a python float for a scalar state (read from the device), (N,) for a per-image one."""
    return float(state.step_size) if state.step_size.dim() == 0 else state.step_size
