"""Datasets for the benchmark: MNIST and Fashion-MNIST (original IDX files, read by lae.idx: where they live,
checks, downloads) and scikit-learn's 8x8 digits. DATASETS and PREPROCESSING are the one list of each.

Splits: val = the LAST ``val_size`` images of the official training set; digits (no official split) uses a fixed
permutation (numpy seed 0, independent of ``seed``): test = the first 297 images, the other 1500 form the training set.

Preprocessing (``x`` is always float32 in [0, 1], shape (N, P) with P = H*W pixels):
  dynamic  train keeps the intensities (binarized afresh per minibatch by ``batches(..., dynamic=True)``);
           val and test are binarized ONCE, exactly as in ``static`` mode, so evaluation is deterministic.
  static   train, val and test are binarized once: x ~ Bernoulli(intensity).
  8bit     x = k/255 for integer k in 0..255 (discretized likelihoods, bin width 1/255); digits (0..16) use
           k = round(v*255/16).
Binarization uses one numpy generator per split, seeded with ``(seed, split index)`` (``seed`` defaults to 0), and
is applied to the whole split before ``train_size``/``test_size`` subsetting, so an image's binary version does not
depend on those sizes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from lae.idx import DataError, load_idx_dataset, resolve_data_dir

DATASETS = ("mnist", "fashion-mnist", "digits")
PREPROCESSING = ("dynamic", "static", "8bit")
_DEFAULT_VAL = {"mnist": 10_000, "fashion-mnist": 10_000, "digits": 300}
_DIGITS_TEST = 297


@dataclass(frozen=True, eq=False)
class Split:
    """x: (N, P) float32 in [0, 1] (see the module docstring per preprocessing mode); y: (N,) int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    preprocessing: str
    image_shape: tuple[int, int]  # (28, 28) or (8, 8)
    n_classes: int
    train: Split
    val: Split
    test: Split

    @property
    def n_pixels(self) -> int:
        return self.image_shape[0] * self.image_shape[1]


@functools.lru_cache(maxsize=1)
def _load_digits():
    """-> (official-train counts (1500, 64) uint8 in 0..16, labels, test counts (297, 64), labels), read-only."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    counts, labels = bunch.data.astype(np.uint8), bunch.target.astype(np.uint8)
    perm = np.random.default_rng(0).permutation(len(labels))
    test, train = perm[:_DIGITS_TEST], perm[_DIGITS_TEST:]
    out = (counts[train], labels[train], counts[test], labels[test])
    for a in out:
        a.setflags(write=False)
    return out


# -------------------------------------------------------------------------------------------------------------- load
def _check_size(var: str, value: int | None, available: int, lo: int, what: str) -> int:
    if value is None:
        return available
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= available:
        raise DataError(f"{var}={value!r} is invalid: need an integer in {lo}..{available} ({what})")
    return int(value)


def load(
    name: str,
    preprocessing: str = "dynamic",
    data_dir=None,
    val_size: int | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    download: bool = True,
) -> Dataset:
    """Load a dataset (see the module docstring for splits and preprocessing). train_size / test_size keep the first
    N images of the train / test split (same images every time). ``seed`` seeds the once-only binarizations."""
    key = str(name).lower().replace("_", "-")
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if preprocessing not in PREPROCESSING:
        raise DataError(f"unknown preprocessing {preprocessing!r}; choose one of: {', '.join(PREPROCESSING)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed={seed!r} is invalid: need a non-negative integer")
    if key == "digits":
        (x_tr, y_tr, x_te, y_te), levels, shape = _load_digits(), 16, (8, 8)
    else:
        arrays = load_idx_dataset(key, resolve_data_dir(data_dir), download)
        (x_tr, y_tr, x_te, y_te), levels, shape = arrays, 255, (28, 28)

    n_val = _check_size(
        "val_size",
        _DEFAULT_VAL[key] if val_size is None else val_size,
        len(y_tr) - 1,
        0,
        f"{key} has {len(y_tr)} training images and at least one must stay in train",
    )
    n_fit = len(y_tr) - n_val
    n_train = _check_size("train_size", train_size, n_fit, 1, f"{key} train split with val_size={n_val}")
    n_test = _check_size("test_size", test_size, len(y_te), 1, f"{key} test split")
    parts = {
        "train": (x_tr[:n_fit], y_tr[:n_fit], n_train),
        "val": (x_tr[n_fit:], y_tr[n_fit:], n_val),
        "test": (x_te, y_te, n_test),
    }

    splits = {}
    for index, (split, (counts, labels, keep)) in enumerate(parts.items()):
        if preprocessing == "static" or (preprocessing == "dynamic" and split != "train"):
            noise = np.random.default_rng([seed, index]).integers(0, levels, counts.shape, dtype=np.uint8)
            x = (noise < counts).astype(np.float32)  # P(x=1) = counts / levels exactly
        elif preprocessing == "8bit" and levels != 255:
            x = np.round(counts.astype(np.float32) * (255 / levels)) / np.float32(255)
        else:  # intensities: dynamic train, or 8-bit data already on the k/255 grid
            x = counts.astype(np.float32) / np.float32(levels)
        splits[split] = Split(
            torch.from_numpy(np.ascontiguousarray(x[:keep])), torch.from_numpy(labels[:keep].astype(np.int64))
        )
    return Dataset(key, preprocessing, shape, 10, **splits)


def batches(
    split: Split,
    batch_size: int,
    generator: torch.Generator | None,
    dynamic: bool,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x (B, P) float32, y (B,) int64) minibatches. shuffle permutes with ``generator`` (torch.randperm); if
    ``dynamic``, x is a fresh Bernoulli(x) draw with ``generator`` (a new binarization each epoch). Deterministic
    given the generator state (None: torch's global RNG). CPU tensors and generator expected."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size={batch_size!r} is invalid: need a positive integer")
    n = len(split.y)
    order = torch.randperm(n, generator=generator) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
        x, y = split.x[idx], split.y[idx]
        yield (torch.bernoulli(x, generator=generator) if dynamic else x), y
