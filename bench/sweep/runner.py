"""Run (or resume) a sweep on this machine: check everything that can fail before anything trains, clear what killed
processes left behind (a torn journal, temp row files), spawn the worker processes (they die with this one), reap
each as soon as it ends (so the others take over its trial), and summarize. A sweep does not succeed while a grid
point lacks its row and no live worker runs it; a worker that stops on an error names the cause (disk full, storage
unreachable) in one line."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from pathlib import Path

from bench.errors import BenchError, describe
from bench.results import store
from bench.sweep.ledger import Ledger
from bench.sweep.liveness import remove_orphaned_temp_rows
from bench.sweep.spec import Budget, Spec, load_spec
from bench.sweep.storage import default_storage, open_storage
from bench.sweep.study import count_trials, create_study, reap_stale, study_name
from bench.sweep.trial import metric_settings
from bench.sweep.worker import Job, matches, run_worker
from lae.config import THREADS, RunConfig


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
    first: tuple = (),
) -> dict:
    """Run (or resume) one sweep with ``workers`` processes on this machine, torch threads divided between them
    (``threads`` per worker overrides: default max(1, cores // workers)); ``first``: grid point labels or model names to
    run before the others, in this order (bench.sweep.worker.pick). ``sweeps_dir``: where a sweep name is looked up
    (default: bench.sweep.paths.sweeps_dir()). Returns the summary (``summarize``). BenchError (one line) when a worker
    stopped on an error or a grid point is left without a row."""
    if not isinstance(workers, int) or workers < 1:
        raise BenchError(f"--workers must be a positive integer, got {workers!r}")
    if threads is not None and not THREADS.holds(threads):
        raise BenchError(f"--threads must be {THREADS.describe()}, got {threads!r}")
    spec = load_spec(name, sweeps_dir)
    _check_first(spec, spec.budget(budget), first)
    b = spec.budget(budget)
    trials = len(spec.points(b)) * len(b.seeds) if spec.kind == "grid" else b.n_trials
    if workers > min(cpu_count(), trials):  # more would only wait (or fight for cores)
        most = min(cpu_count(), trials)
        raise BenchError(f"--workers {workers}: at most {most} ({cpu_count()} cores, {trials} trials)")
    dataset = dataset or spec.dataset
    RunConfig(dataset=dataset).validate()
    results = Path(results)
    storage = storage or default_storage(results, spec.name)
    metric_settings(spec.budget(budget))  # unknown metric preset or settings: before anything trains
    _check_data(spec, spec.budget(budget), dataset, data_dir)  # missing files, subset sizes: one line, here
    if spec.trial != "classifier" and metric_settings(spec.budget(budget)).quality_images:
        from bench.metrics import quality

        quality.check_cache()  # unwritable: one line here, not a failed row per trial
    study = study_name(spec, budget, dataset)
    try:
        store.check_writable(results, spec.name, study)  # read-only or full disk: one line, here
    except OSError as exc:
        raise BenchError(f"cannot write results to {results}: {describe(exc)}") from None
    open_storage(storage)  # unreachable storage, torn journal (repaired here, once): before anything trains
    remove_orphaned_temp_rows(results)  # temp files of killed writers (each worker does it too)
    threads = threads or max(1, cpu_count() // workers)
    jobs = [
        Job(str(spec.path), budget, storage, str(results), dataset, data_dir, threads, i, progress, tuple(first))
        for i in range(workers)
    ]
    start = time.perf_counter()
    failures, killed = _run_processes(jobs) if _has_work(spec, budget, storage, dataset, results) else ([], [])
    try:
        summary = summarize(spec, budget, storage, dataset, time.perf_counter() - start, results)
    except BenchError as exc:
        raise BenchError("; ".join([*failures, *killed, str(exc), "rerun the same command to resume"])) from None
    missing = summary["missing"]
    if failures or missing:
        left = f"{len(missing)} of {summary['total']} grid points have no row yet" if missing else ""
        text = "; ".join([*failures, *killed, *filter(None, [left]), "rerun the same command to resume"])
        raise BenchError(store.redact_text(text, (store.url_password(storage),)))
    for line in killed:
        print(f"warning: {line}; the other worker(s) took over its trial", file=sys.stderr, flush=True)
    return summary


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


def _has_work(spec: Spec, budget: str, storage: str, dataset: str, results: Path) -> bool:
    """Whether any trial is left to start or still runs, after reaping the stale ones (a finished sweep is resumed
    without starting workers)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = create_study(spec, budget, dataset, open_storage(storage))
    ledger = Ledger(spec, spec.budget(budget), study, results)
    reap_stale(study, ledger.stored())
    now = ledger.standing()
    return bool(now.remaining or now.live)


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


def _run_processes(jobs: list[Job]) -> tuple[list[str], list[str]]:
    """One spawned process per job; each is joined as soon as it ends (a dead worker must not linger as a zombie
    whose pid looks alive: the others take over its trial at once). -> (one line per worker that stopped on an
    error, one line per worker killed by a signal)."""
    # Workers are fresh processes (spawn), also when there is one: OpenMP reads OMP_WAIT_POLICY when torch loads,
    # and its default busy-waiting makes 2-thread training ~20x slower on a machine whose cores are shared.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    ctx = multiprocessing.get_context("spawn")
    pipes = [ctx.Pipe(duplex=False) for _ in jobs]
    procs = [
        ctx.Process(target=_worker_entry, args=(job, os.getpid(), send), name=f"sweep-worker-{job.worker}")
        for job, (_, send) in zip(jobs, pipes)
    ]
    for p in procs:
        p.start()
    for _, send in pipes:
        send.close()
    failures, killed = [], []
    pending = {p.sentinel: (p, recv) for p, (recv, _) in zip(procs, pipes)}
    try:
        while pending:
            for sentinel in multiprocessing.connection.wait(list(pending)):
                p, recv = pending.pop(sentinel)
                p.join()
                why = _message(recv)
                name = p.name.replace("sweep-", "")
                if p.exitcode is not None and p.exitcode < 0:
                    killed.append(f"{name} was killed ({signal.Signals(-p.exitcode).name})")
                elif p.exitcode:
                    failures.append(f"{name} stopped: {why or f'exit status {p.exitcode}'}")
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    return failures, killed


def _message(recv) -> str | None:
    """The line a worker sent before it exited, if any."""
    try:
        return recv.recv() if recv.poll() else None
    except (EOFError, OSError):
        return None


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel SIGKILLs this worker when the process that spawned it dies (kill -9 of the command kills
    its workers too; their RUNNING trials become stale and the next run reruns them)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _worker_entry(job: Job, parent: int, report) -> None:
    """A worker process: run_worker; an error is sent to the parent as one line (the cause named), exit status 2."""
    _die_with_parent(parent)
    try:
        run_worker(job)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        report.send(describe(exc))
        sys.exit(2)


def summarize(
    spec: Spec, budget: str, storage: str, dataset: str, seconds: float, results: str | os.PathLike = "results"
) -> dict:
    """{sweep, study, storage (password redacted), seconds, trials: {kind: count}, done and total (grid points with
    a row, or finished trials), missing: the params keys without a row that no live worker runs}."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage_obj = open_storage(storage, repair=False)
        study = create_study(spec, budget, dataset, storage_obj)
        now = Ledger(spec, spec.budget(budget), study, results).standing()
        counts = count_trials(study)
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(f"cannot read the study {study_name(spec, budget, dataset)}: {describe(exc)}") from None
    return {
        "sweep": spec.name,
        "study": study.study_name,
        "storage": store.redact_url(storage),
        "seconds": seconds,
        "trials": counts,
        "done": now.n_done,
        "total": now.total,
        "missing": list(now.remaining),
    }
