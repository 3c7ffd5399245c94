"""The plan of a sweep run, built once in the parent and handed to every worker: the spec, its budget, the grid
points, the metric settings, the storage URL, the results directory, the dataset and the threads per worker, each
resolved and checked before anything trains (``make_plan``). A worker derives nothing from strings again; it only
opens what a process cannot inherit (the storage connection, bench.sweep.durability).

Everything that can fail is checked here and reported as one BenchError line: bad options, a bad spec, unknown
metric settings, missing data or an impossible subset size, an unwritable quality cache or results directory, an
unreachable storage or a torn journal (repaired here, once)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError, describe
from bench.metrics import quality
from bench.metrics.settings import MetricSettings
from bench.results import store
from bench.sweep import durability
from bench.sweep.spec import Budget, Point, Spec, load_spec
from bench.sweep.study import study_name
from lae.config import THREADS, RunConfig
from lae.train import load_data


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep: the ``python -m bench sweep`` options (help text: bench.commands.sweep)."""

    budget: str = "smoke"  # one of bench.registry.BUDGETS
    storage: str | None = None  # Optuna storage URL; None: journal:<results>/optuna/<sweep>.journal
    workers: int = 1  # worker processes on this machine
    results: str | os.PathLike = "results"  # results directory (parquet rows, journal, pictures)
    dataset: str | None = None  # None: the spec's
    data_dir: str | None = None  # None: $LAE_BENCH_DATA
    progress: bool = True  # one line per finished trial
    sweeps_dir: str | os.PathLike | None = None  # where a sweep name is looked up (default: spec.sweeps_dir())
    threads: int | None = None  # torch threads per worker; None: max(1, cores // workers)
    first: tuple = ()  # grid point labels or model names to run before the others, in this order


@dataclass(frozen=True)
class TrialPlan:
    """Everything a worker needs, resolved once (picklable: it crosses to spawned processes)."""

    spec: Spec
    budget: Budget
    study: str  # <sweep>.<budget>.<dataset>
    points: dict[str, Point]  # label -> point, spec order
    settings: MetricSettings  # the budget's preset with its overrides
    storage: str  # Optuna storage URL
    results: Path
    dataset: str
    data_dir: str | None
    threads: int  # torch intra-op threads per worker
    progress: bool
    first: tuple  # grid point labels or model names, run before the others (bench.sweep.worker.pick)

    @property
    def param_names(self) -> tuple[str, ...]:
        """The params every trial of this sweep sets: a grid's point and seed, or a tuning sweep's searched fields."""
        return ("point", "seed") if self.spec.kind == "grid" else tuple(self.spec.search)

    def trial_config(self, params: dict) -> tuple[Point, RunConfig]:
        """A trial's point and RunConfig from its params: a grid's {point, seed}, or a tuning sweep's searched
        fields (on the spec's one point, at the budget's first seed)."""
        if self.spec.kind == "grid":
            point, seed, extra = self.points[params["point"]], params["seed"], {}
        else:
            point, seed, extra = next(iter(self.points.values())), self.budget.seeds[0], params
        return point, self.spec.config(point, self.budget, seed, self.dataset, self.data_dir, extra)


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def metric_settings(budget: Budget) -> MetricSettings:
    """The budget's MetricSettings: its preset with its ``metric_settings`` overrides (BenchError when unknown)."""
    settings = MetricSettings.preset(budget.metrics)
    try:
        return dataclasses.replace(settings, **budget.metric_settings)
    except TypeError as exc:
        raise BenchError(f"budget {budget.name}: metric_settings: {exc}") from None


def matches(label: str, name: str) -> bool:
    """Whether ``--first`` name ``name`` selects the grid point ``label``: the label itself, or its model part
    (``lae`` selects ``lae step_size=1e-06`` and ``lae adaptive``)."""
    return label == name or label.startswith(name + " ")


def make_plan(name: str, options: SweepOptions) -> TrialPlan:
    """Resolve and check one sweep run (module docstring); clears what killed processes left (a torn journal, temp
    row files). BenchError (one line) on anything that would fail later."""
    _check_counts(options)
    spec = load_spec(name, options.sweeps_dir)
    budget = spec.budget(options.budget)
    _check_first(spec, budget, options.first)
    _check_workers(spec, budget, options.workers)
    dataset = options.dataset or spec.dataset
    RunConfig(dataset=dataset).validate()
    results = Path(options.results)
    plan = TrialPlan(
        spec=spec,
        budget=budget,
        study=study_name(spec, budget.name, dataset),
        points={p.label: p for p in spec.points(budget)},
        settings=metric_settings(budget),  # unknown metric preset or settings: before anything trains
        storage=options.storage or durability.default_storage(results, spec.name),
        results=results,
        dataset=dataset,
        data_dir=options.data_dir,
        threads=options.threads or max(1, cpu_count() // options.workers),
        progress=options.progress,
        first=tuple(options.first),
    )
    _check_data(plan)  # missing files, subset sizes: one line, here
    if spec.trial != "classifier" and plan.settings.quality_images:
        quality.check_cache()  # unwritable: one line here, not a failed row per trial
    try:
        store.check_writable(results, spec.name, plan.study)  # read-only or full disk: one line, here
    except OSError as exc:
        raise BenchError(f"cannot write results to {results}: {describe(exc)}") from None
    durability.open_storage(plan.storage)  # unreachable storage, torn journal (repaired here, once)
    durability.clear_leftovers(results)  # temp files of killed writers (each worker does it too)
    return plan


def _check_counts(options: SweepOptions) -> None:
    if not isinstance(options.workers, int) or options.workers < 1:
        raise BenchError(f"--workers must be a positive integer, got {options.workers!r}")
    if options.threads is not None and not THREADS.holds(options.threads):
        raise BenchError(f"--threads must be {THREADS.describe()}, got {options.threads!r}")


def _check_workers(spec: Spec, budget: Budget, workers: int) -> None:
    """At most one worker per core and per trial: more would only wait, or fight for the cores."""
    trials = len(spec.points(budget)) * len(budget.seeds) if spec.kind == "grid" else budget.n_trials
    most = min(cpu_count(), trials)
    if workers > most:
        raise BenchError(f"--workers {workers}: at most {most} ({cpu_count()} cores, {trials} trials)")


def _check_first(spec: Spec, budget: Budget, first: tuple) -> None:
    """Every ``--first`` name selects a grid point of this budget (one line naming the labels otherwise)."""
    if not first:
        return
    if spec.kind != "grid":
        raise BenchError(f"--first orders a grid's points; {spec.name} is a tuning sweep")
    labels = [p.label for p in spec.points(budget)]
    for name in first:
        if not any(matches(label, name) for label in labels):
            raise BenchError(f"--first {name!r} names no point of {spec.name}; its points: {', '.join(labels)}")


def _check_data(plan: TrialPlan) -> None:
    """Load each distinct dataset of the budget once, so a missing file or an impossible subset size is reported
    (DataError, one line) before any worker starts."""
    seen = set()
    for point in plan.points.values():
        config = plan.spec.config(point, plan.budget, 0, plan.dataset, plan.data_dir, plan.spec.search_lows())
        key = (config.dataset, config.preprocessing, config.train_size, config.val_size)
        if key not in seen:
            seen.add(key)
            load_data(config)
