"""A trial's results-store row (columns: docs/sweeps.md, "The results store"), built in one place for every kind of
trial: what the trial measured and its own training figures (an ``Outcome``, from bench.sweep.trial or
bench.sweep.classifier), around the columns every row shares: which trial it is, the axis, the status, the warnings,
the threads, the storage, the worker and the provenance. Also each kind's progress line."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field

import torch

from bench.results import store
from bench.sweep.provenance import provenance
from bench.sweep.spec import config_key, params_key


@dataclass
class Outcome:
    """What one trial produced. ``metrics`` and ``columns`` become row columns; a failed trial keeps NaN (or None)
    where it measured nothing."""

    config: dict  # the RunConfig columns (data_dir left out)
    metrics: dict  # metric name -> value, NaN where not measured
    columns: dict = field(default_factory=dict)  # the trial kind's own columns (training figures, times)
    status: str = "complete"  # complete | pruned | fail
    error: str | None = None  # why it failed or was pruned
    value: float | None = None  # the objective Optuna minimizes; None unless complete
    warnings: list = field(default_factory=list)  # "<Category>: <message>" lines, distinct, in order


def reason(exc: Exception) -> str:
    """``<type>: <first line of the message>``."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def warning_lines(seen) -> list[str]:
    """The distinct ``<Category>: <message>`` lines of recorded warnings, in order."""
    return list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in seen))


def build_row(plan, trial, point, outcome: Outcome, worker: int) -> dict:
    """The row of ``trial`` (an Optuna trial of ``plan``, a bench.sweep.plan.TrialPlan) at ``point``, run by this
    process as worker number ``worker``."""
    spec = plan.spec
    axis_value = point.axis_value if point.axis_value is not None else trial.params.get(spec.axis, math.nan)
    row = {**outcome.metrics, **outcome.config}
    row.update(
        schema_version=store.SCHEMA_VERSION,
        sweep=spec.name,
        study=plan.study,  # not the Optuna study's name, which may be its grid's (bench.sweep.study.grid_study_name)
        budget=plan.budget.name,
        trial=trial.number,
        params=params_key(trial.params),
        point=point.label,
        variant=point.variant,
        # what the trial ran: a failed row is final only for this configuration (bench.sweep.study.Ledger)
        config_key=config_key(spec, plan.budget, point, trial.params["seed"]) if spec.kind == "grid" else None,
        axis=spec.axis,
        axis_value=float(axis_value),
        **outcome.columns,
        status=outcome.status,
        error=outcome.error,
        warnings="; ".join(outcome.warnings) or None,
        threads=torch.get_num_threads(),
        storage=store.redact_url(plan.storage),
        worker=f"{socket.gethostname()}:{os.getpid()}/{worker}",
        **provenance(),
    )
    return row


def progress_line(spec, row: dict, n_done: int, total: int, worker: int) -> str:
    """``[<sweep> <done>/<total>] <point> seed=<seed>: <status>, <the kind's figures>, times (worker N)``."""
    what = row["point"] if spec.kind == "grid" else f"{spec.axis}={row['axis_value']:.3g}"
    head = f"[{spec.name} {n_done}/{total}] {what} seed={row['seed']}: {row['status']}"
    tail = f" (worker {worker})" + (f"; {row['warnings']}" if row.get("warnings") else "")
    if row["status"] == "fail":
        return f"{head} ({row['error']}){tail}"
    times = f"{row['train_seconds']:.1f} s train + {row.get('eval_seconds', math.nan):.1f} s eval{tail}"
    if spec.trial == "classifier":
        dlvm = f", DLVM {row['dlvm_source']}" if row.get("dlvm_source") else ""
        pgd = row.get("clf_acc_pgd_0.1", math.nan)
        return f"{head}, test acc {row['clf_test_acc']:.4f}, PGD eps 0.1 {pgd:.3f}{dlvm}, {times}"
    ll = row.get("test_loglik_ais", math.nan)
    return f"{head}, val {row['val_loss']:.2f} nats, test log-lik (AIS) {ll:.2f}, {times}"
