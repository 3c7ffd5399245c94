"""`python -m bench sweep NAME ...`: run or resume a sweep, rebuild its leaderboard (see docs/sweeps.md).

python -m bench sweep ald_stepsize --budget smoke                  # local journal storage under results/optuna/
python -m bench sweep chain_count --workers 2                       # two processes, one core each
python -m bench sweep latent_dim --storage postgresql://u:pw@host/db   # same command on every machine
python -m bench sweep ald_stepsize --budget default --reproduce     # rerun and compare with the committed parquet
python -m bench sweep paper_mnist --budget default --first lae,vae  # LAE's seeds, then the VAE's, then the rest
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench import sweep
from bench.errors import BenchError, describe, path_arg, ranged
from bench.registry import BUDGETS, DATASETS
from bench.results import leaderboard, reproduce, store
from lae.config import COUNTS, THREADS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="sweep name (see `python -m bench list`) or a path to a .toml spec")
    parser.add_argument(
        "--budget",
        choices=BUDGETS,
        default="smoke",
        help="smoke: 33-42 s for ald_stepsize on 2 cores (README.md); default: the published leaderboards "
        "(results/README.md); full: GPU",
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (sqlite:///f.db, postgresql://user:pw@host/db, journal:PATH); "
        "default: journal:RESULTS/optuna/NAME.journal",
    )
    parser.add_argument(
        "--workers",
        type=ranged(COUNTS),
        default=1,
        help="worker processes on this machine (threads divided), at most its cores and the grid's trials",
    )
    parser.add_argument(
        "--threads",
        type=ranged(THREADS),
        default=None,
        help=f"torch threads per worker, {THREADS.text()} (default: cores // workers)",
    )
    parser.add_argument(
        "--results", type=path_arg, default=Path("results"), help="results directory (default: results)"
    )
    parser.add_argument("--dataset", choices=DATASETS, default=None, help="override the spec's dataset")
    parser.add_argument("--data-dir", default=None, help="dataset directory (default: $LAE_BENCH_DATA)")
    parser.add_argument(
        "--first",
        type=_names,
        default=(),
        help="comma-separated grid point labels or model names (lae selects every lae point) to run before the "
        "others, in this order; trials already queued (a dead worker's, to rerun) still go first",
    )
    parser.add_argument("--no-progress", action="store_true", help="no line per finished trial")
    parser.add_argument("--no-leaderboard", action="store_true", help="do not rebuild this sweep's leaderboard")
    parser.add_argument(
        "--reproduce",
        action="store_true",
        help="rerun the sweep in a scratch directory and compare, per metric, with RESULTS' parquet",
    )


def _names(text: str) -> tuple:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated point labels or model names")
    return names


def run(args: argparse.Namespace) -> int:
    """Run the sweep; an OS failure (full disk, unwritable directory) is one line naming its cause, exit status 2."""
    try:
        return _reproduce(args) if args.reproduce else _sweep(args)
    except OSError as exc:
        raise BenchError(describe(exc)) from None


def _options(args: argparse.Namespace, **changes) -> dict:
    """The SweepOptions fields (bench.sweep.plan) of the command line, with ``changes``."""
    options = dict(
        storage=args.storage,
        workers=args.workers,
        results=args.results,
        dataset=args.dataset,
        data_dir=args.data_dir,
        progress=not args.no_progress,
        threads=args.threads,
        first=args.first,
    )
    return {**options, **changes}


def _sweep(args: argparse.Namespace) -> int:
    summary = sweep.run_sweep(args.name, args.budget, **_options(args))
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary["trials"].items())) or "no trials"
    print(
        f"{summary['sweep']}: study {summary['study']} in {summary['storage']}: {counts}; "
        f"{summary['done']} of {summary['total']} finished with a row; "
        f"{summary['seconds']:.0f} s with {args.workers} worker(s)"
    )
    print(f"rows: {store.parquet_dir(args.results, summary['sweep'])}")
    if not args.no_leaderboard:
        built = leaderboard.build(args.results, sweeps=[summary["sweep"]], study=summary["study"])
        figures = sum(p.suffix == ".png" for p in built.paths)
        name = next(iter(built.studies), summary["sweep"])  # <sweep>, or <sweep>.<dataset> beside another dataset's
        print(f"{figures} figures in {Path(args.results) / 'figures' / name}")
        print(f"open: {Path(args.results) / 'leaderboards' / name}.md (study {summary['study']})")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    """Rerun the sweep into a scratch directory with the committed rows' thread count; compare per metric.
    Exit status 0 when every deterministic metric matches, 1 otherwise."""
    spec = sweep.load_spec(args.name)
    dataset = args.dataset or spec.dataset
    study = sweep.study_name(spec, args.budget, dataset)
    committed = store.read_rows(args.results, spec.name, study)
    if committed.empty:
        raise BenchError(f"no committed rows for study {study} under {store.parquet_dir(args.results, spec.name)}")
    threads = args.threads or int(committed["threads"].mode().iloc[0])  # the committed thread count: same sums
    print(f"rerunning {len(committed)} trials of {study} in a scratch directory with {threads} thread(s) per worker")
    with tempfile.TemporaryDirectory(prefix="lae-reproduce-") as tmp:
        options = _options(args, storage=None, results=tmp, threads=threads, first=())
        summary = sweep.run_sweep(args.name, args.budget, **options)
        fresh = store.read_rows(tmp, spec.name, study)
    report, ok = reproduce.compare(committed, fresh)
    print(report)
    print(
        f"reran {study} in {summary['seconds']:.0f} s: "
        + ("every deterministic metric matches" if ok else "some deterministic metrics differ (see above)")
    )
    return 0 if ok else 1
