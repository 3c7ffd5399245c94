"""Where a sweep stands: the study's census (bench.sweep.study) merged with the results store.

A grid point is *done* when the store holds a readable row for it (complete, pruned or failed for good), or when a
worker on another host finished it (its row is in that host's results directory; unless that row was quarantined
here). So a grid point whose row file is missing or was quarantined is run again even if Optuna calls it complete,
and committed rows count even when the study (the journal) is gone. A tuning sweep counts Optuna's finished trials."""

from __future__ import annotations

import hashlib
import json
from typing import NamedTuple

from bench.results import store
from bench.sweep.liveness import HOSTNAME
from bench.sweep.spec import Budget, Spec
from bench.sweep.study import HOST, census, params_key


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


def config_key(spec: Spec, budget: Budget, point, seed: int) -> str:
    """A fingerprint of what a grid trial runs: its RunConfig (but the data directory, and the dataset, which names the
    study), its axis value, the budget's metric preset and settings, the classifier's settings. A row holds it
    (``config_key``): a failed row is final only for the configuration that failed."""
    config = spec.config(point, budget, seed).to_dict()
    what = {k: v for k, v in config.items() if k not in ("data_dir", "dataset")}
    blob = [what, point.axis_value, budget.metrics, budget.metric_settings, spec.classifier, budget.classifier]
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Ledger:
    """The standing of one study, reading each row file of the store once (``store.stored_params``' cache)."""

    def __init__(self, spec: Spec, budget: Budget, study, results):
        self.spec, self.budget, self.study, self.results = spec, budget, study, results
        self.grid = grid_keys(spec, budget) if spec.kind == "grid" else []
        points = spec.points(budget) if spec.kind == "grid" else []
        self.keys = {params_key({"point": p.label, "seed": s}): config_key(spec, budget, p, s) for p in points
                     for s in budget.seeds}  # fmt: skip
        self._cache: dict = {}

    def stored(self) -> set[str]:
        """Params keys of the study's readable rows, but a failed row of another configuration than the spec's now
        (its ``config_key``; rows without one are final, as before)."""
        return store.stored_params(self.results, self.spec.name, self.study.study_name, self._cache, self._final)

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
        bad = store.quarantined_trials(self.results, self.spec.name, self.study.study_name)
        elsewhere = {
            params_key(t.params)
            for t in c.finished
            if t.user_attrs.get(HOST) not in (None, HOSTNAME) and t.number not in bad
        }
        done = (self.stored() | elsewhere) & set(self.grid)
        remaining = [k for k in self.grid if k not in done and k not in c.live]
        return Standing(done, c.live, c.waiting, remaining, len(self.grid), len(done))
