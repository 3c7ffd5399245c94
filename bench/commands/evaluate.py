"""`python -m bench evaluate CHECKPOINT [--metrics loglik,probe,speed,adversarial] [--subset N] [--out FILE]`:
the metrics of one checkpoint (bench.metrics, docs/metrics.md), printed as a table and written as a
flat JSON record {"metrics": {name: value}, "units": {name: unit}, ...} (strict JSON: a metric that
does not apply, nan in Python, is written as null).

By default the metrics use the "default" preset (the published leaderboards': AIS on the first 500 test images);
--preset full takes the whole test split (about 25 minutes for an MNIST model on 2 cores), --preset smoke seconds,
--subset N the first N test images. Before the work it prints, on stderr, the Langevin chain's health (step size,
MH acceptance on test images) and an estimate of the duration from a pilot that does a known fraction of the work
(`estimate_seconds`; not for the smoke preset, which takes seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

from bench.errors import BenchError, check_output, path_arg, ranged
from bench.metrics import GROUPS, METRICS, MetricSettings
from lae.config import COUNTS, DEVICES, SEEDS, THREADS
from lae.utils import atomic_write_text, model_device

HEALTH_BATCHES = 5  # test minibatches (of the training batch size) the MH acceptance is measured on
PILOT_FRACTION = 0.1  # of the AIS distributions and IS samples in the duration estimate's log-likelihood pilot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", type=path_arg, metavar="CHECKPOINT", help="checkpoint.pt written by `bench train`"
    )
    parser.add_argument(
        "--metrics", default=",".join(GROUPS), help=f"comma-separated metric groups (default: {','.join(GROUPS)})"
    )
    parser.add_argument(
        "--preset",
        default="default",
        choices=MetricSettings.PRESETS,
        help="evaluation sizes: smoke (seconds), default (the leaderboards': 500 test images; the default), "
        "full (the whole test split: many minutes)",
    )
    parser.add_argument(
        "--subset",
        type=ranged(COUNTS),
        default=None,
        help="log-likelihood on the first N test images (overrides the preset)",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one metric setting of the preset (repeatable), e.g. --setting ais_intermediate=1000 "
        "--setting bdmc_images=50 (names: bench/metrics/settings.py)",
    )
    parser.add_argument("--out", type=path_arg, default=None, help="JSON file to write (atomically)")
    parser.add_argument(
        "--dataset", default=None, help="refuse to run unless the checkpoint was trained on this dataset"
    )
    parser.add_argument(
        "--data-dir", default=None, help="dataset directory (default: $LAE_BENCH_DATA, then the user cache)"
    )
    parser.add_argument("--device", default="cpu", choices=DEVICES, help="device (default: cpu)")
    parser.add_argument(
        "--seed", type=ranged(SEEDS), default=0, help=f"seed of the estimators' randomness, {SEEDS.text()} (default: 0)"
    )
    parser.add_argument(
        "--threads",
        type=ranged(THREADS),
        default=None,
        help=f"torch intra-op threads, {THREADS.text()} (default: torch's choice; on a busy shared machine 1 can be "
        "several times faster than 2); recorded as eval_threads",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def override(settings: MetricSettings, items: list[str]) -> MetricSettings:
    """``settings`` with each ``NAME=VALUE`` of ``items`` applied (VALUE read as an int, a float, or else text),
    validated; BenchError (one line) on an unknown name or a bad value."""
    names = {f.name for f in dataclasses.fields(MetricSettings)}
    changes = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in names:
            raise BenchError(f"--setting {item!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(names))}")
        for kind in (int, float, str):
            try:
                changes[name] = kind(text)
                break
            except ValueError:
                continue
    return settings.replace(**changes).validate("--setting") if changes else settings


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


def chain_health(model, config, dataset, checkpoint: Path, seed: int) -> str:
    """One line on a Langevin model's chain ('' for the others): the step size in the checkpoint (LAE's
    log_step_size buffer: adapted when trained with target_accept), the mean MH acceptance of n_steps moves from the
    stored chains on HEALTH_BATCHES test minibatches, and the last training epoch's (summary.json beside the
    checkpoint, when there)."""
    from lae import data as data_lib
    from lae.train import evaluate_loss

    n = min(len(dataset.test), HEALTH_BATCHES * config.batch_size)
    split = data_lib.Split(dataset.test.x[:n], dataset.test.y[:n])
    _, accept = evaluate_loss(model, split, config.batch_size, seed, model_device(model))
    model.eval()
    if math.isnan(accept):
        return ""
    log_step = model.state_dict().get("log_step_size")
    step = ""
    if log_step is not None:
        adapted = f" (adapted toward {config.target_accept})" if config.target_accept is not None else ""
        step = f"step size {math.exp(log_step.item()):.3g}{adapted}, "
    line = f"chain: {step}MH acceptance {accept:.3f} on {n} test images"
    try:
        trained = json.loads((checkpoint.parent / "summary.json").read_text())["accept"][-1]
        line += f" ({trained:.3f} in the last training epoch)"
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    return line


def estimate_seconds(model, config, dataset, groups: list[str], s: MetricSettings) -> tuple[float, float]:
    """(estimated seconds of compute_metrics, seconds the pilot took), from a pilot that does a known fraction of
    each group's real work and is scaled by that ratio (a ratio of one large measured time, not a slope between two
    small ones, so a busy machine's noise is not amplified). Log-likelihood: one AIS chunk of real size (AIS runs
    estimator_batch // ais_chains images at a time) with PILOT_FRACTION of the AIS distributions and IS samples,
    minus a quarter chunk with one of each, x 4 (the per-image cost: proposal, ELBO), scaled to every chunk; BDMC
    alike.
    Probe and attacks: a quarter of the images, x 4. Speed: one call, x its call count. Sample quality: the feature
    classifier is loaded (or, once per dataset, trained) by the pilot and reused by the real run, so it is not in the
    estimate; then a quarter of the images, whose k-NN part (quadratic in the images; both timed after one small
    untimed call) is timed apart and x 16, the rest x 4. The pilot draws from its own generator and
    the probe has its fixed seed: the metrics are unchanged by it."""
    import sklearn.linear_model  # noqa: F401  (imports are not part of the estimate)
    import torch
    import torchattacks  # noqa: F401

    from bench.metrics import adversarial, loglik, probe, quality, speed

    gen = torch.Generator(device=model_device(model)).manual_seed(0)
    n_test, n_train = len(dataset.test), len(dataset.train)
    pilot = {"probe": None}
    few = max(1, round(s.ais_intermediate * PILOT_FRACTION))
    ratio = few / s.ais_intermediate

    def seconds(fn) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    def ll(k: int, distributions: int, bdmc: int = 0) -> float:
        samples = 1 if distributions == 1 else max(1, round(s.is_samples * ratio))
        cut = s.replace(subset=k, ais_intermediate=distributions, is_samples=samples, bdmc_images=bdmc)
        return seconds(lambda: loglik.loglik_metrics(model, config, dataset, cut, gen))

    start, total = time.perf_counter(), 0.0
    model.requires_grad_(False)
    try:
        if "loglik" in groups:
            n, chunk = min(s.subset or n_test, n_test), max(1, s.estimator_batch // s.ais_chains)
            k, quarter = min(n, chunk), max(1, min(n, chunk) // 4)
            base = ll(quarter, 1) * k / quarter  # per-image work (proposal, ELBO): a quarter of the chunk, x 4
            total += (base + max(0.0, ll(k, few) - base) / ratio) * n / k
            if s.bdmc_images:
                kb = min(s.bdmc_images, chunk)
                total += max(0.0, ll(1, few, kb) - ll(1, few)) / ratio * s.bdmc_images / kb
        if "probe" in groups or "adversarial" in groups:
            n = min(s.probe_train_size or n_train, n_train)
            k = max(1, n // 4)
            run = lambda: pilot.update(probe=probe.train_probe(model, dataset, s.replace(probe_train_size=k)))
            total += seconds(run) * n / k
        if "probe" in groups:  # the test split's features: measured, not scaled
            total += seconds(lambda: probe.probe_metrics(model, dataset, s, pilot["probe"]))
        if "speed" in groups:
            once = s.replace(speed_repeats=1, speed_warmup=0)
            total += seconds(lambda: speed.speed_metrics(model, config, dataset, once, gen)) * (
                s.speed_repeats + s.speed_warmup
            )
        if "adversarial" in groups:
            n = min(s.adv_subset or n_test, n_test)
            k = max(1, n // 4)
            cut = s.replace(adv_subset=k)
            total += seconds(lambda: adversarial.adversarial_metrics(model, dataset, cut, pilot["probe"])) * n / k
        if "quality" in groups and s.quality_images:
            # Loaded (or trained, once per dataset) here, untimed: the real run reuses this process's classifier.
            real = quality.classifier(config, dataset).test_features
            n = min(s.quality_images, len(real))
            least = 2 * quality.K_NEAREST + 2
            k = min(max(least, n // 4), len(real) // 2)
            # Untimed small calls first: one-off first-call costs (allocations, kernel choice) are not scaled up.
            quality.quality_metrics(model, config, dataset, s.replace(quality_images=least))
            knn = seconds(lambda: quality.precision_recall(real[:k], real[k : 2 * k]))
            rest = seconds(lambda: quality.quality_metrics(model, config, dataset, s.replace(quality_images=k)))
            total += knn * (n / k) ** 2 + max(0.0, rest - knn) * n / k
    finally:
        model.requires_grad_(True)
    return total, time.perf_counter() - start


def seconds_text(seconds: float) -> str:
    """Two significant figures under 10 s (a 0.06 s estimate must not print as 0.1), whole seconds above."""
    return f"{seconds:.2g}" if seconds < 10 else f"{seconds:.0f}"


def run(args: argparse.Namespace) -> int:
    import torch

    from bench.checkpoints import load_checked
    from bench.metrics import compute_metrics

    groups = parse_groups(args.metrics)
    if args.threads is not None:  # in THREADS: checked by its argparse type
        torch.set_num_threads(args.threads)
    if args.out is not None:
        check_output(args.out, "--out", directory=False)
    settings = MetricSettings.preset(args.preset)
    if args.subset is not None:
        settings = settings.replace(subset=args.subset)
    settings = override(settings, args.setting)
    model, config, dataset = load_checked(args.checkpoint, args.device, args.data_dir, args.dataset)
    if args.subset is not None and args.subset > len(dataset.test):
        raise BenchError(f"--subset {args.subset} exceeds the {len(dataset.test)} test images of {config.dataset}")
    if settings.subset is not None and settings.subset >= len(dataset.test):
        settings = settings.replace(subset=None)  # a preset's subset larger than the test split (digits): all of it
    health = chain_health(model, config, dataset, args.checkpoint, args.seed)
    if health:
        print(health, file=sys.stderr)
    if args.preset != "smoke" or args.subset is not None:  # smoke takes seconds: no pilot
        estimate, pilot = estimate_seconds(model, config, dataset, groups, settings)
        print(
            f"estimated time: about {seconds_text(estimate)} s ({estimate / 60:.1f} min) for "
            f"{','.join(groups)} at preset "
            f"{args.preset}, extrapolated from a {seconds_text(pilot)} s pilot",
            file=sys.stderr,
        )
    generator = torch.Generator(device=model_device(model)).manual_seed(args.seed)
    record = compute_metrics(model, config, dataset, groups, settings, generator, progress=not args.no_progress)
    print(
        f"{config.model} on {config.dataset} ({config.preprocessing}), checkpoint {args.checkpoint}, "
        f"preset {args.preset}"
    )
    print(table(record))
    if health:
        print(health)  # again below the table, on stdout: part of the report
    if args.out is not None:
        from bench.sweep.provenance import provenance

        payload = {
            "checkpoint": str(args.checkpoint),
            "config": config.to_dict(),
            "preset": args.preset,
            "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()},
            "metrics": {k: (None if math.isnan(v) else v) for k, v in record.items()},
            "units": {k: METRICS[k].meaning for k in record},
            "provenance": provenance(),  # git commit (+dirty), library versions, machine: as a sweep row's
        }
        atomic_write_text(args.out, json.dumps(payload, indent=2, allow_nan=False) + "\n")
        print(f"written: {args.out}", file=sys.stderr)
    return 0
