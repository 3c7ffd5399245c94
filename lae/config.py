"""One run's configuration: a flat dataclass with documented fields (CleanRL style), and the typed
per-model config it builds (pythae style; each family's config class lives beside its model, listed in
lae.families). `validate()` rejects bad values before any training, including a configuration whose parameters and
activations cannot fit in this machine's memory (`memory_bytes`)."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import NamedTuple

from lae import conv as conv_lib
from lae import data as data_lib
from lae.data import DATASETS, PREPROCESSING
from lae.families import FAMILIES
from lae.models import ModelConfig
from lae.nets import ARCHITECTURES

MODELS = tuple(FAMILIES)  # vae, iwae, lvae, lae, vae_flow, frozen, map, then installed families (lae.families)
OPTIMIZERS = ("adam", "sgd")
LOGISTIC_SCALES = ("pixel", "shared")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_PIXELS = 784  # the memory estimate's image size when the dataset's is unknown before reading (npz, plugins)
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
INT32_MAX = 2**31 - 1  # a C int: torch's sizes and thread counts; the memory estimate bounds sizes further


# The options some families take and others ignore (k, step_size, ...): `RunConfig.unused` refuses them for the others.
# batch_size is not one: every run trains on it, and LAE's config takes it too (its ALD step is tied to it).
FAMILY_OPTIONS = tuple(
    n for n in dict.fromkeys(n for f in FAMILIES.values() for n in f.config.run_options) if n != "batch_size"
)


def physical_memory_bytes() -> int:
    """This machine's physical memory in bytes (os.sysconf); the bound of `RunConfig.validate`'s memory check."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class ConfigError(ValueError):
    """An invalid configuration value; the message is one line naming the field."""


class Range(NamedTuple):
    """The documented range of a number: low..high, each end closed unless `open_low` / `open_high`; `integer`: an
    int (never a bool: TOML's true is no number), else a finite int or float. The one check of every numeric value
    where it enters: RunConfig fields (their metadata), MetricSettings, and the commands' seeds, threads, ports and
    counts (`check`)."""

    low: float
    high: float
    integer: bool = True
    open_low: bool = False
    open_high: bool = False

    def text(self) -> str:
        """The range as help and messages say it: `1..2147483647`, `(0, 1e+04]`."""
        if self.integer:
            return f"{self.low}..{self.high}"
        return f"{'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"

    def holds(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, int if self.integer else (int, float)):
            return False
        if not self.integer and not math.isfinite(v):
            return False
        above = v > self.low if self.open_low else v >= self.low
        below = v < self.high if self.open_high else v <= self.high
        return above and below

    def check(self, name: str, v):
        """`v` when in range, else ConfigError: `NAME must be <what>; got V` (one line)."""
        if not self.holds(v):
            raise ConfigError(f"{name} must be {self.describe()}; got {v!r}")
        return v

    def describe(self) -> str:
        if self.integer:
            kind = {0: "a non-negative integer", 1: "a positive integer"}.get(self.low, f"an integer >= {self.low}")
            return f"{kind} up to {self.high}" if self.low in (0, 1) else f"an integer in {self.text()}"
        if self.low == 0 and self.open_low and not self.open_high:
            return f"a positive finite number up to {self.high:g}"
        return f"in {self.text()}"


SEEDS = Range(0, MAX_SEED)  # every seed: train's, evaluate's, figures'
COUNTS = Range(1, INT32_MAX)  # sizes torch takes as C ints (the memory estimate bounds them further)
THREADS = Range(1, 1024)  # torch intra-op threads (set_num_threads takes a C int; more than 1024 is a typo)
PORTS = Range(0, 65535)  # a TCP port; 0: any free one
EPOCHS = Range(1, 10_000)  # training epochs (the paper's longest runs are thousands; 10**12 is a typo)


def check(name: str, v, kind: Range):
    """`v` when `kind` holds it, else ConfigError (one line naming `name`, e.g. `--threads`)."""
    return kind.check(name, v)


def _doc(default, help: str, choices: tuple[str, ...] | None = None, range: Range | None = None):
    """A RunConfig field with its documentation: the one place a field is described, its choices or its range (the
    `train` options' help is made from it; `validate` checks them)."""
    return field(default=default, metadata={"help": help, "choices": choices, "range": range})


