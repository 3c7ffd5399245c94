"""Training, separate from the models: seeding in one place, the epoch loop, checkpoints.

result = fit(RunConfig(model="lae", dataset="digits"))
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lae import data as data_lib
from lae.config import RunConfig, model_config
from lae.families import build_model
from lae.models import LatentModel
from lae.utils import atomic_path, progress_bar

CHECKPOINT_FORMAT = 1


class DivergenceError(RuntimeError):
    """The training energy became non-finite. `epoch` and `step` say where; callers record it."""

    def __init__(self, epoch: int, step: int, value: float):
        super().__init__(f"non-finite training loss ({value}) at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


@dataclass
class TrainResult:
    model: LatentModel
    config: RunConfig
    train_loss: list[float] = field(default_factory=list)  # per epoch, nats per image
    val_loss: list[float] = field(default_factory=list)  # per epoch (and before training, index 0)
    accept: list[float] = field(default_factory=list)  # mean MH acceptance per epoch (Langevin models)
    seconds: float = 0.0

    def summary(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "accept": self.accept,
            "train_seconds": self.seconds,
            "units": "nats per image",
        }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but no CUDA device is available")
    return torch.device(name)


def seed_everything(seed: int, device: torch.device) -> torch.Generator:
    """The one place randomness is seeded: torch's global RNG (parameter init) and the returned
    generator (minibatch order, binarization, Langevin and reparameterization noise)."""
    torch.manual_seed(seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def make_optimizer(config: RunConfig, params) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, foreach=True)
    return torch.optim.Adam(params, lr=config.lr, fused=True)  # fused: one kernel, not a per-tensor loop


def load_data(config: RunConfig) -> data_lib.Dataset:
    return data_lib.load(
        config.dataset,
        config.preprocessing,
        data_dir=config.data_dir,
        val_size=config.val_size,
        train_size=config.train_size,
    )


def new_model(config: RunConfig, n_pixels: int, device: torch.device) -> LatentModel:
    return build_model(model_config(config, n_pixels)).to(device)


@torch.no_grad()
def evaluate_loss(model: LatentModel, split: data_lib.Split, batch_size: int, seed: int, device) -> tuple[float, float]:
    """Mean training objective over a split (nats per image) and mean acceptance, model in eval mode.
    The noise is re-seeded on every call, so successive epochs are compared with the same draws."""
    generator = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    total, accept, n = 0.0, 0.0, 0
    for x, _ in data_lib.batches(split, batch_size, None, dynamic=False, shuffle=False):
        x = x.to(device)
        loss, stats = model.loss(x, generator)
        total += loss.item() * len(x)
        accept += stats.get("accept", float("nan")) * len(x)
        n += len(x)
    model.train()
    return total / n, accept / n


def fit(
    config: RunConfig,
    dataset: data_lib.Dataset | None = None,
    progress: bool = False,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train one model. on_epoch(epoch, val_loss) is called after each epoch (an Optuna pruner may
    raise from it). Raises DivergenceError when the loss becomes non-finite."""
    config.validate()
    device = resolve_device(config.device)
    dataset = dataset or load_data(config)
    gen = seed_everything(config.seed, device)
    model = new_model(config, dataset.n_pixels, device)
    opt = make_optimizer(config, model.parameters())
    dynamic = dataset.preprocessing == "dynamic"
    result = TrainResult(model, config)
    result.val_loss.append(evaluate_loss(model, dataset.val, config.batch_size, config.seed + 1, device)[0])
    start = time.perf_counter()
    n_batches = math.ceil(len(dataset.train.x) / config.batch_size)
    for epoch in range(1, config.epochs + 1):
        bar = progress_bar(n_batches, f"{config.model} epoch {epoch}/{config.epochs}", progress)
        total, accept, n = 0.0, 0.0, 0
        batch_gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)  # order + binarization
        for step, (x, _) in enumerate(data_lib.batches(dataset.train, config.batch_size, batch_gen, dynamic), 1):
            x = x.to(device, non_blocking=True)
            loss, stats = model.loss(x, gen)
            value = loss.item()
            if not math.isfinite(value):
                raise DivergenceError(epoch, step, value)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.update()  # LAE: the chains' new state and step size, now that the graphs are used
            total += value * len(x)
            accept += stats.get("accept", float("nan")) * len(x)
            n += len(x)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.2f}")
        bar.close()
        result.train_loss.append(total / n)
        result.accept.append(accept / n)
        val, _ = evaluate_loss(model, dataset.val, config.batch_size, config.seed + 1, device)
        if not math.isfinite(val):
            raise DivergenceError(epoch, n_batches, val)
        result.val_loss.append(val)
        if on_epoch is not None:
            on_epoch(epoch, val)
    result.seconds = time.perf_counter() - start
    return result


def save_checkpoint(result: TrainResult, path: str | Path) -> Path:
    """State dict plus config, written atomically (lae.utils.atomic_path); returns the path."""
    with atomic_path(path) as tmp:
        torch.save(
            {"format": CHECKPOINT_FORMAT, "config": result.config.to_dict(), "state_dict": result.model.state_dict()},
            tmp,
        )
    return Path(path)


class CheckpointError(ValueError):
    """A missing, corrupt or incompatible checkpoint (one-line message)."""


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[LatentModel, RunConfig]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location=resolve_device(device), weights_only=True)
        config = RunConfig.from_dict(blob["config"])
        state = blob["state_dict"]
    except Exception as exc:  # corrupt zip, pickle refused, missing keys
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a lae-bench checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    biases = [k for k in state if k.startswith("decoder.net.") and k.endswith(".bias")]
    if not biases:
        raise CheckpointError(f"checkpoint {path} has no decoder weights")
    n_pixels = state[max(biases, key=lambda k: int(k.split(".")[2]))].shape[0]  # the decoder's output width
    model = new_model(dataclasses.replace(config, device=device), n_pixels, resolve_device(device))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not match its config: {str(exc).splitlines()[0]}") from None
    model.eval()
    return model, config
