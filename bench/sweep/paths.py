"""Where sweeps live: the project root (its ``sweeps/`` specs and its git commit), resolved when called, never at
import, so a changed working directory or ``$LAE_BENCH_ROOT`` is always seen."""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError


def project_root() -> Path:
    """The checkout whose sweeps/ and git commit a run uses: $LAE_BENCH_ROOT, else the working directory
    when it holds sweeps/ (an installed package runs from the checkout, as tox does), else the source tree
    this module was loaded from."""
    if os.environ.get("LAE_BENCH_ROOT"):
        return Path(os.environ["LAE_BENCH_ROOT"]).resolve()
    if (Path.cwd() / "sweeps").is_dir():
        return Path.cwd().resolve()
    return Path(__file__).resolve().parents[2]


def sweeps_dir() -> Path:
    """The directory of the committed sweep specs: ``<project root>/sweeps``."""
    return project_root() / "sweeps"


def spec_names(directory: str | os.PathLike | None = None) -> list[str]:
    """The sweep names (``<name>.toml`` stems) in ``directory`` (default: sweeps_dir()), sorted."""
    return sorted(p.stem for p in Path(directory or sweeps_dir()).glob("*.toml"))


def find_spec(name: str, directory: str | os.PathLike | None = None) -> Path:
    """A sweep name (``<directory>/<name>.toml``, default directory sweeps_dir()) or a path to a .toml file."""
    if name.endswith(".toml") or os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise BenchError(f"sweep spec {path} does not exist")
        return path
    directory = Path(directory or sweeps_dir())
    path = directory / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(spec_names(directory))
        if not known:
            raise BenchError(
                f"unknown sweep {name!r}: no sweep specs in {directory}; run from the lae-bench "
                "checkout or set LAE_BENCH_ROOT to it"
            )
        raise BenchError(f"unknown sweep {name!r}; known sweeps: {known}")
    return path
