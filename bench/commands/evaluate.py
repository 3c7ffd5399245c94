"""`python -m bench evaluate CHECKPOINT [--metrics loglik,probe,speed,adversarial] [--subset N] [--out FILE]`:
the metrics of one checkpoint (bench.metrics, docs/metrics.md), printed as a table and written as a
flat JSON record {"metrics": {name: value}, "units": {name: unit}, ...} (strict JSON: a metric that
does not apply, nan in Python, is written as null).

By default the log-likelihood is computed on the whole test split at the "full" preset (about a
quarter of an hour for an MNIST model on 2 cores); --subset N (the first N test images, the same
every time) or --preset default/smoke make it cheap for sweeps.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from bench.errors import BenchError
from bench.metrics import GROUPS, METRICS, MetricSettings
from lae.config import DEVICES
from lae.utils import atomic_write_text, model_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="checkpoint.pt written by `bench train`")
    parser.add_argument(
        "--metrics", default=",".join(GROUPS), help=f"comma-separated metric groups (default: {','.join(GROUPS)})"
    )
    parser.add_argument(
        "--preset",
        default="full",
        choices=MetricSettings.PRESETS,
        help="evaluation sizes: smoke (seconds), default (~1 min, 500-image subset), full (whole test split; default)",
    )
    parser.add_argument(
        "--subset", type=int, default=None, help="log-likelihood on the first N test images (overrides the preset)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write (atomically)")
    parser.add_argument(
        "--dataset", default=None, help="refuse to run unless the checkpoint was trained on this dataset"
    )
    parser.add_argument(
        "--data-dir", default=None, help="dataset directory (default: $LAE_BENCH_DATA, then the user cache)"
    )
    parser.add_argument("--device", default="cpu", choices=DEVICES, help="device (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the estimators' randomness (default: 0)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice; on a busy shared machine 1 can be "
        "several times faster than 2); recorded as eval_threads",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_groups(text: str) -> list[str]:
    groups = [g.strip() for g in text.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad or not groups:
        raise BenchError(
            f"--metrics: unknown group(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(GROUPS)}"
        )
    return groups


def format_value(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if v == int(v) and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.4g}" if abs(v) >= 1000 or abs(v) < 0.01 else f"{v:.4f}".rstrip("0").rstrip(".")


def unit(name: str) -> str:
    """The unit of a metric as the table prints it: its meaning up to the colon ("nats per image")."""
    return METRICS[name].meaning.split(":")[0]


def table(record: dict[str, float]) -> str:
    """The record as a text table: metric, value, unit."""
    width = max(len(k) for k in record)
    lines = [f"{'metric':<{width}}  {'value':>12}  unit", f"{'-' * width}  {'-' * 12}  {'-' * 4}"]
    for k, v in record.items():
        lines.append(f"{k:<{width}}  {format_value(v):>12}  {unit(k)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    from bench.metrics import compute_metrics
    from lae import data as data_lib
    from lae.train import load_checkpoint

    groups = parse_groups(args.metrics)
    if args.subset is not None and args.subset < 1:
        raise BenchError(f"--subset must be a positive integer; got {args.subset}")
    if args.threads is not None:
        if args.threads < 1:
            raise BenchError(f"--threads must be a positive integer; got {args.threads}")
        torch.set_num_threads(args.threads)
    settings = MetricSettings.preset(args.preset)
    if args.subset is not None:
        settings = settings.replace(subset=args.subset)
    model, config = load_checkpoint(args.checkpoint, args.device)
    if args.dataset is not None:
        wanted = args.dataset.lower().replace("_", "-")
        if wanted != config.dataset:
            raise BenchError(f"checkpoint {args.checkpoint} was trained on {config.dataset}, not {args.dataset}")
    dataset = data_lib.load(config.dataset, config.preprocessing, data_dir=args.data_dir, val_size=config.val_size)
    if settings.subset is not None and settings.subset > len(dataset.test):
        raise BenchError(f"--subset {settings.subset} exceeds the {len(dataset.test)} test images of {config.dataset}")
    generator = torch.Generator(device=model_device(model)).manual_seed(args.seed)
    record = compute_metrics(model, config, dataset, groups, settings, generator, progress=not args.no_progress)
    print(
        f"{config.model} on {config.dataset} ({config.preprocessing}), checkpoint {args.checkpoint}, "
        f"preset {args.preset}"
    )
    print(table(record))
    if args.out is not None:
        payload = {
            "checkpoint": str(args.checkpoint),
            "config": config.to_dict(),
            "preset": args.preset,
            "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()},
            "metrics": {k: (None if math.isnan(v) else v) for k, v in record.items()},
            "units": {k: METRICS[k].meaning for k in record},
        }
        atomic_write_text(args.out, json.dumps(payload, indent=2, allow_nan=False) + "\n")
        print(f"written: {args.out}", file=sys.stderr)
    return 0
