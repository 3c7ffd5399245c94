"""`python -m bench conformance MODEL`: the conformance kit (lae.conformance) for one model family, built-in or
installed: one line per check; exit status 1 when a check fails."""

from __future__ import annotations

import argparse
import dataclasses
import json

from bench.errors import BenchError, ranged
from lae import conformance
from lae.config import MODELS, SEEDS, ConfigError, RunConfig

RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}  # a run option's documented range: its metadata


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=f"model family: {', '.join(MODELS)}")
    parser.add_argument(
        "--options",
        default="{}",
        help='the family config\'s fields as JSON, e.g. \'{"n_chains": 64, "step_size": 2e-3}\' (LAE mixes in time '
        "for its exact-posterior check with these)",
    )
    parser.add_argument(
        "--seed", type=ranged(SEEDS), default=0, help=f"seed of the linear-Gaussian model and the draws, {SEEDS.text()}"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device (default: cpu)")


def run(args: argparse.Namespace) -> int:
    if args.model not in MODELS:
        raise BenchError(f"unknown model family {args.model!r}; choose one of: {', '.join(MODELS)}")
    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as exc:
        raise BenchError(f"--options is not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise BenchError(f"--options must be a JSON object; got {args.options!r}")
    for name, value in options.items():  # a run option's value in the range RunConfig documents for it
        field = RUN_FIELDS.get(name)
        if field is not None and field.metadata.get("range") is not None:
            try:
                field.metadata["range"].check(name, value)
            except ConfigError as exc:
                raise BenchError(f"--options: {exc}") from None
    try:
        checks = conformance.run(args.model, options, seed=args.seed, device=args.device)
    except TypeError as exc:  # an option the family's config does not have
        raise BenchError(f"{args.model}: {exc}") from None
    print(conformance.report(checks))
    failed = [c.name for c in checks if c.passed is False]
    print(f"{args.model}: {'FAILED ' + ', '.join(failed) if failed else 'conforms'}")
    return 1 if failed else 0
