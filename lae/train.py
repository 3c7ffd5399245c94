"""Training, separate from the models: seeding in one place, the epoch loop, divergence, the Langevin chain's health,
checkpoints.

result = fit(RunConfig(model="lae", dataset="digits"))
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lae import data as data_lib
from lae.config import ConfigError, RunConfig, model_config
from lae.families import build_model
from lae.models import LatentModel
from lae.tally import Tally
from lae.utils import atomic_path, model_device, progress_bar

CHECKPOINT_FORMAT = 2  # 2: the image size (n_pixels) is stored, not read off the decoder's tensors
DIVERGENCE_FACTOR = 10.0  # a loss above this many times the untrained model's validation loss is a divergence
ACCEPT_LOW, ACCEPT_HIGH = 0.05, 0.99  # an epoch's mean MH acceptance outside this range: ChainHealthWarning
LOG_EVERY = 50  # minibatches between reads of the training figures from the device (and divergence checks)


class DivergenceError(RuntimeError):
    """The run diverged: a minibatch's training loss or an epoch's validation loss (nats per image) is non-finite or
    above DIVERGENCE_FACTOR (10) times the validation loss of the untrained model (`limit`). Healthy runs stay far
    below it: every family's loss on binarized or 8-bit images is positive and falls from its untrained value (MNIST:
    about 543 nats, so the bound is about 5,430). `epoch` and `step` say where; callers record it."""

    def __init__(self, epoch: int, step: int, value: float, limit: float = math.inf):
        what = "non-finite" if not math.isfinite(value) else f"above {DIVERGENCE_FACTOR:g}x the untrained loss"
        bound = f", bound {limit:.1f}" if math.isfinite(limit) else ""
        super().__init__(f"training loss {value:.4g} nats/image at epoch {epoch}, step {step} ({what}{bound})")
        self.epoch, self.step, self.value, self.limit = epoch, step, value, limit


class ChainHealthWarning(UserWarning):
    """An epoch's mean Metropolis-Hastings acceptance is below ACCEPT_LOW (the chain is stuck: LAE trains as an
    autoencoder with a frozen random last layer) or above ACCEPT_HIGH (the step is too small to move). Issued once
    per run, for the first such epoch (with target_accept: the last epoch only, once the step has adapted); a sweep
    may filter it by this category. Not issued without MH, where every step is accepted."""


@dataclass
class TrainResult:
    model: LatentModel
    config: RunConfig
    train_loss: list[float] = field(default_factory=list)  # per epoch, nats per image
    val_loss: list[float] = field(default_factory=list)  # per epoch (and before training, index 0)
    accept: list[float] = field(default_factory=list)  # mean MH acceptance per epoch (Langevin models; else nan)
    step_size: list[float | None] = field(default_factory=list)  # Langevin step at each epoch's end (None: none)
    jump: list[float] = field(default_factory=list)  # LAE: mean squared jump of Phi per ALD step, per epoch; else nan
    seconds: float = 0.0

    def summary(self) -> dict:
        """The run as strict JSON: config, losses (nats per image) and per epoch the Langevin models' mean MH
        acceptance, step size in use (LAE: adapted with target_accept), LAE's mean squared jump of Phi; null: none."""
        return {
            "config": self.config.to_dict(),
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "accept": [None if math.isnan(a) else a for a in self.accept],
            "step_size": self.step_size,
            "jump": [None if math.isnan(j) else j for j in self.jump],
            "train_seconds": self.seconds,
            "units": "nats per image",
        }

    def chain_summary(self) -> dict[str, float]:
        """What the chain did, as result-store columns (bench.registry): see chain_columns."""
        return chain_columns(self.step_size, self.jump)


def chain_columns(step_size: list | None, jump: list | None) -> dict[str, float]:
    """final_step_size, LAE's ALD step at the end of training (adapted with target_accept), and phi_msjd, its last
    epoch's mean squared jump of Phi per step, from the per-epoch lists of a TrainResult or of its summary() (where
    None stands for nan); nan where there is none (no chain, or not LAE)."""
    step, moved = (step_size or [None])[-1], (jump or [None])[-1]
    return {
        "final_step_size": math.nan if step is None else float(step),
        "phi_msjd": math.nan if moved is None else float(moved),
    }


