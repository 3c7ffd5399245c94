"""One worker process: ask, train, measure, record, tell, until the study has nothing left (``run_worker``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.results import store
from bench.sweep.spec import Spec, load_spec
from bench.sweep.storage import open_storage
from bench.sweep.study import DUPLICATE, FINAL, Heartbeat, claim, classify, create_study, params_key, reap_stale
from bench.sweep.trial import metric_settings, run_trial


@dataclass
class Job:
    """Everything a worker process needs (picklable)."""

    spec_path: str
    budget: str
    storage_url: str
    results: str
    dataset: str
    data_dir: str | None
    threads: int  # torch intra-op threads
    worker: int = 0  # index among this machine's workers
    progress: bool = True  # print one line per finished trial


def run_worker(job: Job) -> int:
    """Run trials until every grid point (or n_trials of a tuning sweep) is done. Returns the trials run here."""
    import optuna
    import torch
    from optuna.trial import TrialState

    from lae.train import load_data

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(job.threads)
    spec, storage = load_spec(job.spec_path), open_storage(job.storage_url)
    budget = spec.budget(job.budget)
    study = create_study(spec, job.budget, job.dataset, storage, job.worker)
    points = {p.label: p for p in spec.points(budget)}
    grid = [params_key({"point": p, "seed": s}) for p in points for s in budget.seeds]
    total = len(grid) if spec.kind == "grid" else budget.n_trials
    settings = metric_settings(budget)
    datasets: dict = {}
    n_run = 0
    while True:
        reap_stale(study)
        done, live, waiting, finished = classify(study)
        if spec.kind == "grid":
            remaining = [k for k in grid if k not in done and k not in live]
        else:
            remaining = range(max(0, budget.n_trials - len(finished) - len(live)))
        if not remaining and not waiting:
            return n_run
        trial = study.ask()
        params = _suggest(trial, spec, list(points), budget.seeds)
        if _is_duplicate(study, trial, params_key(params), grid if spec.kind == "grid" else None):
            trial.set_user_attr(DUPLICATE, "params done or running elsewhere")
            study.tell(trial, state=TrialState.FAIL)
            continue
        claim(trial, job.worker)
        if spec.kind == "grid":
            point, seed, extra = points[params["point"]], params["seed"], {}
        else:
            point, seed, extra = next(iter(points.values())), budget.seeds[0], params
        config = spec.config(point, budget, seed, job.dataset, job.data_dir, extra)
        data_key = (config.dataset, config.preprocessing, config.train_size, config.val_size)
        if data_key not in datasets:
            datasets[data_key] = load_data(config)
        with Heartbeat(trial):
            row, value = run_trial(
                spec, budget, point, config, datasets[data_key], settings, trial, job.storage_url, job.worker
            )
        store.write_row(job.results, row)  # the row first: a kill before tell() reruns the trial, never loses it
        if row["status"] == "complete":
            study.tell(trial, value)
        elif row["status"] == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            trial.set_user_attr(FINAL, row["error"] or "failed")
            study.tell(trial, state=TrialState.FAIL)
        n_run += 1
        if job.progress:
            n_done = len(classify(study)[3])
            print(progress_line(spec, row, n_done, total, job.worker), flush=True)


def _suggest(trial, spec: Spec, points: list[str], seeds: tuple[int, ...]) -> dict:
    """The trial's params: a grid's {point label, seed}, or a tuning sweep's searched fields."""
    if spec.kind == "grid":
        return {
            "point": trial.suggest_categorical("point", points),
            "seed": trial.suggest_categorical("seed", list(seeds)),
        }
    return {
        k: trial.suggest_float(k, float(d["low"]), float(d["high"]), log=bool(d.get("log", False)))
        for k, d in spec.search.items()
    }


def _is_duplicate(study, trial, key: str, grid: list[str] | None) -> bool:
    """The params ``key`` are already done, or running in an older live trial, or (grid sweeps) not on the grid."""
    done, live, _, _ = classify(study)
    older = live.get(key)
    return key in done or (older is not None and older < trial.number) or (grid is not None and key not in grid)


def progress_line(spec: Spec, row: dict, n_done: int, total: int, worker: int) -> str:
    """``[<sweep> <done>/<total>] <point> seed=<seed>: <status>, val ... nats, test log-lik (AIS) ..., times``."""
    what = row["point"] if spec.kind == "grid" else f"{spec.axis}={row['axis_value']:.3g}"
    head = f"[{spec.name} {n_done}/{total}] {what} seed={row['seed']}: {row['status']}"
    if row["status"] == "fail":
        return f"{head} ({row['error']}) (worker {worker})"
    ll = row.get("test_loglik_ais", math.nan)
    return (
        f"{head}, val {row['val_loss']:.2f} nats, test log-lik (AIS) {ll:.2f}, "
        f"{row['train_seconds']:.1f} s train + {row.get('eval_seconds', math.nan):.1f} s eval (worker {worker})"
    )
