"""Tests of lae.data and lae.idx on the real dataset files (no mocks). Bad files are built in tmp_path from the real
ones."""

import functools
import gzip
import hashlib
import http.server
import os
import pathlib
import struct
import threading

import pytest
import torch

from lae import data, idx

GZ = [f + ".gz" for f in idx.FILES]


def _find_real_data():
    candidates = [pathlib.Path(os.environ["LAE_BENCH_DATA"])] if os.environ.get("LAE_BENCH_DATA") else []
    candidates.append(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data")
    for root in candidates:
        if all((root / "mnist" / f).exists() or (root / "mnist" / f"{f}.gz").exists() for f in idx.FILES):
            return root
    return None


@pytest.fixture(scope="module")
def real_dir():
    root = _find_real_data()
    if root is None:
        msg = "no MNIST files: set LAE_BENCH_DATA to a directory holding mnist/<IDX files>"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI must have the data)")
        pytest.skip(msg)
    return root


@pytest.fixture(scope="module")
def mnist(real_dir):
    return data.load("mnist", "dynamic", data_dir=real_dir, download=False)


@pytest.fixture(scope="module")
def mnist_static(real_dir):
    return data.load("mnist", "static", data_dir=real_dir, download=False)


@pytest.fixture
def fake_dir(tmp_path, real_dir):
    """tmp_path/mnist/ with symlinks to the real .gz files; tests replace one with a bad file."""
    (tmp_path / "mnist").mkdir()
    for f in GZ:
        (tmp_path / "mnist" / f).symlink_to(real_dir / "mnist" / f)
    return tmp_path


def _replace(fake_dir, name, payload: bytes) -> pathlib.Path:
    """Remove the symlinks for `name` (both spellings) and write `payload` to tmp/mnist/<name>."""
    folder = fake_dir / "mnist"
    for stale in (folder / name.removesuffix(".gz"), folder / (name.removesuffix(".gz") + ".gz")):
        stale.unlink(missing_ok=True)
    (folder / name).write_bytes(payload)
    return folder / name


def _raw(real_dir, f):
    return gzip.decompress((real_dir / "mnist" / f"{f}.gz").read_bytes())


