"""`python -m bench train`: one run from the command line; every RunConfig field is an option, its help and
choices written once in the field's metadata (lae/config.py), its type read from the field's type."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
import types
import typing
from pathlib import Path

from bench.errors import BenchError, check_output, path_arg
from lae.config import ConfigError, RunConfig


def option_type(annotation) -> type:
    """The value type of a RunConfig field: `int | None` -> int, `float | None` -> float, `str` -> str."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (base,) = [t for t in typing.get_args(annotation) if t is not type(None)]
        return base
    return annotation


GIVEN = "given_options"  # the Namespace attribute listing the RunConfig options given on the command line


def _noting(action: type[argparse.Action]) -> type[argparse.Action]:
    """`action` that also adds its dest to the namespace's GIVEN set (what the user typed, not the defaults)."""

    class Noted(action):
        def __call__(self, parser, namespace, values, option_string=None):
            super().__call__(parser, namespace, values, option_string)
            getattr(namespace, GIVEN).add(self.dest)

    return Noted


def add_config_arguments(parser: argparse.ArgumentParser, defaults: RunConfig | None = None) -> None:
    """One `--field-name` option per RunConfig field (bool fields: `--mh` / `--no-mh`), defaults from `defaults`,
    choices and ranges from the field's metadata; the options given are noted (GIVEN) for `config_from_args`."""
    defaults = defaults or RunConfig()
    types_ = typing.get_type_hints(RunConfig)
    parser.set_defaults(**{GIVEN: set()})
    for f in dataclasses.fields(RunConfig):
        default = getattr(defaults, f.name)
        help_text = f.metadata["help"].replace("%", "%%")  # argparse formats help with %
        bounds = f"; range {f.metadata['range'].text()}" if f.metadata.get("range") else ""
        kwargs = dict(default=default, help=f"{help_text} (default: {default}{bounds})", dest=f.name)
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        kind = option_type(types_[f.name])
        if kind is bool:
            kwargs["action"] = _noting(argparse.BooleanOptionalAction)
        else:
            kwargs["type"] = kind
            kwargs["action"] = _noting(argparse._StoreAction)
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The validated RunConfig of parsed options (ConfigError: one line, exit status 2); an option given that the
    chosen model or optimizer does not read (`RunConfig.unused`: --k with LAE, --momentum with Adam) is refused, not
    ignored."""
    config = RunConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}).validate()
    unused = [name for name in config.unused() if name in getattr(args, GIVEN, ())]
    if unused:
        option = "--" + unused[0].replace("_", "-")
        why = f"optimizer {config.optimizer}" if unused[0] == "momentum" else f"model {config.model}"
        if unused[0] == "logistic_scale":
            why = f"preprocessing {config.preprocessing}"
        raise ConfigError(f"{option} does not apply to {why}; leave it out")
    return config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--out", type=path_arg, default=None, help="output directory (default: runs/MODEL-DATASET-TIME)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out (refused by default when it holds one)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def health(result) -> str:
    """One line on the Langevin chain: the last epoch's mean MH acceptance and step size ('' for other models)."""
    accept, step = result.accept[-1], result.step_size[-1]
    if math.isnan(accept):
        return ""
    adapted = f" (adapted toward {result.config.target_accept})" if result.config.target_accept is not None else ""
    step_text = f", step size {step:.3g}{adapted}" if step is not None else ""
    per_epoch = ", ".join(f"{a:.2f}" for a in result.accept)
    return f"MH acceptance {accept:.2f} in the last epoch{step_text}; per epoch: {per_epoch}"


def run(args: argparse.Namespace) -> int:
    from lae.train import fit, load_data, resolve_device, save_checkpoint
    from lae.utils import atomic_write_text

    config = config_from_args(args)  # rejects bad values (and configs that cannot fit in memory) first
    resolve_device(config.device)  # --device cuda without CUDA: refused before the data are read
    out = args.out or Path("runs") / f"{config.model}-{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_output(out, "--out", directory=True)
    if (out / "checkpoint.pt").exists() and not args.overwrite:
        raise BenchError(f"--out {out} already holds a run (checkpoint.pt); choose another --out or pass --overwrite")
    dataset = load_data(config)
    result = fit(config, dataset, progress=not args.no_progress)
    ckpt = save_checkpoint(result, out / "checkpoint.pt")
    summary = atomic_write_text(out / "summary.json", json.dumps(result.summary(), indent=2, allow_nan=False) + "\n")
    print(
        f"{config.model} on {config.dataset}: val loss {result.val_loss[0]:.2f} -> {result.val_loss[-1]:.2f} "
        f"nats/image in {result.seconds:.1f} s"
    )
    if health(result):
        print(health(result))
    print(f"checkpoint: {ckpt}")
    print(f"summary:    {summary}")
    return 0