def resolve_device(name: str) -> torch.device:
    """auto: CUDA where available, else the CPU. ConfigError when cuda is asked for and there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but no CUDA device is available; use --device cpu or auto")
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
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, foreach=True)
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
    tally = Tally()
    for x, _ in data_lib.batches(split, batch_size, None, dynamic=False, shuffle=False):
        x = x.to(device)
        loss, stats = model.loss(x, generator)
        tally.add(0, loss, stats, len(x))
    model.train()
    tally.read()
    return tally.means()


def fit(
    config: RunConfig,
    dataset: data_lib.Dataset | None = None,
    progress: bool = False,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train one model. on_epoch(epoch, val_loss) is called after each epoch (an Optuna pruner may
    raise from it). Raises DivergenceError when the loss becomes non-finite or runs away (DIVERGENCE_FACTOR); warns
    (ChainHealthWarning) once when an epoch's mean MH acceptance leaves [ACCEPT_LOW, ACCEPT_HIGH]."""
    config.validate()
    device = resolve_device(config.device)
    dataset = dataset or load_data(config)
    gen = seed_everything(config.seed, device)
    model = new_model(config, dataset.n_pixels, device)
    opt = make_optimizer(config, model.parameters())
    result = TrainResult(model, config)
    result.val_loss.append(evaluate_loss(model, dataset.val, config.batch_size, config.seed + 1, device)[0])
    limit = DIVERGENCE_FACTOR * abs(result.val_loss[0])
    if not math.isfinite(limit):
        raise DivergenceError(0, 0, result.val_loss[0])
    warned = False
    start = time.perf_counter()
    n_batches = math.ceil(len(dataset.train.x) / config.batch_size)
    for epoch in range(1, config.epochs + 1):
        bar = None
        try:  # closed on every exit (a divergence, Ctrl-C): no half-drawn bar before the error line
            bar = progress_bar(n_batches, f"{config.model} epoch {epoch}/{config.epochs}", progress)
            tally = _train_epoch(model, opt, dataset, config, epoch, gen, limit, bar)
        finally:
            if bar is not None:
                bar.close()
        result.train_loss.append(tally.means()[0])
        result.accept.append(tally.means()[1])
        result.step_size.append(tally.step_size)
        result.jump.append(tally.mean_jump())
        val, _ = evaluate_loss(model, dataset.val, config.batch_size, config.seed + 1, device)
        if not val <= limit:
            raise DivergenceError(epoch, n_batches, val, limit)
        result.val_loss.append(val)
        settled = config.target_accept is None or epoch == config.epochs  # an adapted step: judge the last epoch
        a = result.accept[-1]  # nan: no chain
        if config.mh and settled and not warned and not math.isnan(a) and not ACCEPT_LOW <= a <= ACCEPT_HIGH:
            warned = True
            warnings.warn(_health_message(config, epoch, a, tally.step_size), ChainHealthWarning, 2)
        if on_epoch is not None:
            on_epoch(epoch, val)
    result.seconds = time.perf_counter() - start
    return result


