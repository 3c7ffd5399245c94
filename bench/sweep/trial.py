"""One trial: train (``lae.train.fit``), measure (``bench.metrics.compute_metrics``) and build its results-store row
(columns: docs/sweeps.md, "The results store"). Divergence and other trial errors become status 'fail' with the
reason; a tuning sweep's pruned trial becomes 'pruned'. Warnings raised while the trial runs are recorded in the
row's ``warnings`` column (and its progress line), not printed."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
import warnings

from bench.errors import BenchError
from bench.registry import EVAL_METRICS
from bench.results import store
from bench.sweep.provenance import provenance
from bench.sweep.spec import Budget, Point, Spec
from bench.sweep.study import params_key
from lae.config import RunConfig

EVAL_SEED_OFFSET = 1_000_003  # the metrics' generator seed: the trial's seed + this


def metric_settings(budget: Budget):
    """The budget's MetricSettings: its preset with its ``metric_settings`` overrides (BenchError when unknown)."""
    from bench.metrics import MetricSettings

    settings = MetricSettings.preset(budget.metrics)
    try:
        return dataclasses.replace(settings, **budget.metric_settings)
    except TypeError as exc:
        raise BenchError(f"budget {budget.name}: metric_settings: {exc}") from None


def _reason(exc: Exception) -> str:
    """``<type>: <first line of the message>``."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def run_trial(
    spec: Spec, budget: Budget, point: Point, config: RunConfig, dataset, settings, trial, storage_url: str, worker: int
) -> tuple[dict, float | None]:
    """Train, measure and build one row. -> (row, objective: the last validation loss in nats per image, None when
    the trial did not complete)."""
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
        except optuna.TrialPruned as exc:
            status, error = "pruned", str(exc)
        except DivergenceError as exc:
            status, error = "fail", f"diverged: {exc}"
        except Exception as exc:  # one failed trial must not stop the sweep
            status, error = "fail", _reason(exc)
    texts = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in seen))
    train_seconds = result.seconds if result is not None else time.perf_counter() - start
    cfg = config.to_dict()
    cfg.pop("data_dir")
    row.update(cfg)
    row.update(
        schema_version=store.SCHEMA_VERSION,
        sweep=spec.name,
        study=trial.study.study_name,
        budget=budget.name,
        trial=trial.number,
        params=params_key(trial.params),
        point=point.label,
        variant=point.variant,
        axis=spec.axis,
        axis_value=float(point.axis_value if point.axis_value is not None else trial.params.get(spec.axis, math.nan)),
        likelihood=config.likelihood,
        status=status,
        error=error,
        warnings="; ".join(texts) or None,
        val_loss=float(result.val_loss[-1]) if result is not None else last_val,
        train_loss=float(result.train_loss[-1]) if result is not None and result.train_loss else math.nan,
        mh_accept=float(result.accept[-1]) if result is not None and result.accept else math.nan,
        epochs_run=result.config.epochs if result is not None else epochs_run,
        train_seconds=float(train_seconds),
        threads=torch.get_num_threads(),
        storage=store.redact_url(storage_url),
        worker=f"{socket.gethostname()}:{os.getpid()}/{worker}",
        **provenance(),
    )
    row["decoder_depth"] = config.dec_depth  # train_size / val_size stay null: the dataset's default split
    return row, value
