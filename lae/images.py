"""Colour image datasets from their original distribution files (CIFAR-10, SVHN), and images a user already has as
arrays (npz). lae.data registers them; each reader returns the raw splits

    (x_train (N, C, H, W) uint8, y_train (N,) int64 | None, x_test (M, C, H, W) uint8, y_test (M,) int64 | None)

channels first, the order the official LAE code (torchvision's ToTensor, then Flatten) feeds its networks.

CIFAR-10: ``<data_dir>/cifar10/cifar-10-batches-py/`` with the python pickles data_batch_1..5 and test_batch (each a
dict with ``data`` (n, 3072) uint8, channels-first rows, and ``labels``), as unpacked from ``cifar-10-python.tar.gz``;
a missing folder is unpacked from that archive when it lies in ``<data_dir>/cifar10/``, or downloaded first where a
network exists. SVHN: ``<data_dir>/svhn/train_32x32.mat`` and ``test_32x32.mat`` (MATLAB files, ``X`` (32, 32, 3, n)
uint8 and ``y`` (n, 1) in 1..10, 10 meaning the digit 0; read with scipy.io.loadmat), downloaded where missing and a
network exists. Every file is md5-checked against the published checksums (MD5, those torchvision verifies); a
missing or corrupt file is a DataError naming the expected files and checksums. Existing files are never overwritten.

npz (``--dataset npz:PATH``): one numpy ``.npz`` file with uint8 arrays ``x_train`` and ``x_test`` of shape (N, H, W)
(grey) or (N, C, H, W) (channels first, C <= 4), the same image shape in both, and optionally int labels ``y_train``
(N,) and ``y_test`` (M,) (both or neither), 0 <= label < 1000. Read without pickle.
"""

from __future__ import annotations

import hashlib
import http.client
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from lae.idx import ENV_VAR, DataError, _download

Splits = tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]

CIFAR10_ARCHIVE = ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
MD5 = {  # the published checksums (as torchvision's datasets.CIFAR10 and datasets.SVHN check them)
    "cifar10": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    },
    "svhn": {
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    },
}
MAX_LABEL = 1000  # npz labels: class indices below this
MAX_CHANNELS = 4


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _missing(name: str, folder: Path, files: dict[str, str], reason: str) -> DataError:
    """The one-line error for absent files: which, where, their checksums, and how to provide them."""
    listed = ", ".join(f"{f} (md5 {m})" for f, m in files.items())
    return DataError(
        f"{name}: missing {listed} in {folder}; set {ENV_VAR} (or --data-dir) to a directory holding {name}/<files> "
        f"from the original distribution, or enable network access for a download ({reason})"
    )


def _checked(path: Path, md5: str) -> Path:
    if (got := md5sum(path)) != md5:
        raise DataError(f"{path} has md5 {got}, expected {md5} (corrupt or not the original file)")
    return path


