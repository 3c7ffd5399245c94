"""One trial of a latent-model sweep: train (``lae.train.fit``) and measure (``bench.metrics.compute_metrics``), as an
Outcome for the row (bench.sweep.rows). Divergence and other trial errors become status 'fail' with the reason; a
tuning sweep's pruned trial becomes 'pruned'. Warnings raised while the trial runs are recorded in the row's
``warnings`` column (and its progress line), not printed."""

from __future__ import annotations

import math
import shutil
import time
import warnings
from pathlib import Path

import optuna
import torch

from bench.metrics import compute_metrics
from bench.registry import EVAL_METRICS
from bench.results import pictures
from bench.sweep.rows import Outcome, reason, warning_lines
from bench.sweep.spec import Point
from lae.config import RunConfig
from lae.train import DivergenceError, TrainResult, fit

PICTURES_MIN_FREE = 16_000_000  # bytes: below this free on the results disk, a trial skips its pictures
EVAL_SEED_OFFSET = 1_000_003  # the metrics' generator seed: the trial's seed + this


def run_latent_trial(plan, point: Point, config: RunConfig, dataset, trial) -> Outcome:
    """Train, measure and, for a grid sweep's trial at the budget's first seed, draw its pictures
    (``write_pictures``). The objective: the last validation loss in nats per image."""
    spec = plan.spec
    metrics = {name: math.nan for name in EVAL_METRICS}
    outcome = Outcome(config={k: v for k, v in config.to_dict().items() if k != "data_dir"}, metrics=metrics)
    result, progress = None, {"epochs_run": 0, "val_loss": math.nan}

    def on_epoch(epoch: int, val: float):
        progress.update(epochs_run=epoch, val_loss=val)
        if spec.kind == "tune":
            trial.report(val, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (validation loss {val:.2f} nats)")

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as seen:  # a trial's warnings go to its row, not to stderr
        warnings.simplefilter("always")
        try:
            result = fit(config, dataset, on_epoch=on_epoch)
            outcome.value = result.val_loss[-1]
            gen = torch.Generator().manual_seed(config.seed + EVAL_SEED_OFFSET)
            t0 = time.perf_counter()
            measured = compute_metrics(result.model, config, dataset, settings=plan.settings, generator=gen)
            metrics.update({k: float(v) for k, v in measured.items()})
            metrics["eval_seconds"] = float(measured.get("eval_seconds", time.perf_counter() - t0))
            if spec.kind == "grid" and config.seed == plan.budget.seeds[0]:
                write_pictures(plan, point, config, dataset, result.model)
        except optuna.TrialPruned as exc:
            outcome.status, outcome.error = "pruned", str(exc)
        except DivergenceError as exc:
            outcome.status, outcome.error = "fail", f"diverged: {exc}"
        except Exception as exc:  # one failed trial must not stop the sweep
            outcome.status, outcome.error = "fail", reason(exc)
    outcome.warnings = warning_lines(seen)
    outcome.columns = _training_columns(config, result, progress, time.perf_counter() - start)
    if outcome.status != "complete":
        outcome.value = None
    return outcome


def _training_columns(config: RunConfig, result: TrainResult | None, progress: dict, seconds: float) -> dict:
    """The training figures of the row: from the result, or as far as a failed run got (``progress``)."""
    return dict(
        likelihood=config.likelihood,
        val_loss=float(result.val_loss[-1]) if result is not None else progress["val_loss"],
        train_loss=float(result.train_loss[-1]) if result is not None and result.train_loss else math.nan,
        mh_accept=float(result.accept[-1]) if result is not None and result.accept else math.nan,
        **(result.chain_summary() if result is not None else {}),  # final_step_size, phi_msjd (LAE; else nan)
        epochs_run=result.config.epochs if result is not None else progress["epochs_run"],
        train_seconds=float(result.seconds if result is not None else seconds),
        decoder_depth=config.dec_depth,  # train_size / val_size stay null: the dataset's default split
    )


def write_pictures(plan, point: Point, config: RunConfig, dataset, model) -> None:
    """The pictures of bench.results.pictures (compact PNGs, about 0.1 MB, 0.2 MB with D = 2's manifold) of a trained
    model into pictures.picture_dir(results, sweep, study, point). A failure to draw is a warning in the row, never a
    failed trial."""
    results = plan.results
    out = pictures.picture_dir(results, plan.spec.name, plan.study, point.label)
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
