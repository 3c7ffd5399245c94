"""`bench figures` (bench.commands.figures, bench.results.pictures) on real checkpoints: tiny digits models (hidden
32, one epoch) with D = 2 (LAE) and D = 4 (VAE). Every expected file is a PNG of the size the module sets, the
manifold exists only for D = 2, a second run writes the same bytes, the interpolation paths have the properties
they are named for, and a missing or corrupt checkpoint is one stderr line and exit 2 through the CLI."""

from __future__ import annotations

import argparse
import math
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.commands import figures
from bench.results import pictures
from lae.config import RunConfig
from lae.train import ChainHealthWarning, fit, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIDE = 8  # digits
GRIDS = {  # file -> (rows, cols) of images, as bench.results.pictures draws them
    "samples.png": (pictures.SAMPLE_GRID, pictures.SAMPLE_GRID),
    "reconstructions.png": (2 * pictures.RECON_PAIRS, pictures.RECON_COLS),
    "interpolation_linear.png": (pictures.INTERP_PAIRS, pictures.INTERP_STEPS + 2),
    "interpolation_slerp.png": (pictures.INTERP_PAIRS, pictures.INTERP_STEPS + 2),
}
# The CLI with the figures row of its command table (the same line bench/cli.py's COMMANDS holds or will hold).
CLI = (
    "import sys; from bench import cli; "
    "cli.COMMANDS.setdefault('figures', ('bench.commands.figures', 'pictures of a checkpoint')); "
    "sys.exit(cli.main(sys.argv[1:]))"
)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("ckpt")
    out = {}
    for model, d in (("lae", 2), ("vae", 4)):
        config = RunConfig(
            model=model, dataset="digits", epochs=1, hidden=32, batch_size=32, latent_dim=d, device="cpu", seed=0
        )
        with warnings.catch_warnings():  # one epoch of a tiny LAE: its chain's health is not what is tested here
            warnings.simplefilter("ignore", ChainHealthWarning)
            out[d] = save_checkpoint(fit(config), base / f"d{d}.pt")
    return out


def run_figures(checkpoint: Path, out: Path | None = None, seed: int = 0) -> list[str]:
    """The command's run() on parsed arguments, as the CLI calls it; returns the file names written."""
    parser = argparse.ArgumentParser()
    figures.add_arguments(parser)
    argv = [str(checkpoint), "--seed", str(seed)] + ([] if out is None else ["--out", str(out)])
    assert figures.run(parser.parse_args(argv)) == 0
    folder = out if out is not None else checkpoint.parent / "figures"
    return sorted(p.name for p in folder.iterdir())


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the magic bytes."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("d", [2, 4])
def test_files_sizes_and_determinism(checkpoints, tmp_path, d):
    names = run_figures(checkpoints[d], tmp_path / "a")
    expected = set(GRIDS) | {"latent_scatter.png"} | ({"manifold.png"} if d == 2 else set())
    assert set(names) == expected  # and no temporary file left behind
    for name, (rows, cols) in GRIDS.items():
        assert png_size(tmp_path / "a" / name) == pictures.grid_pixels(rows, cols, SIDE)
    assert png_size(tmp_path / "a" / "latent_scatter.png") == pictures.SCATTER_PIXELS
    if d == 2:
        n = pictures.MANIFOLD_SIZE
        assert png_size(tmp_path / "a" / "manifold.png") == pictures.grid_pixels(n, n, SIDE)
    assert run_figures(checkpoints[d], tmp_path / "b") == names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    run_figures(checkpoints[d], tmp_path / "c", seed=1)
    assert (tmp_path / "c" / "samples.png").read_bytes() != (tmp_path / "a" / "samples.png").read_bytes()


def test_default_out_is_beside_the_checkpoint(checkpoints):
    assert "manifold.png" in run_figures(checkpoints[2])
    assert (checkpoints[2].parent / "figures" / "samples.png").is_file()


def test_grid_is_drawn_pixel_for_pixel(tmp_path):
    """The PNG holds the images exactly: a cell's block of scale x scale PNG pixels is one image pixel's value."""
    import matplotlib.image

    rng = np.random.default_rng(0)
    images = np.round(rng.uniform(0, 1, (2, 3, SIDE, SIDE)) * 255) / 255
    path = pictures.save_grid(images, tmp_path / "g.png")
    pixels = matplotlib.image.imread(path)[..., 0]  # grey: R = G = B
    k, gap = pictures.scale(SIDE), pictures.GAP
    top, left = (gap + 1 * (SIDE + gap)) * k, (gap + 2 * (SIDE + gap)) * k  # cell (1, 2)
    cell = pixels[top : top + SIDE * k : k, left : left + SIDE * k : k]
    np.testing.assert_allclose(cell, images[1, 2], atol=1 / 255)
    assert pixels[0, 0] == 1.0  # the white gap


def test_interpolation_paths():
    z0, z1 = torch.tensor([[3.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 3.0], [2.0, 2.0]])
    t = torch.linspace(0, 1, 5)
    line, arc = pictures.lerp(z0, z1, t), pictures.slerp(z0, z1, t)
    for path in (line, arc):  # both start and end at the two codes
        torch.testing.assert_close(path[:, 0], z0)
        torch.testing.assert_close(path[:, -1], z1)
    torch.testing.assert_close(line[0, 2], torch.tensor([1.5, 1.5]))
    torch.testing.assert_close(arc[0].norm(dim=-1), torch.full((5,), 3.0))  # equal norms: stays on the circle
    torch.testing.assert_close(arc[0, 2], torch.tensor([3 / math.sqrt(2)] * 2))  # half the angle
    torch.testing.assert_close(arc[1], line[1])  # same direction: the straight line


def test_pca_axes():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 4)) * np.array([5.0, 0.1, 2.0, 0.1])
    xy, frac = pictures.pca_2d(z)
    assert xy.shape == (500, 2) and frac[0] > frac[1] > 0 and frac.sum() <= 1
    np.testing.assert_allclose(np.abs(np.corrcoef(xy[:, 0], z[:, 0])[0, 1]), 1.0, atol=1e-2)
    np.testing.assert_allclose(np.abs(np.corrcoef(xy[:, 1], z[:, 2])[0, 1]), 1.0, atol=1e-2)


def test_missing_and_corrupt_checkpoints(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    env = {"PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    cases = ((tmp_path / "missing.pt", "does not exist"), (corrupt, "corrupt"))
    runs = [  # both at once: each is mostly the start-up of Python and torch
        subprocess.Popen(
            [sys.executable, "-c", CLI, "figures", str(path), "--out", str(tmp_path / "figs")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path, _ in cases
    ]
    for proc, (_, says) in zip(runs, cases):
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], stderr
    assert not (tmp_path / "figs").exists()
