"""What made a row: the git commit of the project root (``+dirty`` when ``lae/`` or ``bench/`` differ from it), the
library versions and the machine (architecture and CPU model). Computed once per process."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

import numpy
import optuna
import torch

from bench.sweep.spec import project_root

_PROVENANCE: dict = {}


def git_commit() -> str:
    """HEAD of the project root, ``+dirty`` when lae/ or bench/ differ from it; "unknown" outside a checkout."""
    root = project_root()

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None

    head = git("rev-parse", "HEAD")
    commit = head.stdout.strip() if head is not None and head.returncode == 0 else "unknown"
    diff = git("diff", "--quiet", "HEAD", "--", "lae", "bench")
    if commit != "unknown" and diff is not None and diff.returncode == 1:
        commit += "+dirty"
    return commit


def machine() -> str:
    """``<architecture> <CPU model>``: the CPU model from /proc/cpuinfo where there is one."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.machine()} {cpu}"


def provenance() -> dict:
    """The row's provenance columns: git_commit, python/torch/optuna/numpy/lae_bench versions, machine."""
    if not _PROVENANCE:
        try:
            own = version("lae-bench")
        except PackageNotFoundError:
            own = "source"
        _PROVENANCE.update(
            git_commit=git_commit(),
            python_version=platform.python_version(),
            torch_version=torch.__version__,
            optuna_version=optuna.__version__,
            numpy_version=numpy.__version__,
            lae_bench_version=own,
            machine=machine(),
        )
    return dict(_PROVENANCE)