def _load_err(root, **kw) -> str:
    with pytest.raises(data.DataError) as info:
        data.load("mnist", data_dir=root, download=kw.pop("download", False), **kw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------------------------- bad / missing files
def test_md5_mismatch_names_file(fake_dir, real_dir):
    labels = bytearray(_raw(real_dir, "t10k-labels-idx1-ubyte"))
    labels[100] = (labels[100] + 1) % 10  # structurally valid IDX, but not the original file
    bad = _replace(fake_dir, "t10k-labels-idx1-ubyte.gz", gzip.compress(bytes(labels)))
    msg = _load_err(fake_dir)
    assert str(bad) in msg and "md5" in msg and idx.MD5["mnist"]["t10k-labels-idx1-ubyte"] in msg


def test_flipped_byte_in_gz_is_reported(fake_dir, real_dir):
    blob = bytearray((real_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    bad = _replace(fake_dir, "t10k-labels-idx1-ubyte.gz", bytes(blob))
    assert str(bad) in _load_err(fake_dir)


def test_truncated_gzip_stream(fake_dir, real_dir):
    blob = (real_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    bad = _replace(fake_dir, "t10k-labels-idx1-ubyte.gz", blob[: len(blob) // 2])
    msg = _load_err(fake_dir)
    assert str(bad) in msg and "truncated" in msg


@pytest.mark.parametrize(
    "name, keep", [("t10k-labels-idx1-ubyte", 8 + 9_000), ("t10k-images-idx3-ubyte", 16 + 784 * 10)]
)
def test_truncated_raw_file(fake_dir, real_dir, name, keep):
    bad = _replace(fake_dir, name, _raw(real_dir, name)[:keep])  # header still says 10000 items
    msg = _load_err(fake_dir)
    assert str(bad) in msg and "truncated" in msg


def test_truncated_gzip_of_truncated_payload(fake_dir, real_dir):
    payload = _raw(real_dir, "t10k-labels-idx1-ubyte")[:5000]  # a complete gzip stream of a short payload
    bad = _replace(fake_dir, "t10k-labels-idx1-ubyte.gz", gzip.compress(payload))
    msg = _load_err(fake_dir)
    assert str(bad) in msg and "truncated" in msg


@pytest.mark.parametrize("name", ["t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"])
def test_wrong_magic(fake_dir, name):
    payload = struct.pack(">II", idx.IMAGE_MAGIC, 10_000) + bytes(10_000)  # image magic in a label file
    bad = _replace(fake_dir, name, gzip.compress(payload) if name.endswith(".gz") else payload)
    msg = _load_err(fake_dir)
    assert str(bad) in msg and "magic number 2051, expected 2049" in msg


def test_bad_file_is_never_touched(fake_dir, real_dir, monkeypatch):
    blob = (real_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()[:-10]
    bad = _replace(fake_dir, "t10k-labels-idx1-ubyte.gz", blob)
    stat = bad.stat()
    with _serve(real_dir / "mnist") as url:  # a working mirror: still no re-download over an existing file
        monkeypatch.setitem(idx.MIRRORS, "mnist", url)
        _load_err(fake_dir, download=True)
    assert bad.read_bytes() == blob and bad.stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(p.name for p in bad.parent.iterdir()) == sorted(GZ)


def test_missing_files_without_download(tmp_path, fake_dir):
    msg = _load_err(tmp_path / "empty")
    assert "LAE_BENCH_DATA" in msg and str(tmp_path / "empty" / "mnist") in msg
    assert all(f in msg for f in GZ) and "download=False" in msg
    (fake_dir / "mnist" / "train-labels-idx1-ubyte.gz").unlink()
    msg = _load_err(fake_dir)
    assert "train-labels-idx1-ubyte.gz" in msg and "train-images" not in msg


def test_missing_files_unreachable_mirror(tmp_path, monkeypatch):
    monkeypatch.setitem(idx.MIRRORS, "mnist", "http://127.0.0.1:9/")  # discard port: connection refused
    msg = _load_err(tmp_path, download=True)
    assert "LAE_BENCH_DATA" in msg and "download failed" in msg and all(f in msg for f in GZ)
    assert not (tmp_path / "mnist").exists() or not any((tmp_path / "mnist").iterdir())


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _serve:
    """Serve a directory over loopback HTTP (a real local mirror); yields its base URL."""

    def __init__(self, directory):
        handler = functools.partial(_Quiet, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_download_fills_only_missing_files(fake_dir, real_dir, monkeypatch, tmp_path):
    for f in ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (fake_dir / "mnist" / f).unlink()
    with _serve(real_dir / "mnist") as url:
        monkeypatch.setitem(idx.MIRRORS, "mnist", url)
        ds = data.load("mnist", "8bit", data_dir=fake_dir, test_size=10)
    folder = fake_dir / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(GZ)  # no temp files left behind
    original = (real_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    assert (folder / "t10k-labels-idx1-ubyte.gz").read_bytes() == original
    assert (folder / "train-images-idx3-ubyte.gz").is_symlink() and len(ds.test) == 10
    # a mirror serving a wrong file: md5 error, nothing written
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not mnist"))
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with _serve(tmp_path / "evil") as url:
        monkeypatch.setitem(idx.MIRRORS, "mnist", url)
        msg = _load_err(fake_dir, download=True)
    assert "md5" in msg and not (folder / "t10k-labels-idx1-ubyte.gz").exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(set(GZ) - {"t10k-labels-idx1-ubyte.gz"})


def test_ungzipped_files_accepted(fake_dir, real_dir, mnist):
    for f in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        _replace(fake_dir, f, _raw(real_dir, f))
    ds = data.load("mnist", data_dir=fake_dir, download=False)
    assert torch.equal(ds.test.x, mnist.test.x) and torch.equal(ds.test.y, mnist.test.y)


def test_ungzipped_file_with_altered_pixels_is_refused(fake_dir, real_dir):
    """An un-gzipped copy is md5-checked too (issue 25): one changed pixel, same shape and length, is refused."""
    images = bytearray(_raw(real_dir, "t10k-images-idx3-ubyte"))
    images[16 + 400] = 255 - images[16 + 400]
    bad = _replace(fake_dir, "t10k-images-idx3-ubyte", bytes(images))
    msg = _load_err(fake_dir)
    assert str(bad) in msg and "md5" in msg and idx.RAW_MD5["mnist"]["t10k-images-idx3-ubyte"] in msg


def test_raw_md5_table_is_the_published_files_decompressed(real_dir):
    for name in ("mnist", "fashion-mnist"):
        if not (real_dir / name / GZ[0]).exists():
            continue
        for f in GZ:
            digest = hashlib.md5(gzip.decompress((real_dir / name / f).read_bytes())).hexdigest()
            assert digest == idx.RAW_MD5[name][f.removesuffix(".gz")], (name, f)


# ----------------------------------------------------------------------------------------------------------- datasets
def test_digits_offline():
    ds = data.load("digits", data_dir="/nonexistent", download=False)
    assert (ds.name, ds.image_shape, ds.n_pixels, ds.n_classes) == ("digits", (8, 8), 64, 10)
    assert [len(s) for s in (ds.train, ds.val, ds.test)] == [1200, 300, 297]
    for s in (ds.train, ds.val, ds.test):
        assert s.x.shape == (len(s), 64) and s.x.dtype == torch.float32 and s.y.dtype == torch.int64
        assert s.x.min() >= 0 and s.x.max() <= 1
    assert set(ds.train.y.tolist()) == set(range(10))
    assert ds.train.x.max() == 1 and 0 < ds.train.x.mean() < 0.5  # raw intensities v/16
    again = data.load("digits", val_size=100, seed=5)  # split permutation does not depend on `seed`
    assert [len(s) for s in (again.train, again.val, again.test)] == [1400, 100, 297]
    assert torch.equal(again.test.y, ds.test.y) and torch.equal(again.train.x[:1200], ds.train.x)
    assert torch.equal(again.val.y, ds.val.y[200:]) and torch.equal(again.train.y[1200:], ds.val.y[:200])


def test_mnist_from_shared_dir(real_dir, mnist):
    assert (mnist.name, mnist.image_shape, mnist.n_pixels, mnist.n_classes) == ("mnist", (28, 28), 784, 10)
    assert [len(s) for s in (mnist.train, mnist.val, mnist.test)] == [50_000, 10_000, 10_000]
    assert mnist.train.x.shape == (50_000, 784) and mnist.train.x.dtype == torch.float32
    assert 0.12 < mnist.train.x.mean() < 0.14
    labels = torch.tensor(list(_raw(real_dir, "train-labels-idx1-ubyte")[8:]))  # val = the LAST 10k training images
    assert torch.equal(mnist.train.y, labels[:50_000]) and torch.equal(mnist.val.y, labels[50_000:])
    counts = torch.bincount(mnist.train.y, minlength=10)
    assert len(counts) == 10 and counts.min() > 4000 and counts.max() < 6000
    for f in GZ:  # the md5 table the loader verifies against is the published one
        digest = hashlib.md5((real_dir / "mnist" / f).read_bytes()).hexdigest()
        assert digest == idx.MD5["mnist"][f.removesuffix(".gz")]
    hits = idx._parse_idx.cache_info().hits
    data.load("mnist", "8bit", data_dir=real_dir, download=False)  # parsed (and md5-checked) once per process
    assert idx._parse_idx.cache_info().hits == hits + 4


def test_fashion_mnist(real_dir):
    if not (real_dir / "fashion-mnist" / GZ[0]).exists():
        pytest.skip("no fashion-mnist files")
    ds = data.load("fashion_mnist", "8bit", data_dir=real_dir, download=False, val_size=5000, test_size=1000)
    assert ds.name == "fashion-mnist" and [len(s) for s in (ds.train, ds.val, ds.test)] == [55_000, 5000, 1000]
    assert 0.27 < ds.train.x.mean() < 0.30


def test_sizes_keep_first_images(real_dir, mnist_static):
    small = data.load("mnist", "static", data_dir=real_dir, download=False, train_size=100, test_size=50)
    assert torch.equal(small.train.x, mnist_static.train.x[:100])
    assert torch.equal(small.test.x, mnist_static.test.x[:50])
    assert torch.equal(small.val.x, mnist_static.val.x)
    with pytest.raises(data.DataError, match="train_size"):
        data.load("mnist", data_dir=real_dir, download=False, train_size=50_001)


# ------------------------------------------------------------------------------------------------------ preprocessing
def _binary(x):
    return bool(((x == 0) | (x == 1)).all())


def test_static_binary_and_reproducible(real_dir, mnist, mnist_static):
    again = data.load("mnist", "static", data_dir=real_dir, download=False)
    for a, b in zip((mnist_static.train, mnist_static.val, mnist_static.test), (again.train, again.val, again.test)):
        assert _binary(a.x) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert 0.12 < mnist_static.train.x.mean() < 0.14
    # dynamic: train stays as intensities; val/test are the same fixed binarization as static
    assert not _binary(mnist.train.x) and _binary(mnist.val.x) and _binary(mnist.test.x)
    assert torch.equal(mnist.val.x, mnist_static.val.x) and torch.equal(mnist.test.x, mnist_static.test.x)
    other = data.load("digits", "static", seed=1)
    assert not torch.equal(other.train.x, data.load("digits", "static").train.x)


def test_dynamic_batches():
    split = data.load("digits", "dynamic").train

    def epochs(seed, n=2):
        gen = torch.Generator().manual_seed(seed)
        return [list(data.batches(split, 128, gen, dynamic=True)) for _ in range(n)]

    e1, e2 = epochs(0)
    assert [len(x) for x, _ in e1] == [128] * 9 + [48]
    assert all(_binary(x) and x.shape[1] == 64 for x, _ in e1 + e2)
    assert not torch.equal(torch.cat([x for x, _ in e1]), torch.cat([x for x, _ in e2]))
    r1, r2 = epochs(0)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(e1 + e2, r1 + r2))
    plain = list(data.batches(split, 500, None, dynamic=False, shuffle=False, drop_last=True))
    assert [len(x) for x, _ in plain] == [500, 500] and torch.equal(torch.cat([x for x, _ in plain]), split.x[:1000])
    with pytest.raises(data.DataError, match="batch_size"):
        next(data.batches(split, 0, None, dynamic=False))


def test_8bit_grid(real_dir, mnist):
    for ds in (data.load("mnist", "8bit", data_dir=real_dir, download=False), data.load("digits", "8bit")):
        for s in (ds.train, ds.val, ds.test):
            k = s.x[:5000] * 255
            assert (k - k.round()).abs().max() < 1e-4 and s.x.min() >= 0 and s.x.max() <= 1
    digits = data.load("digits", "8bit")
    assert len(torch.unique(digits.train.x)) <= 17 and digits.train.x.max() == 1


# ------------------------------------------------------------------------------------------------ arguments and paths
def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv(idx.ENV_VAR, raising=False)
    assert idx.resolve_data_dir() == tmp_path / "home" / ".cache" / "lae-bench"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert idx.resolve_data_dir() == tmp_path / "xdg" / "lae-bench"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert idx.resolve_data_dir() == tmp_path / "home" / ".cache" / "lae-bench"
    monkeypatch.setenv(idx.ENV_VAR, str(tmp_path / "env"))
    assert idx.resolve_data_dir() == tmp_path / "env"
    assert idx.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert idx.resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_bad_arguments():
    with pytest.raises(data.DataError) as info:
        data.load("cifar100")  # not a registered dataset
    assert all(n in str(info.value) for n in data.DATASETS)
    with pytest.raises(data.DataError) as info:
        data.load("digits", "binary")
    assert all(p in str(info.value) for p in data.PREPROCESSING)
    for kw, var in [
        (dict(val_size=1500), "val_size"),
        (dict(train_size=1201), "train_size"),
        (dict(test_size=0), "test_size"),
        (dict(seed=-1), "seed"),
    ]:
        with pytest.raises(data.DataError, match=var):
            data.load("digits", **kw)
