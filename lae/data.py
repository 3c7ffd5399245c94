"""Datasets for the benchmark: MNIST and Fashion-MNIST (original IDX files) and scikit-learn's 8x8 digits.

Files live in ``<data_dir>/<name>/`` under their original names, gzipped (md5-checked against the published
checksums) or un-gzipped (magic number, image size, count and exact length checked). ``data_dir`` is the
``--data-dir`` argument, else ``$LAE_BENCH_DATA``, else ``~/.cache/lae-bench`` (``$XDG_CACHE_HOME/lae-bench``).
Missing files may be downloaded; existing files are never overwritten or deleted.

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
import gzip
import hashlib
import http.client
import os
import pathlib
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

DATASETS = ("mnist", "fashion-mnist", "digits")
PREPROCESSING = ("dynamic", "static", "8bit")
ENV_VAR = "LAE_BENCH_DATA"

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MD5 = {  # md5 of the published .gz files
    "mnist": dict(zip(FILES, ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                              "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"))),
    "fashion-mnist": dict(zip(FILES, ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                                      "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"))),
}
MIRRORS = {"mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
           "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"}
DOWNLOAD_TIMEOUT_S = 10.0
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
_DEFAULT_VAL = {"mnist": 10_000, "fashion-mnist": 10_000, "digits": 300}
_DIGITS_TEST = 297
_ADVICE = f"delete it or point {ENV_VAR}/--data-dir elsewhere"


class DataError(Exception):
    """One-line, user-facing message (no traceback needed). Always names the file or variable at fault."""


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


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """--data-dir argument, else $LAE_BENCH_DATA, else a per-user cache dir: $XDG_CACHE_HOME/lae-bench if
    XDG_CACHE_HOME is an absolute path, otherwise ~/.cache/lae-bench. The directory is not created."""
    if data_dir is not None and str(data_dir) != "":
        return pathlib.Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return pathlib.Path(os.environ[ENV_VAR]).expanduser()
    xdg = os.path.expanduser(os.environ.get("XDG_CACHE_HOME", ""))
    base = pathlib.Path(xdg) if os.path.isabs(xdg) else pathlib.Path.home() / ".cache"  # XDG: ignore relative paths
    return base / "lae-bench"


# ---------------------------------------------------------------------------------------------------------- IDX files
@functools.lru_cache(maxsize=16)
def _parse_idx(resolved: str, mtime_ns: int, size: int, gz: bool, kind: str, count: int, md5: str | None) -> np.ndarray:
    """Parse one IDX file -> read-only uint8 array, (count, 784) images or (count,) labels. Cached per file version
    (so the md5 of a .gz is computed once per process). Raises ValueError(reason) without the path."""
    with open(resolved, "rb") as f:
        raw = f.read()
    if gz:
        try:
            raw_gz, raw = raw, gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise ValueError(f"is truncated or not a valid gzip file ({e}); {_ADVICE}") from None
    magic, header = (IMAGE_MAGIC, 16) if kind == "images" else (LABEL_MAGIC, 8)
    if len(raw) < header:
        raise ValueError(f"is truncated: {len(raw)} bytes, shorter than the {header}-byte IDX header; {_ADVICE}")
    dims = np.frombuffer(raw, ">u4", count=header // 4).tolist()
    if dims[0] != magic:
        raise ValueError(f"has magic number {dims[0]}, expected {magic} (not an IDX {kind} file); {_ADVICE}")
    if dims[1] != count or dims[2:] not in ([], [28, 28]):
        shape = "x".join(map(str, dims[1:]))
        want = f"{count}x28x28" if kind == "images" else str(count)
        raise ValueError(f"holds {kind} of shape {shape}, expected {want} (not the original file); {_ADVICE}")
    expected_len = header + count * (784 if kind == "images" else 1)
    if len(raw) != expected_len:
        what = "is truncated" if len(raw) < expected_len else "has trailing bytes"
        got_len = f"{len(raw)} bytes" + (" after decompression" if gz else "")
        raise ValueError(f"{what}: {got_len}, header implies {expected_len}; {_ADVICE}")
    if md5 is not None and (got := hashlib.md5(raw_gz).hexdigest()) != md5:
        raise ValueError(f"has md5 {got}, expected {md5} (corrupt or not the original file); {_ADVICE}")
    arr = np.frombuffer(raw, np.uint8, offset=header)
    return arr.reshape(count, 784) if kind == "images" else arr


def read_idx(path: pathlib.Path, kind: str, count: int, md5: str | None = None) -> np.ndarray:
    """Read a checked IDX file (``kind`` "images" or "labels", ``count`` items). Read-only uint8 array. DataError
    naming ``path`` if it is truncated, not gzip, has the wrong magic/shape/length or (for .gz) the wrong md5."""
    try:
        st = path.stat()
        return _parse_idx(str(path.resolve()), st.st_mtime_ns, st.st_size, path.suffix == ".gz", kind, count, md5)
    except ValueError as e:
        raise DataError(f"{path} {e}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def _download(url: str, dest: pathlib.Path, md5: str) -> None:
    """Download url to a temp file next to dest, check md5, move into place (only if dest still does not exist)."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            digest = hashlib.md5()
            with os.fdopen(fd, "wb") as f:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    f.write(chunk)
            if digest.hexdigest() != md5:
                raise ValueError(f"{url} has md5 {digest.hexdigest()}, expected {md5}")
            if not dest.exists():  # never overwrite a file that appeared meanwhile
                os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _idx_paths(name: str, root: pathlib.Path, download: bool) -> dict[str, pathlib.Path]:
    """FILES -> existing path (.gz preferred over un-gzipped), downloading missing ones if allowed."""
    folder = root / name
    found = {}
    for f in FILES:
        found.update({f: p for p in (folder / f, folder / f"{f}.gz") if p.exists()})  # .gz wins if both exist
    missing = [f for f in FILES if f not in found]
    reason = "download=False"
    if missing and download:
        try:
            for f in list(missing):
                _download(MIRRORS[name] + f"{f}.gz", folder / f"{f}.gz", MD5[name][f])
                found[f] = folder / f"{f}.gz"
                missing.remove(f)
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
            reason = f"download failed: {e}".replace("\n", " ")
    if missing:
        misplaced = any(root.glob(f"{missing[0]}*"))
        hint = f"; note: {root} itself holds {missing[0]}*, point to its parent instead" if misplaced else ""
        raise DataError(f"{name}: missing {', '.join(f + '.gz' for f in missing)} in {folder}; set {ENV_VAR} "
                        f"(or --data-dir) to a directory holding {name}/<files>, or enable network access for a "
                        f"download ({reason}){hint}")
    return found