def _train_epoch(model, opt, dataset, config: RunConfig, epoch: int, gen, limit: float, bar):
    """One pass over the training split -> its Tally, read. DivergenceError when a minibatch's loss exceeds `limit`,
    checked once per LOG_EVERY minibatches (the figures are read from the device then, not inside a step)."""
    tally = Tally()
    device = model_device(model)
    batch_gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)  # order + binarization
    dynamic = dataset.preprocessing == "dynamic"
    for step, (x, _) in enumerate(data_lib.batches(dataset.train, config.batch_size, batch_gen, dynamic), 1):
        x = x.to(device, non_blocking=True)
        loss, stats = model.loss(x, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.update()  # LAE: the chains' new state and step size, now that the graphs are used
        tally.add(step, loss, stats, len(x))
        bar.update(1)
        if len(tally.pending) == LOG_EVERY:
            _read(tally, limit, epoch, bar)
    _read(tally, limit, epoch, bar)
    return tally


def _read(tally: Tally, limit: float, epoch: int, bar) -> None:
    """Read the figures kept on the device; DivergenceError at the first minibatch whose loss is over `limit`."""
    bad = tally.read(limit)
    if bad is not None:
        raise DivergenceError(epoch, *bad, limit)
    bar.set_postfix(tally.postfix(), refresh=False)


def _health_message(config: RunConfig, epoch: int, accept: float, step_size: float | None) -> str:
    """The ChainHealthWarning's text: what the acceptance means and the option that fixes it."""
    step = f" at step size {step_size:.3g}" if step_size is not None else ""
    lae = " (LAE then trains as an autoencoder with a frozen random last layer)" if config.model == "lae" else ""
    hint = f"the chain is stuck{lae}" if accept < ACCEPT_LOW else "the step is too small to move the chain"
    if config.model == "lae" and config.target_accept is None:  # LAE alone adapts its step
        fix = "--target-accept 0.5 adapts the step"
    else:
        fix = "lower --step-size" if accept < ACCEPT_LOW else "raise --step-size"
    return f"{config.model} epoch {epoch}: mean MH acceptance {accept:.3f}{step}: {hint}; {fix}"


def save_checkpoint(result: TrainResult, path: str | Path) -> Path:
    """Everything that rebuilds the model, written atomically (lae.utils.atomic_path): the RunConfig (the family's
    options among them, e.g. LAE's training batch size), the image size n_pixels and the state dict. Returns the
    path."""
    blob = {
        "format": CHECKPOINT_FORMAT,
        "config": result.config.to_dict(),
        "n_pixels": result.model.config.n_pixels,
        "state_dict": result.model.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return Path(path)


class CheckpointError(ValueError):
    """A missing, corrupt or incompatible checkpoint (one-line message)."""


def _load_blob(path: Path, device: str) -> tuple[RunConfig, int, dict]:
    """(config, n_pixels, state dict) of a checkpoint file, loaded with torch's weights-only unpickler (a pickle that
    would run code is refused unread); torch's warnings are kept quiet, the failure is one CheckpointError line."""
    where = resolve_device(device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location=where, weights_only=True)
        if blob.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"checkpoint {path} has format {blob.get('format')!r}, this lae-bench reads format "
                f"{CHECKPOINT_FORMAT}: train it again"
            )
        return RunConfig.from_dict(blob["config"]), int(blob["n_pixels"]), blob["state_dict"]
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt zip, pickle refused, missing keys
        if isinstance(exc, pickle.UnpicklingError):
            why = next((ln.strip() for ln in str(exc).splitlines() if "nsupported" in ln), "")
            reason = f"it holds Python objects, not only tensors, and was refused unread ({why or 'unpickler'})"
        else:
            text = str(exc).strip()
            reason = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        raise CheckpointError(f"checkpoint {path} is corrupt or not a lae-bench checkpoint: {reason}") from None


def _mismatch(state: dict, expected: dict) -> str | None:
    """The first difference between a checkpoint's state dict and the model's (names and shapes), or None."""
    for name, tensor in state.items():
        if name not in expected:
            return f"unexpected tensor {name} {tuple(tensor.shape)}"
        if tuple(tensor.shape) != tuple(expected[name].shape):
            return f"{name} has shape {tuple(tensor.shape)}, the config needs {tuple(expected[name].shape)}"
    missing = [name for name in expected if name not in state]
    return f"missing tensor {missing[0]} {tuple(expected[missing[0]].shape)}" if missing else None


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[LatentModel, RunConfig]:
    """The model (eval mode) and config of a checkpoint written by save_checkpoint. CheckpointError (one line) when
    the file is missing, corrupt, holds more than tensors, or its tensors do not fit its config (the first
    mismatching tensor named, with both shapes)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} {'is not a file' if path.exists() else 'does not exist'}")
    config, n_pixels, state = _load_blob(path, device)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} is not a lae-bench checkpoint: its state_dict is not tensors")
    try:
        here = dataclasses.replace(config, device=device).validate()
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {exc}") from None
    model = new_model(here, n_pixels, resolve_device(device))
    problem = _mismatch(state, model.state_dict())
    if problem is not None:
        raise CheckpointError(f"checkpoint {path} does not match its config ({config.model}): {problem}")
    model.load_state_dict(state)
    model.eval()
    return model, config
