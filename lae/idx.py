"""The original MNIST-format IDX files (MNIST, Fashion-MNIST): where they live, reading and checking them,
downloading the missing ones. lae.data builds datasets from them.

Files live in ``<data_dir>/<name>/`` under their original names, gzipped or not. Every file is md5-checked: a
gzipped one against the published checksum of the .gz (``MD5``), an un-gzipped one against the checksum of the
published file's decompressed bytes (``RAW_MD5``); magic number, image size, count and exact length are checked first,
for a message that says what is wrong. ``data_dir`` is the
``--data-dir`` argument, else ``$LAE_BENCH_DATA``, else ``~/.cache/lae-bench`` (``$XDG_CACHE_HOME/lae-bench``).
Missing files may be downloaded; existing files are never overwritten or deleted.
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

import numpy as np

ENV_VAR = "LAE_BENCH_DATA"

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MD5 = {  # md5 of the published .gz files
    "mnist": dict(
        zip(
            FILES,
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
        )
    ),
    "fashion-mnist": dict(
        zip(
            FILES,
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        )
    ),
}
RAW_MD5 = {  # md5 of the decompressed bytes of the published .gz files (an un-gzipped copy must hold exactly these)
    "mnist": dict(
        zip(
            FILES,
            (
                "6bbc9ace898e44ae57da46a324031adb",
                "a25bea736e30d166cdddb491f175f624",
                "2646ac647ad5339dbf082846283269ea",
                "27ae3e4e09519cfbb04c329615203637",
            ),
        )
    ),
    "fashion-mnist": dict(
        zip(
            FILES,
            (
                "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "9018921c3c673c538a1fc5bad174d6f9",
                "8181f5470baa50b63fa0f6fddb340f0a",
                "15d484375f8d13e6eb1aabb0c3f46965",
            ),
        )
    ),
}
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
DOWNLOAD_TIMEOUT_S = 10.0
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
_ADVICE = f"delete it or point {ENV_VAR}/--data-dir elsewhere"


class DataError(Exception):
    """One-line, user-facing message (no traceback needed). Always names the file or variable at fault. Every data
    error, of a file or of an argument, is one (lae.data raises it too)."""


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


@functools.lru_cache(maxsize=16)
def _parse_idx(resolved: str, mtime_ns: int, size: int, gz: bool, kind: str, count: int, md5: str | None) -> np.ndarray:
    """Parse one IDX file -> read-only uint8 array, (count, 784) images or (count,) labels. Cached per file version
    (so a file's md5 is computed once per process): ``md5`` is of the file's bytes as stored (the .gz itself, or the
    un-gzipped file). Raises ValueError(reason) without the path."""
    with open(resolved, "rb") as f:
        raw = raw_gz = f.read()
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
    naming ``path`` if it is truncated, not gzip, has the wrong magic/shape/length or the wrong md5 (of the file as
    stored, .gz or not; None: not checked)."""
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
        for p in (folder / f, folder / f"{f}.gz"):  # .gz wins if both exist
            if p.exists():
                found[f] = p
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
        raise DataError(
            f"{name}: missing {', '.join(f + '.gz' for f in missing)} in {folder}; set {ENV_VAR} "
            f"(or --data-dir) to a directory holding {name}/<files>, or enable network access for a "
            f"download ({reason}){hint}"
        )
    return found


def load_idx_dataset(name: str, root: pathlib.Path, download: bool):
    """-> (train_counts (60000, 784) uint8, train_labels, test_counts (10000, 784), test_labels), read-only."""
    paths = _idx_paths(name, root, download)
    out = []
    for f in FILES:
        path = paths[f]
        out.append(
            read_idx(
                path,
                "images" if "images" in f else "labels",
                60_000 if f.startswith("train") else 10_000,
                (MD5 if path.suffix == ".gz" else RAW_MD5)[name][f],
            )
        )
    for i in (1, 3):
        if out[i].max() >= 10:
            raise DataError(f"{paths[FILES[i]]} has label {int(out[i].max())}, expected 0..9; {_ADVICE}")
    return tuple(out)