def _load_idx_dataset(name: str, root: pathlib.Path, download: bool):
    """-> (train_counts (60000, 784) uint8, train_labels, test_counts (10000, 784), test_labels), read-only."""
    paths = _idx_paths(name, root, download)
    out = []
    for f in FILES:
        path = paths[f]
        out.append(read_idx(path, "images" if "images" in f else "labels", 60_000 if f.startswith("train") else 10_000,
                            MD5[name][f] if path.suffix == ".gz" else None))
    for i in (1, 3):
        if out[i].max() >= 10:
            raise DataError(f"{paths[FILES[i]]} has label {int(out[i].max())}, expected 0..9; {_ADVICE}")
    return tuple(out)


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


def load(name: str, preprocessing: str = "dynamic", data_dir=None, val_size: int | None = None,
         train_size: int | None = None, test_size: int | None = None, seed: int = 0, download: bool = True) -> Dataset:
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
        arrays = _load_idx_dataset(key, resolve_data_dir(data_dir), download)
        (x_tr, y_tr, x_te, y_te), levels, shape = arrays, 255, (28, 28)

    n_val = _check_size("val_size", _DEFAULT_VAL[key] if val_size is None else val_size, len(y_tr) - 1, 0,
                        f"{key} has {len(y_tr)} training images and at least one must stay in train")
    n_fit = len(y_tr) - n_val
    n_train = _check_size("train_size", train_size, n_fit, 1, f"{key} train split with val_size={n_val}")
    n_test = _check_size("test_size", test_size, len(y_te), 1, f"{key} test split")
    parts = {"train": (x_tr[:n_fit], y_tr[:n_fit], n_train), "val": (x_tr[n_fit:], y_tr[n_fit:], n_val),
             "test": (x_te, y_te, n_test)}

    splits = {}
    for index, (split, (counts, labels, keep)) in enumerate(parts.items()):
        if preprocessing == "static" or (preprocessing == "dynamic" and split != "train"):
            noise = np.random.default_rng([seed, index]).integers(0, levels, counts.shape, dtype=np.uint8)
            x = (noise < counts).astype(np.float32)  # P(x=1) = counts / levels exactly
        elif preprocessing == "8bit" and levels != 255:
            x = np.round(counts.astype(np.float32) * (255 / levels)) / np.float32(255)
        else:  # intensities: dynamic train, or 8-bit data already on the k/255 grid
            x = counts.astype(np.float32) / np.float32(levels)
        splits[split] = Split(torch.from_numpy(np.ascontiguousarray(x[:keep])),
                              torch.from_numpy(labels[:keep].astype(np.int64)))
    return Dataset(key, preprocessing, shape, 10, **splits)


def batches(split: Split, batch_size: int, generator: torch.Generator | None, dynamic: bool, shuffle: bool = True,
            drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x (B, P) float32, y (B,) int64) minibatches. shuffle permutes with ``generator`` (torch.randperm); if
    ``dynamic``, x is a fresh Bernoulli(x) draw with ``generator`` (a new binarization each epoch). Deterministic
    given the generator state (None: torch's global RNG). CPU tensors and generator expected."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size={batch_size!r} is invalid: need a positive integer")
    n = len(split.y)
    order = torch.randperm(n, generator=generator) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size] if order is not None else slice(start, start + batch_size)
        x, y = split.x[idx], split.y[idx]
        yield (torch.bernoulli(x, generator=generator) if dynamic else x), y