@dataclass
class RunConfig:
    """One run's configuration. Every field is a `python -m bench train` option (`--latent-dim`, ...)."""

    model: str = _doc("lae", "model family", choices=MODELS)
    dataset: str = _doc("mnist", f"dataset: {', '.join(DATASETS)}, or npz:PATH (a .npz file of uint8 arrays)")
    preprocessing: str = _doc(
        "dynamic",
        "dynamic/static binarization (Bernoulli likelihood) or 8bit (discretized logistic)",
        choices=PREPROCESSING,
    )
    logistic_scale: str = _doc(
        "pixel",
        "8bit: a learned log-scale per pixel, or one shared scale softplus(tau)^-1/2 (the official LAE code's)",
        choices=LOGISTIC_SCALES,
    )
    architecture: str = _doc(
        "mlp", "networks (lae.nets.ARCHITECTURES; layernorm: the official code's; conv: lae.conv)", ARCHITECTURES
    )
    latent_dim: int = _doc(16, "latent dimension D", range=COUNTS)
    encoder_depth: int = _doc(1, "hidden layers of the encoder trunk g(x) (0: linear encoder)", range=Range(0, 1000))
    decoder_depth: int | None = _doc(
        None, "hidden layers of the decoder (default: mirror the encoder)", range=Range(0, 1000)
    )
    hidden: int = _doc(
        256, "units per hidden layer (H, the feature width of g(x) when encoder_depth > 0)", range=COUNTS
    )
    step_size: float | None = _doc(
        None,
        "Langevin step size (default: the model's, LAE 1e-4 on Phi, LVAE 1e-2 on z; "
        "LAE: halve it when doubling batch_size)",
        range=Range(0, 1e4, integer=False, open_low=True),
    )
    n_chains: int = _doc(1, "LAE: independent ALD chains on Phi", range=COUNTS)
    n_steps: int = _doc(2, "T: Langevin steps per minibatch (LAE) or refinement steps (LVAE)", range=COUNTS)
    mh: bool = _doc(True, "Metropolis-Hastings correction (MALA); off: unadjusted Langevin")
    target_accept: float | None = _doc(
        None,
        "LAE: adapt step_size while training toward this MH acceptance rate (default: fixed step)",
        range=Range(0, 1, integer=False, open_low=True, open_high=True),
    )
    k: int = _doc(5, "IWAE importance samples", range=COUNTS)
    epochs: int = _doc(1, "training epochs", range=EPOCHS)
    batch_size: int = _doc(100, "minibatch size", range=COUNTS)
    optimizer: str = _doc("adam", "optimizer (adam is fused on the CPU)", choices=OPTIMIZERS)
    lr: float = _doc(1e-3, "learning rate", range=Range(0, 1e8, integer=False, open_low=True))
    momentum: float = _doc(
        0.9,
        "SGD momentum (optimizer sgd; the official LAE code's plain SGD: 0)",
        range=Range(0, 1, integer=False, open_high=True),
    )
    seed: int = _doc(0, "the one seed: parameters, minibatch order, binarization, Langevin noise", range=SEEDS)
    train_size: int | None = _doc(None, "use only the first N training images (default: all)", range=COUNTS)
    val_size: int | None = _doc(
        None, "validation images carved from the end of the training set (default: the dataset's)", range=COUNTS
    )
    device: str = _doc("auto", "device (auto uses CUDA where available)", choices=DEVICES)
    data_dir: str | None = _doc(None, "dataset directory (default: $LAE_BENCH_DATA, then the user cache)")

    @property
    def likelihood(self) -> str:
        if self.preprocessing != "8bit":
            return "bernoulli"
        return "logistic_shared" if self.logistic_scale == "shared" else "logistic"

    @property
    def dec_depth(self) -> int:
        return self.encoder_depth if self.decoder_depth is None else self.decoder_depth

    @property
    def pixels(self) -> int:
        """P, the values per image of `dataset` as its Source declares them (DEFAULT_PIXELS when unknown)."""
        try:
            shape = data_lib.source(self.dataset).image_shape
        except data_lib.DataError:
            shape = None
        return math.prod(shape) if shape else DEFAULT_PIXELS

    def memory_bytes(self) -> int:
        """An estimate of training's memory in bytes from the shapes alone (nothing is allocated): 16 bytes per
        parameter (float32 weight, gradient, two Adam moments: trunk, VAE head or LAE's Phi (n_chains, D, H),
        decoder) plus 12 bytes per activation of one minibatch (value, ReLU output, gradient): batch_size x [the
        encoder's widths + S x the decoder's widths (D, hidden per layer, P)], S the latent samples per image
        (the family's ModelConfig.latent_samples: IWAE k, LAE n_chains x (n_steps + 1), ...; the head's parameters
        from its ModelConfig.head_parameters). P = `pixels`. conv: the
        dense layers meet F = lae.conv.flat_features(P) conv features instead of P pixels, each direction adds
        lae.conv.activations(P) per image and the decoder its P outputs (the kernels' few parameters are left out)."""
        family = FAMILIES[self.model].config if self.model in FAMILIES else FAMILIES["vae"].config
        options = {name: getattr(self, name, None) for name in family.run_options}
        p, h, d = self.pixels, self.hidden, self.latent_dim
        conv = self.architecture == "conv"
        f, a, out = (conv_lib.flat_features(p), conv_lib.activations(p), p) if conv else (p, 0, 0)
        width = h if self.encoder_depth > 0 else f  # H, the trunk's feature width
        trunk = (f * h + h) + (self.encoder_depth - 1) * (h * h + h) if self.encoder_depth > 0 else 0
        head = family.head_parameters(options, d, width)
        layers = [d] + [h] * self.dec_depth + [f]
        decoder = sum(a * b + b for a, b in zip(layers, layers[1:]))
        s = family.latent_samples(options)
        activations = self.batch_size * (p + a + self.encoder_depth * h + s * (sum(layers) + a + out))
        return 16 * (trunk + head + decoder) + 12 * activations

    def validate(self) -> RunConfig:
        """Every field's type and range; then the memory estimate (`memory_bytes`) against this machine's physical
        memory. Raises ConfigError (one line naming the field) on the first problem; returns self."""
        for name, choices in (
            ("model", MODELS),
            ("preprocessing", PREPROCESSING),
            ("logistic_scale", LOGISTIC_SCALES),
            ("architecture", ARCHITECTURES),
            ("optimizer", OPTIMIZERS),
            ("device", DEVICES),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        try:
            data_lib.source(self.dataset)
        except data_lib.DataError as exc:
            raise ConfigError(f"dataset: {exc}") from None
        if self.logistic_scale != "pixel" and self.preprocessing != "8bit":
            raise ConfigError(f"logistic_scale applies to 8bit preprocessing only; got {self.preprocessing!r}")
        if not isinstance(self.mh, bool):
            raise ConfigError(f"mh must be true or false; got {self.mh!r}")
        for f in dataclasses.fields(self):  # every number in its documented range (the field's metadata)
            v = getattr(self, f.name)
            if f.metadata["range"] is not None and not (v is None and f.default is None):
                f.metadata["range"].check(f.name, v)
        need, have = self.memory_bytes(), physical_memory_bytes()
        if need > have:
            family = FAMILIES[self.model].config
            raise ConfigError(
                f"{self.model} with latent_dim={self.latent_dim}, hidden={self.hidden}, batch_size={self.batch_size}"
                f"{''.join(f', {n}={v}' for n in family.run_options if (v := getattr(self, n, None)) is not None)}: "
                f"parameters and activations need about {need / 1e9:.3g} GB (RunConfig.memory_bytes), more than "
                f"this machine's {have / 1e9:.3g} GB of memory"
            )
        return self

    def unused(self) -> list[str]:
        """The fields this run's model and optimizer do not read: another family's options (a family's config names
        those it takes, `run_options`: e.g. k is IWAE's, target_accept LAE's), momentum unless the optimizer is sgd,
        logistic_scale unless the preprocessing is 8bit. `train` refuses such an option when it is given (a sweep's
        `fixed` table, shared by its models, may hold them)."""
        own = set(FAMILIES[self.model].config.run_options)
        out = [name for name in FAMILY_OPTIONS if name not in own]
        if self.optimizer != "sgd":
            out.append("momentum")
        if self.preprocessing != "8bit":
            out.append("logistic_scale")
        return out

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
    options = {name: v for name in config_class.run_options if (v := getattr(run, name, None)) is not None}
    return config_class(
        n_pixels=n_pixels,
        latent_dim=run.latent_dim,
        encoder_depth=run.encoder_depth,
        decoder_depth=run.dec_depth,
        hidden=run.hidden,
        architecture=run.architecture,
        likelihood=run.likelihood,
        **options,
    )
