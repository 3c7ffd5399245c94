"""`python -m bench leaderboard`: rebuild the tables, figures and index page from the results store."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import BenchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweeps", nargs="*", help="sweeps to rebuild (default: every sweep with rows)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")


def run(args: argparse.Namespace) -> int:
    from bench.results import leaderboard, store

    base = store.parquet_dir(args.results)
    if not base.is_dir():
        raise BenchError(f"no results store at {base}; run `python -m bench sweep NAME` first")
    for name in args.sweeps:
        if not (base / name).is_dir():
            known = ", ".join(sorted(p.name for p in base.iterdir() if p.is_dir())) or "(none)"
            raise BenchError(f"no rows for sweep {name!r} in {base}; sweeps with rows: {known}")
    written = leaderboard.build(args.results, args.sweeps or None, figures=not args.no_figures)
    for path in written:
        print(path)
    return 0
