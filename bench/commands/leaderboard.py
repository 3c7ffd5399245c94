"""`python -m bench leaderboard`: rebuild the tables, figures and index page from the results store, and say which
study each table shows."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import BenchError, path_arg
from bench.registry import BUDGETS, DATASETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweeps", nargs="*", help="sweeps to rebuild (default: every sweep with rows)")
    parser.add_argument(
        "--results", type=path_arg, default=Path("results"), help="results directory (default: results)"
    )
    parser.add_argument("--study", default=None, help="the study to show, e.g. ald_stepsize.smoke.mnist")
    parser.add_argument("--budget", choices=BUDGETS, default=None, help="show the study of this budget")
    parser.add_argument("--dataset", choices=DATASETS, default=None, help="show the study of this dataset")
    parser.add_argument("--no-figures", action="store_true", help="tables only")


def run(args: argparse.Namespace) -> int:
    from bench.results import experiments, leaderboard, store

    base = store.parquet_dir(args.results)
    if not base.is_dir():
        raise BenchError(f"no results store at {base}; run `python -m bench sweep NAME` first")
    known = sorted(p.name for p in base.iterdir() if p.is_dir())
    for name in args.sweeps + ([args.study.split(".")[0]] if args.study else []):
        if name not in known:
            raise BenchError(f"no rows for sweep {name!r} in {base}; sweeps with rows: {', '.join(known) or '(none)'}")
    built = leaderboard.build(
        args.results, args.sweeps or None, not args.no_figures, args.study, args.budget, args.dataset
    )
    if not built.studies:
        wanted = args.study or ", ".join(
            f"{k} {v}" for k, v in (("budget", args.budget), ("dataset", args.dataset)) if v
        )
        what = f"no rows of {wanted}" if wanted else f"no readable rows of {', '.join(args.sweeps) or 'any sweep'}"
        raise BenchError(f"{what} in {base} (unreadable row files are moved to {store.quarantine_dir(args.results)})")
    for sweep, study in built.studies.items():
        print(f"{Path(args.results) / 'leaderboards' / sweep}.md: study {study}")
    for page in experiments.fill(args.results):  # the tables of <results>/experiments.md and README.md, if any
        print(f"{page}: tables rebuilt")
    n_figures = sum(p.suffix == ".png" for p in built.paths)
    print(f"index: {Path(args.results) / 'leaderboards' / 'README.md'}; {n_figures} figures")
    return 0