def _fetch(url: str, dest: Path, md5: str, download: bool) -> str | None:
    """Download url to dest (md5-checked) where allowed; None on success, else why not (for the error line)."""
    if not download:
        return "download=False"
    try:
        _download(url, dest, md5)
        return None
    except (OSError, ValueError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
        return f"download failed: {e}".replace("\n", " ")


# ----------------------------------------------------------------------------------------------------------- CIFAR-10
def _unpickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch: (n, 3, 32, 32) uint8 images and (n,) int64 labels."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")  # md5-checked first: only the published files are unpickled
        x, y = np.asarray(entry["data"], dtype=np.uint8), np.asarray(entry["labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path} is not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(y) != len(x) or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise DataError(f"{path} holds data {x.shape} and {len(y)} labels, expected (n, 3072) and n labels in 0..9")
    return x.reshape(-1, 3, 32, 32), y


def read_cifar10(root: Path, download: bool, md5: dict[str, str] | None = None) -> Splits:
    """CIFAR-10's splits from ``<root>/cifar10/cifar-10-batches-py/`` (see the module docstring). md5: the
    checksums to verify (default MD5["cifar10"], the published ones)."""
    md5 = MD5["cifar10"] if md5 is None else md5
    base = root / "cifar10"
    folder = base / CIFAR10_FOLDER
    names = (*CIFAR10_TRAIN, "test_batch")
    if not all((folder / n).exists() for n in names):
        archive = base / CIFAR10_ARCHIVE[0]
        reason = None if archive.exists() else _fetch(CIFAR10_URL, archive, CIFAR10_ARCHIVE[1], download)
        if reason is None:
            _checked(archive, CIFAR10_ARCHIVE[1])
            with tarfile.open(archive, "r:gz") as tar:  # only the batch files, never a path outside base
                members = [
                    m
                    for m in tar.getmembers()
                    if m.isfile() and Path(m.name).parts[:1] == (CIFAR10_FOLDER,) and ".." not in Path(m.name).parts
                ]
                safe = {"filter": "data"} if sys.version_info >= (3, 11, 4) else {}  # tar filters: Python >= 3.11.4
                tar.extractall(base, members=members, **safe)
        missing = [n for n in names if not (folder / n).exists()]
        if missing:
            raise _missing("cifar10", folder, {n: md5[n] for n in missing}, reason or "archive incomplete")
    parts = [_unpickle(_checked(folder / n, md5[n])) for n in names]
    x_train, y_train = (np.concatenate(a) for a in zip(*parts[:-1]))
    return x_train, y_train, *parts[-1]


# --------------------------------------------------------------------------------------------------------------- SVHN
def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN file: (n, 3, 32, 32) uint8 images and (n,) int64 labels 0..9 (the file's 10 is the digit 0)."""
    try:
        import scipy.io  # a dependency (pyproject.toml), imported here: only SVHN needs it
    except ImportError:
        raise DataError(f"{path}: reading SVHN needs scipy (pip install scipy)") from None
    try:
        mat = scipy.io.loadmat(path)
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    except (ValueError, KeyError, TypeError, OSError, NotImplementedError) as e:
        raise DataError(f"{path} is not an SVHN .mat file ({type(e).__name__}: {e})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DataError(f"{path} holds X {x.dtype} {x.shape} and {len(y)} labels, expected uint8 (32, 32, 3, n)")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path} has labels in {y.min()}..{y.max()}, expected 1..10")
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y  # (H, W, C, n) -> (n, C, H, W), torchvision's order


def read_svhn(root: Path, download: bool, md5: dict[str, str] | None = None) -> Splits:
    """SVHN's train and test splits from ``<root>/svhn/`` (see the module docstring); md5 as in read_cifar10."""
    md5 = MD5["svhn"] if md5 is None else md5
    folder = root / "svhn"
    reason = None
    for name in md5:
        if not (folder / name).exists():
            reason = _fetch(SVHN_URL + name, folder / name, md5[name], download) or reason
    missing = {n: m for n, m in md5.items() if not (folder / n).exists()}
    if missing:
        raise _missing("svhn", folder, missing, reason or "download=False")
    x_train, y_train = _read_mat(_checked(folder / "train_32x32.mat", md5["train_32x32.mat"]))
    x_test, y_test = _read_mat(_checked(folder / "test_32x32.mat", md5["test_32x32.mat"]))
    return x_train, y_train, x_test, y_test


# ---------------------------------------------------------------------------------------------------------------- npz
def read_npz(path: Path) -> Splits:
    """The splits of a user's .npz file (see the module docstring for the arrays, shapes and checks)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (--dataset npz:PATH names a .npz file)") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from None
    for key in ("x_train", "x_test"):
        if key not in arrays:
            raise DataError(f"{path} has no {key} array (has: {', '.join(sorted(arrays)) or 'none'})")
        x = arrays[key]
        if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and not 1 <= x.shape[1] <= MAX_CHANNELS):
            raise DataError(
                f"{path}: {key} is {x.dtype} {x.shape}; expected uint8 (N, H, W) or (N, C, H, W), C <= {MAX_CHANNELS}"
            )
        if len(x) == 0:
            raise DataError(f"{path}: {key} holds no images")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(f"{path}: x_train images {arrays['x_train'].shape[1:]} differ from x_test's")
    if ("y_train" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: give both y_train and y_test, or neither")
    labels = {}
    for key in ("y_train", "y_test"):
        if key not in arrays:
            labels[key] = None
            continue
        y, n = arrays[key], len(arrays["x" + key[1:]])
        if y.dtype.kind not in "iu" or y.shape != (n,) or y.min() < 0 or y.max() >= MAX_LABEL:
            raise DataError(f"{path}: {key} is {y.dtype} {y.shape}; expected ({n},) integers in 0..{MAX_LABEL - 1}")
        labels[key] = y.astype(np.int64)
    return arrays["x_train"], labels["y_train"], arrays["x_test"], labels["y_test"]
