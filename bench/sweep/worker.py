"""The run loop of one worker process (``run_worker``), top to bottom: claim a grid point, train, evaluate, write the
row, tell Optuna; until the study has nothing left.

Claiming (``next_trial``): a grid worker enqueues one unfinished grid point (chosen at random among those no live
trial holds, so workers spread out; among the points ``--first`` names first, if any of them is unfinished: ``pick``)
whenever the queue is empty, then asks for a trial and claims it at once (bench.sweep.durability.claim_next). After
the params are suggested it checks them: a point already done or held by any other live trial is a duplicate, failed
without training. Two workers that picked the same point both write its params before checking, so at most one of
them can miss the other: never both train it (both may yield; a random pause then lets one go first). When nothing
is left but trials that other live workers run, the worker waits for them, and takes over any whose worker dies.

The row is written before Optuna is told, so a kill between the two loses nothing and the point is not run again (its
row counts)."""

from __future__ import annotations

import json
import os
import random
import time

import optuna
import torch
from optuna.trial import TrialState

from bench.results import store
from bench.sweep import durability
from bench.sweep.classifier import run_classifier_trial
from bench.sweep.durability import DUPLICATE, FINAL, HOSTNAME
from bench.sweep.plan import TrialPlan, matches
from bench.sweep.rows import Outcome, build_row, progress_line
from bench.sweep.spec import params_key
from bench.sweep.study import Ledger, create_study
from bench.sweep.trial import run_latent_trial
from lae.train import load_data

# What a trial trains (Spec.trial) -> the function that trains and measures it:
# (plan, point, config, dataset, trial) -> Outcome.
TRIAL_KINDS = {"latent": run_latent_trial, "classifier": run_classifier_trial}


def poll_seconds() -> float:
    """How often a worker with nothing left to start looks again at the trials other workers run."""
    return min(1.0, float(os.environ.get("LAE_BENCH_HEARTBEAT_S", 20)))


def run_worker(plan: TrialPlan, worker: int = 0) -> int:
    """Run trials until every grid point (or n_trials of a tuning sweep) is done. ``worker``: this process's index
    among the machine's workers. Returns the trials run here."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(plan.threads)
    storage = durability.open_storage(plan.storage)  # a torn journal (a sibling killed mid-write): repaired here
    durability.clear_leftovers(plan.results)  # what killed writers left
    study = create_study(plan.spec, plan.budget.name, plan.dataset, storage, worker)
    ledger = Ledger(plan.spec, plan.budget, plan.study, study, plan.results)
    rng = random.Random(f"{HOSTNAME}:{os.getpid()}:{time.time()}")
    datasets: dict = {}  # (dataset, preprocessing, train_size, val_size) -> Dataset, loaded once per process
    n_run = 0
    while (trial := next_trial(plan, study, ledger, worker, rng)) is not None:
        point, config = plan.trial_config(trial.params)
        data_key = (config.dataset, config.preprocessing, config.train_size, config.val_size)
        if data_key not in datasets:
            datasets[data_key] = load_data(config)
        with durability.Heartbeat(trial):
            outcome = TRIAL_KINDS[plan.spec.trial](plan, point, config, datasets[data_key], trial)
        row = build_row(plan, trial, point, outcome, worker)
        store.write_row(plan.results, row)  # the row first: a kill before tell() loses nothing (the row counts)
        tell(study, trial, outcome)
        n_run += 1
        if plan.progress:
            now = ledger.standing()
            print(progress_line(plan.spec, row, now.n_done, now.total, worker), flush=True)
    return n_run


def next_trial(plan: TrialPlan, study, ledger: Ledger, worker: int, rng: random.Random):
    """The next claimed trial whose params no other trial has done or runs (module docstring); None when the study
    has nothing left to start and no other live worker runs anything."""
    while True:
        durability.reap_stale(study, ledger.stored(), plan.param_names)
        now = ledger.standing()
        if not now.remaining and not now.waiting:
            if not now.live:
                return None
            time.sleep(poll_seconds())  # other workers' trials: wait, and take over any whose worker dies
            continue
        if plan.spec.kind == "grid" and now.remaining and not now.waiting:
            study.enqueue_trial(json.loads(pick(now.remaining, plan.first, rng)))
        trial = durability.claim_next(study, worker)
        key, now = params_key(suggest(trial, plan)), ledger.standing()
        rivals = [n for n in now.live.get(key, []) if n != trial.number]
        if key not in now.done and not rivals and (plan.spec.kind != "grid" or key in ledger.grid):
            return trial
        trial.set_user_attr(DUPLICATE, "params done or running elsewhere")
        study.tell(trial, state=TrialState.FAIL)
        if rivals:
            time.sleep(rng.uniform(0.0, 0.5))


def pick(remaining: list[str], first: tuple, rng: random.Random) -> str:
    """The params key to enqueue: at random among the unfinished trials of the earliest name in ``first`` that has
    any, else among all of ``remaining`` (params keys, bench.sweep.spec.params_key)."""
    for name in first:
        mine = [k for k in remaining if matches(json.loads(k)["point"], name)]
        if mine:
            return rng.choice(mine)
    return rng.choice(remaining)


def suggest(trial, plan: TrialPlan) -> dict:
    """The trial's params: a grid's {point label, seed}, or a tuning sweep's searched fields."""
    if plan.spec.kind == "grid":
        return {
            "point": trial.suggest_categorical("point", list(plan.points)),
            "seed": trial.suggest_categorical("seed", list(plan.budget.seeds)),
        }
    return {
        k: trial.suggest_float(k, float(d["low"]), float(d["high"]), log=bool(d.get("log", False)))
        for k, d in plan.spec.search.items()
    }


def tell(study, trial, outcome: Outcome) -> None:
    """Tell Optuna how the trial ended: its objective, pruned, or failed for good (``lae:final``, the reason)."""
    if outcome.status == "complete":
        study.tell(trial, outcome.value)
    elif outcome.status == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_user_attr(FINAL, outcome.error or "failed")
        study.tell(trial, state=TrialState.FAIL)
