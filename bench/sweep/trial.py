"""One trial: train (``lae.train.fit``), measure (``bench.metrics.compute_metrics``) and build its results-store row
(columns: docs/sweeps.md, "The results store"). Divergence and other trial errors become status 'fail' with the
reason; a tuning sweep's pruned trial becomes 'pruned'. Warnings raised while the trial runs are recorded in the
row's ``warnings`` column (and its progress line), not printed."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import socket
import time
import warnings
from pathlib import Path

from bench.errors import BenchError
from bench.registry import EVAL_METRICS
from bench.results import store
from bench.sweep.provenance import provenance
from bench.sweep.spec import Budget, Point, Spec
from bench.sweep.study import params_key
from lae.config import RunConfig

PICTURES_MIN_FREE = 16_000_000  # bytes: below this free on the results disk, a trial skips its pictures
EVAL_SEED_OFFSET = 1_000_003  # the metrics' generator seed: the trial's seed + this


def metric_settings(budget: Budget):
    """The budget's MetricSettings: its preset with its ``metric_settings`` overrides (BenchError when unknown)."""
    from bench.metrics import MetricSettings

    settings = MetricSettings.preset(budget.metrics)
    try:
        return dataclasses.replace(settings, **budget.metric_settings)
    except TypeError as exc:
        raise BenchError(f"budget {budget.name}: metric_settings: {exc}") from None


def write_pictures(results, spec: Spec, study: str, point: Point, config: RunConfig, dataset, model) -> None:
    """The pictures of bench.results.pictures (compact PNGs, about 0.1 MB, 0.2 MB with D = 2's manifold) of a trained
    model into pictures.picture_dir(results, sweep, study, point). A failure to draw is a warning in the row, never a
    failed trial."""
    from bench.results import pictures

    out = pictures.picture_dir(results, spec.name, study, point.label)
    title = f"{point.label}, seed {config.seed}"
    existing = next(p for p in (Path(results).resolve(), *Path(results).resolve().parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < PICTURES_MIN_FREE:  # the rows come first: a nearly full disk keeps its space for them
        warnings.warn(f"pictures not written to {out}: {free / 1e6:.1f} MB free on the results disk", RuntimeWarning, 2)
        return
    try:
        pictures.draw_all(model, dataset.test.x, dataset.test.y, out, config.seed, title, compact=True)
    except Exception as exc:
        warnings.warn(f"pictures not written to {out}: {reason(exc)}", RuntimeWarning, 2)


def identity(spec: Spec, budget: Budget, point: Point, trial) -> dict:
    """The columns that say which trial a row is (every trial kind's rows share them)."""
    return dict(
        schema_version=store.SCHEMA_VERSION,
        sweep=spec.name,
        study=trial.study.study_name,
        budget=budget.name,
        trial=trial.number,
        params=params_key(trial.params),
        point=point.label,
        variant=point.variant,
    )


def reason(exc: Exception) -> str:
    """``<type>: <first line of the message>``."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def run_trial(
    spec: Spec,
    budget: Budget,
    point: Point,
    config: RunConfig,
    dataset,
    settings,
    trial,
    storage_url: str,
    worker: int,
    results: str | os.PathLike | None = None,
) -> tuple[dict, float | None]:
    """Train, measure and build one row. -> (row, objective: the last validation loss in nats per image, None when
    the trial did not complete). With `results`, a grid sweep's complete trial at the budget's first seed also writes
    its model's pictures (`write_pictures`)."""
    import optuna
    import torch

    from bench.metrics import compute_metrics
    from lae.train import DivergenceError, fit

    row = {name: math.nan for name in EVAL_METRICS}
    status, error, value, result, epochs_run, last_val = "complete", None, None, None, 0, math.nan

    def on_epoch(epoch: int, val: float):
        nonlocal epochs_run, last_val
        epochs_run, last_val = epoch, val
        if spec.kind == "tune":
            trial.report(val, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (validation loss {val:.2f} nats)")

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as seen:  # a trial's warnings go to its row, not to stderr
        warnings.simplefilter("always")
        try:
            result = fit(config, dataset, on_epoch=on_epoch)
            value = result.val_loss[-1]
            gen = torch.Generator().manual_seed(config.seed + EVAL_SEED_OFFSET)
            t0 = time.perf_counter()
            metrics = compute_metrics(result.model, config, dataset, settings=settings, generator=gen, progress=False)
            row.update({k: float(v) for k, v in metrics.items()})
            row["eval_seconds"] = float(metrics.get("eval_seconds", time.perf_counter() - t0))
            if results is not None and spec.kind == "grid" and config.seed == budget.seeds[0]:
                write_pictures(results, spec, trial.study.study_name, point, config, dataset, result.model)
        except optuna.TrialPruned as exc:
            status, error = "pruned", str(exc)
        except DivergenceError as exc:
            status, error = "fail", f"diverged: {exc}"
        except Exception as exc:  # one failed trial must not stop the sweep
            status, error = "fail", reason(exc)
    texts = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in seen))
    train_seconds = result.seconds if result is not None else time.perf_counter() - start
    cfg = config.to_dict()
    cfg.pop("data_dir")
    row.update(cfg)
    row.update(
        **identity(spec, budget, point, trial),
        axis=spec.axis,
        axis_value=float(point.axis_value if point.axis_value is not None else trial.params.get(spec.axis, math.nan)),
        likelihood=config.likelihood,
        status=status,
        error=error,
        warnings="; ".join(texts) or None,
        val_loss=float(result.val_loss[-1]) if result is not None else last_val,
        train_loss=float(result.train_loss[-1]) if result is not None and result.train_loss else math.nan,
        mh_accept=float(result.accept[-1]) if result is not None and result.accept else math.nan,
        **(result.chain_summary() if result is not None else {}),  # final_step_size, phi_msjd (LAE; else nan)
        epochs_run=result.config.epochs if result is not None else epochs_run,
        train_seconds=float(train_seconds),
        threads=torch.get_num_threads(),
        storage=store.redact_url(storage_url),
        worker=f"{socket.gethostname()}:{os.getpid()}/{worker}",
        **provenance(),
    )
    row["decoder_depth"] = config.dec_depth  # train_size / val_size stay null: the dataset's default split
    return row, value
