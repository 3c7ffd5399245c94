"""A checkpoint checked against what it claims before any computation (`evaluate` and `figures` call `load_checked`):
its tensors fit its config (lae.train.load_checkpoint), every weight is finite, and the dataset its config names has
images of the size its decoder writes (a digits checkpoint whose config says mnist is refused here, not by a shape
error deep in a metric). Each refusal is one line naming the file."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.errors import BenchError
from lae import data as data_lib
from lae.train import CheckpointError, load_checkpoint


def load_checked(path: Path, device: str, data_dir: str | None, dataset: str | None = None):
    """(model, config, dataset) of the checkpoint at `path`, checked as the module says; `dataset`: the name the user
    expects (evaluate's --dataset), refused when the checkpoint's config names another."""
    model, config = load_checkpoint(path, device)
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"checkpoint {path}: tensor {name} holds non-finite values (nan or inf)")
    if dataset is not None and dataset.lower().replace("_", "-") != config.dataset:
        raise BenchError(f"checkpoint {path} was trained on {config.dataset}, not {dataset}")
    data = data_lib.load(config.dataset, config.preprocessing, data_dir=data_dir, val_size=config.val_size)
    if data.n_pixels != model.config.n_pixels:
        raise CheckpointError(
            f"checkpoint {path} decodes {model.config.n_pixels} pixels but its config's dataset {config.dataset} has "
            f"images of {data.n_pixels}"
        )
    return model, config, data
