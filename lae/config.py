"""One run's configuration: a flat dataclass with documented fields (CleanRL style), and the typed
per-model config it builds (pythae style; each family's config class lives beside its model, listed in
lae.families). `validate()` rejects bad values before any training."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lae.data import DATASETS, PREPROCESSING
from lae.families import FAMILIES
from lae.models import ModelConfig

MODELS = tuple(FAMILIES)  # vae, iwae, lvae, lae
OPTIMIZERS = ("adam", "sgd")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """An invalid configuration value; the message is one line naming the field."""


def _doc(default, help: str, choices: tuple[str, ...] | None = None):
    """A RunConfig field with its documentation: the one place a field is described (the `train`
    options' help is made from it)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class RunConfig:
    """One run's configuration. Every field is a `python -m bench train` option (`--latent-dim`, ...)."""

    model: str = _doc("lae", "model family", choices=MODELS)
    dataset: str = _doc("mnist", "dataset", choices=DATASETS)
    preprocessing: str = _doc(
        "dynamic",
        "dynamic/static binarization (Bernoulli likelihood) or 8bit (discretized logistic)",
        choices=PREPROCESSING,
    )
    latent_dim: int = _doc(16, "latent dimension D")
    encoder_depth: int = _doc(1, "hidden layers of the encoder trunk g(x) (0: linear encoder)")
    decoder_depth: int | None = _doc(None, "hidden layers of the decoder (default: mirror the encoder)")
    hidden: int = _doc(256, "units per hidden layer (H, the feature width of g(x) when encoder_depth > 0)")
    step_size: float | None = _doc(
        None,
        "Langevin step size (default: the model's, LAE 1e-4 on Phi, LVAE 1e-2 on z; "
        "LAE: halve it when doubling batch_size)",
    )
    n_chains: int = _doc(1, "LAE: independent ALD chains on Phi")
    n_steps: int = _doc(2, "T: Langevin steps per minibatch (LAE) or refinement steps (LVAE)")
    mh: bool = _doc(True, "Metropolis-Hastings correction (MALA); off: unadjusted Langevin")
    target_accept: float | None = _doc(
        None, "LAE: adapt step_size while training toward this MH acceptance rate (default: fixed step)"
    )
    k: int = _doc(5, "IWAE importance samples")
    epochs: int = _doc(1, "training epochs")
    batch_size: int = _doc(100, "minibatch size")
    optimizer: str = _doc("adam", "optimizer (adam is fused on the CPU)", choices=OPTIMIZERS)
    lr: float = _doc(1e-3, "learning rate")
    seed: int = _doc(0, "the one seed: parameters, minibatch order, binarization, Langevin noise")
    train_size: int | None = _doc(None, "use only the first N training images (default: all)")
    val_size: int | None = _doc(
        None, "validation images carved from the end of the training set (default: the dataset's)"
    )
    device: str = _doc("auto", "device (auto uses CUDA where available)", choices=DEVICES)
    data_dir: str | None = _doc(None, "dataset directory (default: $LAE_BENCH_DATA, then the user cache)")

    @property
    def likelihood(self) -> str:
        return "logistic" if self.preprocessing == "8bit" else "bernoulli"

    @property
    def dec_depth(self) -> int:
        return self.encoder_depth if self.decoder_depth is None else self.decoder_depth

    def validate(self) -> RunConfig:
        for name, choices in (
            ("model", MODELS),
            ("dataset", DATASETS),
            ("preprocessing", PREPROCESSING),
            ("optimizer", OPTIMIZERS),
            ("device", DEVICES),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        positive = ("latent_dim", "hidden", "n_chains", "n_steps", "k", "epochs", "batch_size")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer; got {getattr(self, name)!r}")
        for name in ("encoder_depth",) + (("decoder_depth",) if self.decoder_depth is not None else ()):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"{name} must be a non-negative integer; got {getattr(self, name)!r}")
        for name in ("step_size", "lr"):
            v = getattr(self, name)
            if v is None and name == "step_size":
                continue
            if not (isinstance(v, (int, float)) and v > 0 and v < float("inf")):
                raise ConfigError(f"{name} must be a positive finite number; got {v!r}")
        if self.target_accept is not None and not (0.0 < self.target_accept < 1.0):
            raise ConfigError(f"target_accept must be in (0, 1); got {self.target_accept!r}")
        for name in ("train_size", "val_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive integer; got {v!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return cls(**d)


def model_config(run: RunConfig, n_pixels: int) -> ModelConfig:
    """The config of run.model's family: the shared fields, and those of the family's `run_options` that are set
    in `run` (None, e.g. step_size, leaves the family's default)."""
    config_class = FAMILIES[run.model].config
    options = {name: getattr(run, name) for name in config_class.run_options if getattr(run, name) is not None}
    return config_class(
        n_pixels=n_pixels,
        latent_dim=run.latent_dim,
        encoder_depth=run.encoder_depth,
        decoder_depth=run.dec_depth,
        hidden=run.hidden,
        likelihood=run.likelihood,
        **options,
    )
