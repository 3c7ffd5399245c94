"""Sweeps: a declarative TOML spec (``sweeps/<name>.toml``) run as one Optuna study, every trial recorded in the
results store (``bench.results.store``). See docs/sweeps.md for the spec format and the guarantees.

One module per job, each importing only lower ones:

- ``paths``: the project root and its ``sweeps/`` (resolved when called)
- ``spec``: the spec schema (Spec, Budget, Point); parse, then validate
- ``storage``: Optuna storages from URLs (journal file, SQLite, PostgreSQL)
- ``study``: the study, its samplers, and the trial bookkeeping (heartbeats, stale and duplicate trials)
- ``provenance``: git commit, library versions, machine
- ``trial``: one trial (train, measure) and its row
- ``worker``: the ask/tell loop of one worker process
- ``runner``: checks, worker processes, the summary (``run_sweep``)
"""

from bench.registry import BUDGETS
from bench.sweep.paths import find_spec, project_root, spec_names, sweeps_dir
from bench.sweep.runner import cpu_count, run_sweep, summarize
from bench.sweep.spec import Budget, Point, Spec, load_spec
from bench.sweep.storage import default_storage, open_storage
from bench.sweep.study import params_key, study_name

__all__ = [
    "BUDGETS",
    "Budget",
    "Point",
    "Spec",
    "cpu_count",
    "default_storage",
    "find_spec",
    "load_spec",
    "open_storage",
    "params_key",
    "project_root",
    "run_sweep",
    "spec_names",
    "study_name",
    "summarize",
    "sweeps_dir",
]
