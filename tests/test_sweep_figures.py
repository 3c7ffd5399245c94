"""A sweep writes the pictures of each grid point's first seed (bench.sweep.trial.write_pictures) and its leaderboard
links them: a real `bench sweep` on a tiny digits spec (1 LAE value + VAE, 2 seeds). Rerunning only the second seed's
trials writes no picture. (The same model and seed give the same bytes: tests/test_pictures.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import bench_cli

from bench.results import pictures, store

pytestmark = pytest.mark.usefixtures("one_thread")
FILES = {"samples.png", "reconstructions.png", "interpolation_linear.png", "interpolation_slerp.png"}
FILES |= {"latent_scatter.png"}  # D = 4: no manifold


def pictures_on_disk(figures: Path) -> dict[str, bytes]:
    """{path relative to figures/: bytes} of every picture below the sweep's study folders."""
    return {str(p.relative_to(figures)): p.read_bytes() for p in figures.glob("*/*/*.png")}


def drop_rows(results: Path, sweep: str, seed: int) -> int:
    """Delete the row files of one seed (the sweep then runs those trials again); returns how many."""
    gone = 0
    for path in (results / "parquet" / sweep).rglob("*.parquet"):
        if int(pd.read_parquet(path)["seed"].iloc[0]) == seed:
            path.unlink()
            gone += 1
    return gone


def test_sweep_writes_first_seed_pictures_and_the_leaderboard_links_them(tiny_spec, tmp_path):
    spec = tiny_spec("tiny", values=(1e-4,), seeds=2)
    out = tmp_path / "results"
    run = bench_cli("sweep", spec, "--budget", "smoke", "--results", out)
    assert run.returncode == 0, run.stderr
    rows = store.read_rows(out, "tiny")
    assert len(rows) == 4 and (rows["status"] == "complete").all(), rows[["point", "error"]]
    study = rows["study"].iloc[0]
    figures = out / "figures" / "tiny"
    first = pictures_on_disk(figures)
    folders = {pictures.picture_dir(out, "tiny", study, p) for p in rows["point"].unique()}
    assert {f.name for f in folders} == {"lae_step_size=0.0001", "vae"}
    for folder in folders:
        assert {p.name for p in folder.iterdir()} == FILES  # nothing else, no temporary file left
    assert sum(len(b) for b in first.values()) < 1_000_000  # a few hundred KB for a sweep of 8x8 digits
    assert rows["warnings"].fillna("").str.contains("pictures not written").sum() == 0

    table = (out / "leaderboards" / "tiny.md").read_text()
    assert "## Pictures (first seed of each point)" in table
    links = re.findall(r"\]\((\.\./figures/[^)]+\.png)\)|src=\"([^\"]+)\"", table)
    targets = {a or b for a, b in links if "/" + study + "/" in (a or b)}
    assert len(targets) == len(first)  # every picture linked once (the thumbnails are the samples, linked too)
    assert all((out / "leaderboards" / t).resolve().is_file() for t in targets)

    for path in figures.glob("*/*/*.png"):  # the second seed's trials again: no picture is written
        path.unlink()
    assert drop_rows(out, "tiny", seed=1) == 2
    assert bench_cli("sweep", spec, "--budget", "smoke", "--results", out, "--no-leaderboard").returncode == 0
    assert len(store.read_rows(out, "tiny")) == 4 and pictures_on_disk(figures) == {}
