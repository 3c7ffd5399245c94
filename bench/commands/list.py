"""`python -m bench list`: every sweep spec with its description, axis, models and budgets (see docs/sweeps.md)."""

from __future__ import annotations

import argparse

from bench.errors import BenchError, path_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sweeps-dir", type=path_arg, default=None, help="directory of sweep specs (default: sweeps/)")


def run(args: argparse.Namespace) -> int:
    from bench import sweep

    sweeps_dir = args.sweeps_dir or sweep.sweeps_dir()
    names = sweep.spec_names(sweeps_dir)
    if not names:
        raise BenchError(
            f"no sweep specs (*.toml) in {sweeps_dir}; run from the lae-bench checkout or set LAE_BENCH_ROOT"
        )
    for name in names:
        print("\n".join(describe(sweep.load_spec(name, sweeps_dir))))
    return 0


def describe(spec) -> list[str]:
    """The lines `list` prints for one spec: name and description, axis, models, one line per budget."""
    if spec.kind == "grid":
        axis = f"{spec.axis} in {list(spec.values)}"
    else:
        axis = (
            ", ".join(
                f"{k} in [{d['low']:g}, {d['high']:g}]{' (log)' if d.get('log') else ''}"
                for k, d in spec.search.items()
            )
            + " (TPE + median pruner)"
        )
    models = ", ".join(m["label"] + (f" ({m['axis']} follows)" if m.get("axis") else "") for m in spec.models)
    lines = [f"{spec.name}: {spec.description}", f"    axis:   {axis}", f"    models: {models}"]
    for b in spec.budgets.values():
        n = (len(spec.points(b)) * len(b.seeds)) if spec.kind == "grid" else b.n_trials
        size = f"{b.train_size} train images" if b.train_size else "all train images"
        lines.append(
            f"    {b.name + ':':8s}{n} trials, {len(b.seeds)} seed(s), {b.epochs} epoch(s), {size}, "
            f"metrics '{b.metrics}'" + (f", values {list(b.values)}" if b.values else "")
        )
    return lines
