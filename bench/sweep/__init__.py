"""Sweeps: a declarative TOML spec (``sweeps/<name>.toml``) run as one Optuna study, every trial recorded in the
results store (``bench.results.store``). See docs/sweeps.md for the spec format and the guarantees, and
docs/architecture.md for the path of one trial.

The modules, in the order a run uses them (each imports only those above it, checks and classifier_spec aside):

- ``spec``: the spec schema (Spec, Budget, Point), where specs live, parse then validate (every RunConfig, memory
  included); ``checks`` and ``classifier_spec`` hold its value checks and its classifier part
- ``durability``: journal lock and repair, storages from URLs, process liveness and dead writers' leftovers, claims,
  heartbeats and stale trials, behind a few functions
- ``study``: the Optuna study (samplers, pruner) and where a sweep stands (``Ledger``: the study and the store)
- ``plan``: the TrialPlan, resolved and checked once in the parent (``make_plan``)
- ``provenance``, ``rows``: what made a row, and the one row builder for every kind of trial
- ``trial``, ``classifier``: what one trial trains and measures (a latent model; the augmented classifier)
- ``worker``: the run loop (claim, train, evaluate, write the row, tell Optuna)
- ``runner``: ``run_sweep``: the plan, the worker processes (reaped as they end), the summary and the exit status
"""

from bench.registry import BUDGETS
from bench.sweep.durability import default_storage, open_storage
from bench.sweep.plan import SweepOptions, TrialPlan, cpu_count, make_plan
from bench.sweep.runner import run_sweep, summarize
from bench.sweep.spec import Budget, Point, Spec, find_spec, load_spec, params_key, project_root, spec_names, sweeps_dir
from bench.sweep.study import study_name

__all__ = [
    "BUDGETS",
    "Budget",
    "Point",
    "Spec",
    "SweepOptions",
    "TrialPlan",
    "cpu_count",
    "default_storage",
    "find_spec",
    "load_spec",
    "make_plan",
    "open_storage",
    "params_key",
    "project_root",
    "run_sweep",
    "spec_names",
    "study_name",
    "summarize",
    "sweeps_dir",
]
