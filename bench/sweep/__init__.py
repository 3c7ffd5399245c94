"""Sweeps: a declarative TOML spec (``sweeps/<name>.toml``) run as one Optuna study, every trial recorded in the
results store (``bench.results.store``). See docs/sweeps.md for the spec format and the guarantees.

One module per job, each importing only lower ones:

- ``paths``: the project root and its ``sweeps/`` (resolved when called)
- ``checks``: type and range checks of raw spec values (metric settings, grid values, search space, pruner)
- ``spec``: the spec schema (Spec, Budget, Point); parse, then validate (every RunConfig, memory included)
- ``journal``: the journal file's flock lock, appends that never tear, torn-record repair, stale Optuna locks
- ``storage``: Optuna storages from URLs (journal file, SQLite, PostgreSQL with psycopg 3)
- ``liveness``: process identity and liveness (zombies and reused pids are dead), temp files of dead writers
- ``study``: the study, its samplers, and the trial bookkeeping (asking, claims, heartbeats, stale and duplicate
  trials)
- ``ledger``: where a sweep stands, the study merged with the results store (a grid point is done when its row is)
- ``provenance``: git commit, library versions, machine
- ``trial``: one trial (train, measure) and its row
- ``worker``: the pick/ask/claim/tell loop of one worker process
- ``runner``: checks, worker processes (reaped as they end), the summary and the exit status (``run_sweep``)
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
