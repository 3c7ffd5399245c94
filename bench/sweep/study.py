"""The Optuna study of a sweep, and where the sweep stands.

Study name: ``<sweep>.<budget>.<dataset>``. A grid sweep's trials are {point} x {seed}: the workers enqueue the
unfinished grid points themselves (bench.sweep.worker), so the grid follows the results store as well as the study;
``GridSampler`` only serves a trial asked while the queue is empty. A tuning sweep uses TPE and a median pruner fed
the validation loss (nats per image) every epoch. Who runs a trial, and when it is stale: bench.sweep.durability.

Where a sweep stands (``Ledger.standing``): the study's census merged with the results store. A grid point is *done*
when the store holds a readable row for it (complete, pruned or failed for good), or when a worker on another host
finished it (its row is in that host's results directory; unless that row was quarantined here). So a grid point
whose row file is missing or was quarantined is run again even if Optuna calls it complete, and committed rows count
even when the study (the journal) is gone. A tuning sweep counts Optuna's finished trials."""

from __future__ import annotations

import hashlib
import json
from typing import NamedTuple

import optuna
from optuna.trial import TrialState

from bench.results import store
from bench.sweep.durability import DUPLICATE, FINAL, HOST, HOSTNAME, STALE, is_stale
from bench.sweep.spec import Budget, Spec, config_key, params_key


def study_name(spec: Spec, budget: str, dataset: str) -> str:
    return f"{spec.name}.{budget}.{dataset}"


def grid_sampler(search_space: dict, seed: int = 0):
    """Optuna's GridSampler without its study.stop() in after_trial: we drive the study with ask/tell (stop() raises
    outside optimize()) and stop by our own bookkeeping."""

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values):
            pass

    return GridSampler(search_space, seed=seed)


def grid_study_name(name: str, space: dict, storage) -> str:
    """The Optuna study that holds a grid's trials in ``storage``: ``name``, unless a study of that name holds trials
    over another grid. Optuna fixes a parameter's choices within a study, so a grid whose points or seeds changed (a
    model or seeds added to the spec) cannot resume the study made with the old one: it gets its own study,
    ``<name>@<first 8 hex digits of the grid's hash>``, in the same storage. The rows keep ``name`` (their study and
    directory), and a grid point with a row counts as done whichever Optuna study ran it, so nothing is retrained."""
    if name not in optuna.study.get_all_study_names(storage):
        return name
    for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
        if any(k in t.distributions and list(t.distributions[k].choices) != v for k, v in space.items()):
            return f"{name}@{hashlib.sha256(json.dumps(space).encode()).hexdigest()[:8]}"
    return name


def create_study(spec: Spec, budget: str, dataset: str, storage, worker: int = 0):
    """Create or load the sweep's study: grid (GridSampler over {point} x {seed}, no pruning; in the study
    ``grid_study_name`` picks) or tune (TPE seeded per worker, MedianPruner with the spec's arguments); direction:
    minimize the validation loss."""
    b = spec.budget(budget)
    name = study_name(spec, budget, dataset)
    if spec.kind == "grid":
        space = {"point": [p.label for p in spec.points(b)], "seed": list(b.seeds)}
        sampler = grid_sampler(space, seed=spec.sampler_seed)
        pruner = optuna.pruners.NopPruner()
        name = grid_study_name(name, space, storage)
    else:
        sampler = optuna.samplers.TPESampler(
            seed=spec.sampler_seed + worker, n_startup_trials=int(spec.pruner.get("n_startup_trials", 5))
        )
        pruner = optuna.pruners.MedianPruner(**spec.pruner)
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="minimize",
        load_if_exists=True,
    )


class Census(NamedTuple):
    """The study's trials by bookkeeping kind."""

    done: set  # params keys of finished trials: complete, pruned, or failed for good (lae:final)
    finished: list  # those trials
    live: dict  # params key -> numbers of the RUNNING trials with those params whose worker is not known dead
    waiting: int  # enqueued trials not yet asked for


def census(study) -> Census:
    done, finished, live, waiting = set(), [], {}, 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            waiting += 1
        elif t.state == TrialState.RUNNING and t.params and not is_stale(t):
            live.setdefault(params_key(t.params), []).append(t.number)
        elif t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
            t.state == TrialState.FAIL and FINAL in t.user_attrs
        ):
            done.add(params_key(t.params))
            finished.append(t)
    return Census(done, finished, live, waiting)


def count_trials(study) -> dict:
    """{kind: count}, kind: duplicate, stale, or the state's name in lower case (complete, pruned, fail, ...)."""
    counts: dict = {}
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        kind = "duplicate" if DUPLICATE in attrs else "stale" if STALE in attrs else t.state.name.lower()
        counts[kind] = counts.get(kind, 0) + 1
    return counts


class Standing(NamedTuple):
    done: set  # params keys that are finished (grid: that have their row)
    live: dict  # params key -> numbers of the RUNNING trials with those params
    waiting: int  # enqueued trials not yet asked for
    remaining: list  # grid: params keys neither done nor live; tune: one entry per trial still to start
    total: int  # grid points x seeds, or n_trials
    n_done: int  # grid points done, or trials finished


def grid_keys(spec: Spec, budget: Budget) -> list[str]:
    """The params keys of a grid sweep: every point with every seed, in spec order."""
    return [params_key({"point": p.label, "seed": s}) for p in spec.points(budget) for s in budget.seeds]


class Ledger:
    """The standing of one study, reading each row file of the store once (``store.stored_params``' cache).
    ``name``: the study's name in the rows (``study_name``); the Optuna study ``study`` may be a grid's own
    (``grid_study_name``)."""

    def __init__(self, spec: Spec, budget: Budget, name: str, study, results):
        self.spec, self.budget, self.name, self.study, self.results = spec, budget, name, study, results
        self.grid = grid_keys(spec, budget) if spec.kind == "grid" else []
        points = spec.points(budget) if spec.kind == "grid" else []
        self.keys = {params_key({"point": p.label, "seed": s}): config_key(spec, budget, p, s) for p in points
                     for s in budget.seeds}  # fmt: skip
        self._cache: dict = {}

    def stored(self) -> set[str]:
        """Params keys of the study's readable rows, but a failed row of another configuration than the spec's now
        (its ``config_key``; rows without one are final, as before)."""
        return store.stored_params(self.results, self.spec.name, self.name, self._cache, self._final)

    def _final(self, df):
        if "config_key" not in df.columns:
            return df
        other = df["config_key"].notna() & (df["config_key"] != df["params"].map(self.keys))
        return df[~((df["status"] == "fail") & other)]

    def standing(self) -> Standing:
        c = census(self.study)
        n_live = sum(len(v) for v in c.live.values())
        if self.spec.kind != "grid":
            n = len(c.finished)
            left = max(0, self.budget.n_trials - n - n_live)
            return Standing(c.done, c.live, c.waiting, list(range(left)), self.budget.n_trials, n)
        bad = store.quarantined_trials(self.results, self.spec.name, self.name)
        elsewhere = {
            params_key(t.params)
            for t in c.finished
            if t.user_attrs.get(HOST) not in (None, HOSTNAME) and t.number not in bad
        }
        done = (self.stored() | elsewhere) & set(self.grid)
        remaining = [k for k in self.grid if k not in done and k not in c.live]
        return Standing(done, c.live, c.waiting, remaining, len(self.grid), len(done))
