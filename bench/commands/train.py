"""`python -m bench train`: one run from the command line; every RunConfig field is an option."""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from lae.config import DATASETS, DEVICES, MODELS, OPTIMIZERS, PREPROCESSING, RunConfig

HELP = {
    "model": "model family", "dataset": "dataset", "preprocessing":
    "dynamic/static binarization (Bernoulli likelihood) or 8bit (discretized logistic)",
    "latent_dim": "latent dimension D", "encoder_depth": "hidden layers of the encoder (0: linear)",
    "decoder_depth": "hidden layers of the decoder (default: mirror the encoder)", "hidden": "units per hidden layer",
    "step_size": "Langevin step size (LAE: on Phi, halve it when doubling batch_size; LVAE: on z)",
    "n_chains": "LAE: independent ALD chains", "n_steps": "Langevin steps per minibatch (LAE) or refinement steps (LVAE)",
    "mh": "Metropolis-Hastings correction",
    "target_accept": "LAE: adapt step_size while training toward this MH acceptance rate (default: fixed step)", "k": "IWAE importance samples", "epochs": "training epochs",
    "batch_size": "minibatch size", "optimizer": "optimizer", "lr": "learning rate",
    "seed": "the one seed (init, data order, binarization, Langevin noise)",
    "train_size": "use only the first N training images", "val_size": "validation images carved from the end of train",
    "device": "auto uses CUDA where available", "data_dir": "dataset directory (default: $LAE_BENCH_DATA, then the user cache)",
}
CHOICES = {"model": MODELS, "dataset": DATASETS, "preprocessing": PREPROCESSING, "optimizer": OPTIMIZERS, "device": DEVICES}


def add_config_arguments(parser: argparse.ArgumentParser, defaults: RunConfig | None = None) -> None:
    defaults = defaults or RunConfig()
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kwargs = dict(default=default, help=f"{HELP[f.name]} (default: {default})", dest=f.name)
        if f.name in CHOICES:
            kwargs["choices"] = CHOICES[f.name]
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif f.name in ("decoder_depth", "train_size", "val_size"):
            parser.add_argument(flag, type=int, **kwargs)
        elif f.name in ("step_size", "target_accept"):
            parser.add_argument(flag, type=float, **kwargs)
        elif f.name == "data_dir":
            parser.add_argument(flag, type=str, **kwargs)
        else:
            parser.add_argument(flag, type=type(default), **kwargs)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}).validate()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: runs/MODEL-DATASET-TIME)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from lae.train import fit, load_data, save_checkpoint

    config = config_from_args(args)  # rejects bad values before any data is read
    dataset = load_data(config)
    out = args.out or Path("runs") / f"{config.model}-{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = fit(config, dataset, progress=not args.no_progress)
    ckpt = save_checkpoint(result, out / "checkpoint.pt")
    summary = out / "summary.json"
    tmp = summary.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.summary(), indent=2))
    tmp.replace(summary)
    print(f"{config.model} on {config.dataset}: val loss {result.val_loss[0]:.2f} -> {result.val_loss[-1]:.2f} nats/image "
          f"in {result.seconds:.1f} s")
    print(f"checkpoint: {ckpt}")
    print(f"summary:    {summary}")
    return 0
