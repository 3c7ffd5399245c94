"""Datasets for the benchmark, one registry (DATASETS): MNIST and Fashion-MNIST (original IDX files, read by lae.idx:
where they live, checks, downloads), scikit-learn's 8x8 digits, CIFAR-10 and SVHN (original files, lae.images), the
datasets of installed packages (entry point group ``lae_bench.datasets``), and ``npz:PATH``, a user's own images
(lae.images.read_npz documents the arrays). PREPROCESSING is the one list of preprocessing modes.

A dataset is a Source: ``read(root, download)`` returning its raw splits (x_train (N, *image_shape) uint8 counts in
0..levels, y_train (N,) int labels or None, x_test, y_test), image_shape (H, W) or (C, H, W) (x is flattened in this
order), plus its default validation size. Another package registers one with an entry point whose value is a Source
or a bare ``read`` function (docs/extending.md).

Splits: val = the LAST ``val_size`` images of the official training set; digits (no official split) uses a fixed
permutation (numpy seed 0, independent of ``seed``): test = the first 297 images, the other 1500 form the training set.
Without labels (an npz file without y arrays) every label is 0 and n_classes is 1: label-based metrics mean nothing.

Preprocessing (``x`` is always float32 in [0, 1], shape (N, P) with P the pixels (times channels) of an image):
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lae import images
from lae.idx import DataError, load_idx_dataset, resolve_data_dir
from lae.plugins import discover

PREPROCESSING = ("dynamic", "static", "8bit")
ENTRY_POINT_GROUP = "lae_bench.datasets"
NPZ_PREFIX = "npz:"  # --dataset npz:PATH
_DIGITS_TEST = 297


@dataclass(frozen=True)
class Source:
    """One dataset the suite can load. read(root: Path (the resolved data directory), download: bool) -> (x_train
    (N, *image_shape) uint8, y_train (N,) ints | None, x_test (M, *image_shape) uint8, y_test | None); image_shape
    (H, W) or (C, H, W), when known before reading (the memory estimate; None: unknown); levels: the largest count
    (255; digits 16); val_size: default validation images (None: a tenth of the training set)."""

    read: Callable[[Path, bool], tuple]
    image_shape: tuple[int, ...] | None = None
    levels: int = 255
    val_size: int | None = None


def as_source(value) -> Source:
    """An entry point's value as a Source: a Source, or a bare read function. TypeError otherwise."""
    if isinstance(value, Source):
        return value
    if callable(value):
        return Source(value)
    raise TypeError(f"not a lae.data.Source or a read(root, download) function: {value!r}")


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
    image_shape: tuple[int, ...]  # (28, 28), (8, 8) or, channels first, (3, 32, 32): x's flattening order
    n_classes: int
    train: Split
    val: Split
    test: Split

    @property
    def n_pixels(self) -> int:
        return int(np.prod(self.image_shape))


@functools.lru_cache(maxsize=1)
def _load_digits():
    """-> (official-train counts (1500, 8, 8) uint8 in 0..16, labels, test counts (297, 8, 8), labels), read-only."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    counts, labels = bunch.data.astype(np.uint8).reshape(-1, 8, 8), bunch.target.astype(np.uint8)
    perm = np.random.default_rng(0).permutation(len(labels))
    test, train = perm[:_DIGITS_TEST], perm[_DIGITS_TEST:]
    out = (counts[train], labels[train], counts[test], labels[test])
    for a in out:
        a.setflags(write=False)
    return out


def _idx(name: str) -> Source:
    def read(root: Path, download: bool):
        x_tr, y_tr, x_te, y_te = load_idx_dataset(name, root, download)
        return x_tr.reshape(-1, 28, 28), y_tr, x_te.reshape(-1, 28, 28), y_te

    return Source(read, (28, 28), val_size=10_000)


BUILT_IN: dict[str, Source] = {
    "mnist": _idx("mnist"),
    "fashion-mnist": _idx("fashion-mnist"),
    "digits": Source(lambda root, download: _load_digits(), (8, 8), levels=16, val_size=300),
    "cifar10": Source(images.read_cifar10, (3, 32, 32), val_size=5_000),
    "svhn": Source(images.read_svhn, (3, 32, 32), val_size=7_326),  # a tenth of its 73,257 training images
}
SOURCES: dict[str, Source] = discover(ENTRY_POINT_GROUP, BUILT_IN, as_source)
DATASETS = tuple(SOURCES)  # the registered names; besides them, npz:PATH


def dataset_key(name: str) -> str:
    """The registry key of a dataset name ("Fashion_MNIST" -> "fashion-mnist"); npz:PATH as given."""
    name = str(name)
    return name if name.startswith(NPZ_PREFIX) else name.lower().replace("_", "-")


def source(name: str) -> Source:
    """The Source of a dataset name; DataError (one line, the choices) when there is none."""
    key = dataset_key(name)
    if key.startswith(NPZ_PREFIX):
        path = Path(key[len(NPZ_PREFIX) :]).expanduser()
        if not key[len(NPZ_PREFIX) :]:
            raise DataError("npz: needs a path: --dataset npz:PATH")
        return Source(lambda root, download: images.read_npz(path))
    if key not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}, or npz:PATH")
    return SOURCES[key]


def _checked_arrays(key: str, arrays, levels: int):
    """A Source's splits, checked: the shapes, dtypes and ranges its docstring promises (DataError otherwise)."""
    try:
        x_tr, y_tr, x_te, y_te = arrays
    except (TypeError, ValueError):
        raise DataError(f"dataset {key}: its reader returned {type(arrays).__name__}, not 4 arrays") from None
    for what, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim not in (3, 4) or len(x) == 0:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise DataError(f"dataset {key}: x_{what} is {got}; expected uint8 (N, H, W) or (N, C, H, W), N > 0")
        if int(x.max()) > levels:
            raise DataError(f"dataset {key}: x_{what} has count {int(x.max())} above its levels {levels}")
        if y is not None and (np.shape(y) != (len(x),) or np.asarray(y).min() < 0):
            raise DataError(f"dataset {key}: y_{what} has shape {np.shape(y)}; expected ({len(x)},) labels >= 0")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(f"dataset {key}: train images {x_tr.shape[1:]} differ from test images {x_te.shape[1:]}")
    if (y_tr is None) != (y_te is None):
        raise DataError(f"dataset {key}: labels for one split only")
    if y_tr is None:
        y_tr, y_te = np.zeros(len(x_tr), np.int64), np.zeros(len(x_te), np.int64)
    return x_tr.reshape(len(x_tr), -1), np.asarray(y_tr), x_te.reshape(len(x_te), -1), np.asarray(y_te), x_tr.shape[1:]


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
    key, src = dataset_key(name), source(name)
    if preprocessing not in PREPROCESSING:
        raise DataError(f"unknown preprocessing {preprocessing!r}; choose one of: {', '.join(PREPROCESSING)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed={seed!r} is invalid: need a non-negative integer")
    x_tr, y_tr, x_te, y_te, shape = _checked_arrays(key, src.read(resolve_data_dir(data_dir), download), src.levels)
    levels = src.levels
    default_val = src.val_size if src.val_size is not None else len(y_tr) // 10
    n_classes = int(max(y_tr.max(), y_te.max())) + 1

    n_val = _check_size(
        "val_size",
        min(default_val, len(y_tr) - 1) if val_size is None else val_size,
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
    return Dataset(key, preprocessing, tuple(shape), max(n_classes, 10 if key in BUILT_IN else 1), **splits)


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
