"""CIFAR-10 and SVHN from their original distribution files (lae.images): small files written here in exactly those
formats (CIFAR-10's python pickles, also inside cifar-10-python.tar.gz; SVHN's MATLAB .mat files), the md5 check
pointed at them; the published checksums; one-line errors naming the expected files and checksums."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from lae import data, images

N_BATCH, N_TEST = 6, 5  # images per CIFAR-10 batch file here (the originals: 10,000)


def _cifar_batch(path: Path, n: int, seed: int) -> np.ndarray:
    """One batch in the original layout: {'data': (n, 3072) uint8, channels-first rows, 'labels': [int]}."""
    g = np.random.default_rng(seed)
    x = g.integers(0, 256, (n, 3072), dtype=np.uint8)
    entry = {"batch_label": f"batch {seed}", "labels": [int(v) for v in g.integers(0, 10, n)], "data": x}
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)  # the originals are python 2 pickles (read with encoding="latin1")
    return x


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    """(data dir, the md5 table of the written files, the batches' images) with the checksums pointed at them."""
    folder = tmp_path / "cifar10" / images.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    names = (*images.CIFAR10_TRAIN, "test_batch")
    xs = [_cifar_batch(folder / n, N_TEST if n == "test_batch" else N_BATCH, i) for i, n in enumerate(names)]
    md5 = {n: images.md5sum(folder / n) for n in names}
    monkeypatch.setitem(images.MD5, "cifar10", md5)
    return tmp_path, md5, xs


def test_cifar10_reads_the_python_batches(cifar):
    root, _, xs = cifar
    ds = data.load("cifar10", "8bit", data_dir=root, val_size=4, download=False)
    assert (ds.image_shape, ds.n_pixels, ds.n_classes) == ((3, 32, 32), 3072, 10)
    assert [len(s) for s in (ds.train, ds.val, ds.test)] == [5 * N_BATCH - 4, 4, N_TEST]
    train = np.concatenate(xs[:5])
    assert torch.equal(ds.train.x, torch.from_numpy(train[:-4]).float() / 255)  # the file's own (C, H, W) order
    assert torch.equal(ds.test.x, torch.from_numpy(xs[5]).float() / 255)
    with open(root / "cifar10" / images.CIFAR10_FOLDER / "test_batch", "rb") as f:
        assert ds.test.y.tolist() == pickle.load(f, encoding="latin1")["labels"]


def test_cifar10_unpacks_the_original_archive(cifar, monkeypatch):
    root, _, xs = cifar
    base = root / "cifar10"
    with tarfile.open(base / images.CIFAR10_ARCHIVE[0], "w:gz") as tar:
        tar.add(base / images.CIFAR10_FOLDER, arcname=images.CIFAR10_FOLDER)
    for f in (base / images.CIFAR10_FOLDER).iterdir():
        f.unlink()
    monkeypatch.setattr(
        images, "CIFAR10_ARCHIVE", (images.CIFAR10_ARCHIVE[0], images.md5sum(base / "cifar-10-python.tar.gz"))
    )
    ds = data.load("cifar10", "8bit", data_dir=root, download=False)
    assert torch.equal(ds.test.x, torch.from_numpy(xs[5]).float() / 255)


def test_cifar10_corrupt_or_missing_files_are_one_line(cifar):
    root, md5, _ = cifar
    folder = root / "cifar10" / images.CIFAR10_FOLDER
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(data.DataError) as info:
        data.load("cifar10", data_dir=root, download=False)
    assert f"{folder / 'data_batch_3'} has md5" in str(info.value) and md5["data_batch_3"] in str(info.value)
    (folder / "data_batch_3").unlink()
    with pytest.raises(data.DataError) as info:
        data.load("cifar10", data_dir=root, download=False)
    line = str(info.value)
    assert "\n" not in line and "data_batch_3 (md5 " + md5["data_batch_3"] in line and "download=False" in line


def test_the_published_checksums_are_torchvisions():
    assert images.CIFAR10_ARCHIVE == ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
    assert images.MD5["cifar10"]["test_batch"] == "40351d587109b95175f43aff81a1287e"
    assert images.MD5["svhn"] == {
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    }


def test_absent_datasets_name_every_expected_file_and_checksum(tmp_path):
    for name, table in (("cifar10", images.MD5["cifar10"]), ("svhn", images.MD5["svhn"])):
        with pytest.raises(data.DataError) as info:
            data.load(name, data_dir=tmp_path, download=False)
        line = str(info.value)
        assert "\n" not in line and all(f"{f} (md5 {m})" in line for f, m in table.items()), line


def _svhn_mat(path: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A file in the original layout: X (32, 32, 3, n) uint8, y (n, 1) in 1..10 (10: the digit 0)."""
    g = np.random.default_rng(seed)
    x = g.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = g.integers(1, 11, (n, 1)).astype(np.uint8)
    y[0] = 10
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y


def test_svhn_reads_the_mat_files(tmp_path, monkeypatch):
    folder = tmp_path / "svhn"
    folder.mkdir()
    x_train, _ = _svhn_mat(folder / "train_32x32.mat", 12, 0)
    x_test, y_test = _svhn_mat(folder / "test_32x32.mat", 4, 1)
    md5 = {f: images.md5sum(folder / f) for f in images.MD5["svhn"]}
    monkeypatch.setitem(images.MD5, "svhn", md5)
    ds = data.load("svhn", "8bit", data_dir=tmp_path, val_size=2, download=False)
    assert ds.image_shape == (3, 32, 32) and [len(s) for s in (ds.train, ds.val, ds.test)] == [10, 2, 4]
    # pixel (c, h, w) of image i is X[h, w, c, i], as torchvision reads it
    expected = torch.from_numpy(x_test.transpose(3, 2, 0, 1).reshape(4, -1)).float() / 255
    assert torch.equal(ds.test.x, expected)
    assert ds.test.y[0] == 0 and ds.test.y.tolist()[1:] == [v % 10 for v in y_test[1:, 0].tolist()]
    assert torch.equal(ds.train.x[0], torch.from_numpy(x_train[..., 0].transpose(2, 0, 1).reshape(-1)).float() / 255)
    (folder / "test_32x32.mat").write_bytes(b"\0" * 100)
    with pytest.raises(data.DataError, match="test_32x32.mat has md5 .* expected " + md5["test_32x32.mat"]):
        data.load("svhn", data_dir=tmp_path, download=False)


@pytest.mark.parametrize("name, dataset", [("paper_cifar10", "cifar10"), ("paper_svhn", "svhn")])
def test_paper_study_specs_are_the_mnist_study_on_the_colour_datasets(name, dataset):
    """sweeps/paper_cifar10.toml and paper_svhn.toml: every trial's configuration, budget by budget, is
    paper_mnist_sgd's (the official networks and optimizer) on the other dataset, and validates."""
    from bench.sweep import load_spec
    from lae.config import RunConfig

    spec, mnist = load_spec(name), load_spec("paper_mnist_sgd")
    assert spec.dataset == dataset
    for budget in spec.budgets:
        a, b = spec.budget(budget), mnist.budget(budget)
        assert a == b
        points, reference = spec.points(a), mnist.points(b)
        assert [p.label for p in points] == [p.label for p in reference]
        for p, q in zip(points, reference, strict=True):
            config = spec.config(p, a, 0)
            assert isinstance(config.validate(), RunConfig) and config.dataset == dataset
            assert config.to_dict() == mnist.config(q, b, 0).to_dict() | {"dataset": dataset}
            assert config.pixels == 3072 and config.architecture == "layernorm"
