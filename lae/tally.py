"""Training figures kept on the device and read back once per logging interval, so that a training step never
waits for the device (a CUDA step that reads a loss with `.item()` stalls until the GPU has caught up).

    tally = Tally()
    tally.add(step, loss, stats, len(x))     # every minibatch: detached 0-d tensors, nothing read
    bad = tally.read(limit)                  # every LOG_EVERY minibatches and at the end: one transfer
"""

from __future__ import annotations

import math

import torch


class Tally:
    """Running sums over minibatches of the loss (nats per image), the MH acceptance and the chain's squared jump per
    step, weighted by minibatch size; `stats` are a family's `loss` diagnostics (lae.models.LatentModel.loss):
    `accept`, `jump` (LAE: squared Phi units per ALD step) and `step_size` are read when present. The sums are the
    host's, in minibatch order: the same arithmetic as reading every minibatch at once."""

    def __init__(self):
        self.pending: list[tuple[int, int, torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = []
        self.total, self.accept, self.jump, self.n = 0.0, 0.0, 0.0, 0
        self.last_loss: float = math.nan  # the latest minibatch's loss read
        self.step_size: float | None = None  # the latest step size read (None: the family has none)
        self._step_size: torch.Tensor | float | None = None

    def add(self, step: int, loss: torch.Tensor, stats: dict, size: int) -> None:
        """Keep minibatch `step`'s loss (0-d) and diagnostics; `size` images."""
        self.pending.append((step, size, loss.detach(), stats.get("accept"), stats.get("jump")))
        self._step_size = stats.get("step_size", self._step_size)

    def read(self, limit: float | None = None) -> tuple[int, float] | None:
        """Add the pending figures to the sums (one transfer for the losses, one for the acceptances). With a limit:
        returns (step, loss) of the first minibatch whose loss is not <= limit (nan fails too), which is then not
        added, else None. Without one every figure is added (a nan loss makes the mean nan)."""
        if not self.pending:
            return None
        steps, sizes, losses, accepts, jumps = zip(*self.pending)
        self.pending = []
        values = torch.stack(losses).tolist()
        rates, moves = (torch.stack(t).tolist() if t[0] is not None else [math.nan] * len(t) for t in (accepts, jumps))
        for step, size, value, rate, move in zip(steps, sizes, values, rates, moves):
            if limit is not None and not value <= limit:
                return step, value
            self.total, self.accept, self.n = self.total + value * size, self.accept + rate * size, self.n + size
            self.jump += move * size
            self.last_loss = value
        self.step_size = None if self._step_size is None else float(self._step_size)
        return None

    def means(self) -> tuple[float, float]:
        """(mean loss, mean acceptance) per image over what was read: nan acceptance for a family without one."""
        return self.total / self.n, self.accept / self.n

    def postfix(self) -> dict[str, str]:
        """The progress bar's fields: the latest minibatch loss; for Langevin models the epoch's running mean
        acceptance and the step size in use."""
        loss, accept, step_size = self.last_loss, self.means()[1], self.step_size
        out = {"loss": f"{loss:.2f}", "accept": f"{accept:.2f}", "step": f"{step_size:.2g}" if step_size else ""}
        return {k: v for k, v in out.items() if v and v != "nan"}

    def mean_jump(self) -> float:
        """The mean squared jump per step over what was read (nan for a family without a chain)."""
        return self.jump / self.n
