"""One worker process: pick, ask, claim, train, measure, record, tell, until the study has nothing left
(``run_worker``).

A grid worker enqueues one unfinished grid point (chosen at random among those no live trial holds, so workers spread
out; among the points ``--first`` names first, if any of them is unfinished: ``pick``) whenever the queue is empty, then
asks for a trial and claims it at once (bench.sweep.study). After the params are suggested it checks them: a point
already done or held by any other live trial is a duplicate, failed without training. Two workers that picked the same
point both write its params before checking, so at most one of them can miss the other: never both train it (both may
yield; a random pause then lets one go first). The row is written before Optuna is told, so a kill between the two loses
nothing and the point is not run again (its row counts). When nothing is left but trials that other live workers run,
the worker waits for them, and takes over any whose worker dies."""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from bench.results import store
from bench.sweep import classifier
from bench.sweep.ledger import Ledger
from bench.sweep.liveness import HOSTNAME, remove_orphaned_temp_rows
from bench.sweep.spec import Spec, load_spec
from bench.sweep.storage import open_storage
from bench.sweep.study import DUPLICATE, FINAL, Heartbeat, asking, claim, create_study, params_key, reap_stale
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
    first: tuple = ()  # grid point labels (or label prefixes, e.g. "lae") to run before the others, in this order


def poll_seconds() -> float:
    """How often a worker with nothing left to start looks again at the trials other workers run."""
    return min(1.0, float(os.environ.get("LAE_BENCH_HEARTBEAT_S", 20)))


def matches(label: str, name: str) -> bool:
    """Whether ``--first`` name ``name`` selects the grid point ``label``: the label itself, or its model part
    (``lae`` selects ``lae step_size=1e-06`` and ``lae adaptive``)."""
    return label == name or label.startswith(name + " ")


def pick(remaining: list[str], first: tuple, rng: random.Random) -> str:
    """The params key to enqueue: at random among the unfinished trials of the earliest name in ``first`` that has
    any, else among all of ``remaining`` (params keys, bench.sweep.study.params_key)."""
    for name in first:
        mine = [k for k in remaining if matches(json.loads(k)["point"], name)]
        if mine:
            return rng.choice(mine)
    return rng.choice(remaining)


def run_worker(job: Job) -> int:
    """Run trials until every grid point (or n_trials of a tuning sweep) is done. Returns the trials run here."""
    import optuna
    import torch
    from optuna.trial import TrialState

    from lae.train import load_data

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(job.threads)
    spec, storage = load_spec(job.spec_path), open_storage(job.storage_url)  # a torn journal: repaired here
    remove_orphaned_temp_rows(Path(job.results))  # what killed writers left
    budget = spec.budget(job.budget)
    study = create_study(spec, job.budget, job.dataset, storage, job.worker)
    ledger = Ledger(spec, budget, study, job.results)
    points = {p.label: p for p in spec.points(budget)}
    settings = metric_settings(budget)
    rng = random.Random(f"{HOSTNAME}:{os.getpid()}:{time.time()}")
    datasets: dict = {}
    n_run = 0
    while True:
        reap_stale(study, ledger.stored())
        now = ledger.standing()
        if not now.remaining and not now.waiting:
            if not now.live:
                return n_run
            time.sleep(poll_seconds())  # other workers' trials: wait, and take over any whose worker dies
            continue
        if spec.kind == "grid" and now.remaining and not now.waiting:
            study.enqueue_trial(json.loads(pick(now.remaining, job.first, rng)))
        with asking(study):
            trial = study.ask()
            claim(trial, job.worker)
        params = _suggest(trial, spec, list(points), budget.seeds)
        key, now = params_key(params), ledger.standing()
        rivals = [n for n in now.live.get(key, []) if n != trial.number]
        if key in now.done or rivals or (spec.kind == "grid" and key not in ledger.grid):
            trial.set_user_attr(DUPLICATE, "params done or running elsewhere")
            study.tell(trial, state=TrialState.FAIL)
            if rivals:
                time.sleep(rng.uniform(0.0, 0.5))
            continue
        if spec.kind == "grid":
            point, seed, extra = points[params["point"]], params["seed"], {}
        else:
            point, seed, extra = next(iter(points.values())), budget.seeds[0], params
        config = spec.config(point, budget, seed, job.dataset, job.data_dir, extra)
        data_key = (config.dataset, config.preprocessing, config.train_size, config.val_size)
        if data_key not in datasets:
            datasets[data_key] = load_data(config)
        with Heartbeat(trial):
            if spec.trial == "classifier":  # the augmented classifier (bench.sweep.classifier)
                row, value = classifier.run_classifier_trial(
                    spec, budget, point, config, datasets[data_key], settings, trial, job
                )
            else:
                row, value = run_trial(
                    spec,
                    budget,
                    point,
                    config,
                    datasets[data_key],
                    settings,
                    trial,
                    job.storage_url,
                    job.worker,
                    results=job.results,
                )
        row["config_key"] = ledger.keys.get(key)  # failed: final only for this configuration (ledger.config_key)
        store.write_row(job.results, row)  # the row first: a kill before tell() loses nothing (the row counts)
        if row["status"] == "complete":
            study.tell(trial, value)
        elif row["status"] == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            trial.set_user_attr(FINAL, row["error"] or "failed")
            study.tell(trial, state=TrialState.FAIL)
        n_run += 1
        if job.progress:
            now = ledger.standing()
            line = classifier.progress_line if spec.trial == "classifier" else progress_line
            print(line(spec, row, now.n_done, now.total, job.worker), flush=True)


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


def progress_line(spec: Spec, row: dict, n_done: int, total: int, worker: int) -> str:
    """``[<sweep> <done>/<total>] <point> seed=<seed>: <status>, val ... nats, test log-lik (AIS) ..., times``."""
    what = row["point"] if spec.kind == "grid" else f"{spec.axis}={row['axis_value']:.3g}"
    head = f"[{spec.name} {n_done}/{total}] {what} seed={row['seed']}: {row['status']}"
    tail = f" (worker {worker})" + (f"; {row['warnings']}" if row.get("warnings") else "")
    if row["status"] == "fail":
        return f"{head} ({row['error']}){tail}"
    ll = row.get("test_loglik_ais", math.nan)
    return (
        f"{head}, val {row['val_loss']:.2f} nats, test log-lik (AIS) {ll:.2f}, "
        f"{row['train_seconds']:.1f} s train + {row.get('eval_seconds', math.nan):.1f} s eval{tail}"
    )
