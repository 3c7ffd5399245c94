"""Run (or resume) a sweep on this machine: check everything that can fail before anything trains, spawn the worker
processes (they die with this one), join them and summarize the study."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path

from bench.errors import BenchError
from bench.results import store
from bench.sweep.spec import Budget, Spec, load_spec
from bench.sweep.storage import default_storage, open_storage
from bench.sweep.study import count_trials, study_name
from bench.sweep.trial import metric_settings
from bench.sweep.worker import Job, run_worker
from lae.config import RunConfig


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_sweep(
    name: str,
    budget: str = "smoke",
    storage: str | None = None,
    workers: int = 1,
    results: str | os.PathLike = "results",
    dataset: str | None = None,
    data_dir: str | None = None,
    progress: bool = True,
    sweeps_dir: str | os.PathLike | None = None,
    threads: int | None = None,
) -> dict:
    """Run (or resume) one sweep with ``workers`` processes on this machine, torch threads divided between them
    (``threads`` per worker overrides: default max(1, cores // workers)). ``sweeps_dir``: where a sweep name is
    looked up (default: bench.sweep.paths.sweeps_dir()). Returns a summary: sweep, study, storage (redacted),
    seconds, and trial counts by kind (bench.sweep.study.count_trials)."""
    if not isinstance(workers, int) or workers < 1:
        raise BenchError(f"--workers must be a positive integer, got {workers!r}")
    spec = load_spec(name, sweeps_dir)
    spec.budget(budget)
    dataset = dataset or spec.dataset
    RunConfig(dataset=dataset).validate()
    results = Path(results)
    storage = storage or default_storage(results, spec.name)
    metric_settings(spec.budget(budget))  # unknown metric preset or settings: before anything trains
    _check_data(spec, spec.budget(budget), dataset, data_dir)  # missing files, subset sizes: one line, here
    open_storage(storage)  # unreachable storage: one line, before anything trains
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise BenchError(f"--threads must be a positive integer, got {threads!r}")
    threads = threads or max(1, cpu_count() // workers)
    jobs = [
        Job(str(spec.path), budget, storage, str(results), dataset, data_dir, threads, i, progress)
        for i in range(workers)
    ]
    start = time.perf_counter()
    _run_processes(jobs)
    return summarize(spec, budget, storage, dataset, time.perf_counter() - start)


def _check_data(spec: Spec, budget: Budget, dataset: str, data_dir: str | None) -> None:
    """Load each distinct dataset of the budget once, so a missing file or an impossible subset size is reported
    (DataError, one line) before any worker starts."""
    from lae.train import load_data

    seen = set()
    for point in spec.points(budget):
        config = spec.config(point, budget, 0, dataset, data_dir, spec.search_lows())
        key = (config.dataset, config.preprocessing, config.train_size, config.val_size)
        if key not in seen:
            seen.add(key)
            load_data(config)


def _run_processes(jobs: list[Job]) -> None:
    """One spawned process per job, joined; BenchError when any of them fails (the command can be rerun)."""
    # Workers are fresh processes (spawn), also when there is one: OpenMP reads OMP_WAIT_POLICY when torch loads,
    # and its default busy-waiting makes 2-thread training ~20x slower on a machine whose cores are shared.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker_entry, args=(job, os.getpid()), name=f"sweep-worker-{job.worker}") for job in jobs
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    bad = [p for p in procs if p.exitcode != 0]
    if bad:
        raise BenchError(
            f"{len(bad)} of {len(procs)} worker(s) failed (exit codes "
            f"{', '.join(str(p.exitcode) for p in bad)}); rerun the same command to resume"
        )


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel SIGKILLs this worker when the process that spawned it dies (kill -9 of the command kills
    its workers too; their RUNNING trials become stale and the next run reruns them)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _worker_entry(job: Job, parent: int) -> None:
    _die_with_parent(parent)
    try:
        run_worker(job)
    except BenchError as exc:
        print(f"error: worker {job.worker}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def summarize(spec: Spec, budget: str, storage: str, dataset: str, seconds: float) -> dict:
    """{sweep, study, storage (password redacted), seconds, trials: {kind: count}} of the sweep's study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name(spec, budget, dataset), storage=open_storage(storage))
    return {
        "sweep": spec.name,
        "study": study.study_name,
        "storage": store.redact_url(storage),
        "seconds": seconds,
        "trials": count_trials(study),
    }
