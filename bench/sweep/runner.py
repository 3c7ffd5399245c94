"""Run (or resume) a sweep on this machine (``run_sweep``): make the plan (bench.sweep.plan: everything that can fail
is checked before anything trains, and what killed processes left behind is cleared), spawn the worker processes
(bench.sweep.worker; they die with this one), reap each as soon as it ends (so the others take over its trial), and
summarize. A sweep does not succeed while a grid point lacks its row and no live worker runs it; a worker that stops
on an error names the cause (disk full, storage unreachable) in one line."""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time

import optuna

from bench.errors import BenchError, describe
from bench.results import store
from bench.sweep import durability
from bench.sweep.plan import SweepOptions, TrialPlan, make_plan
from bench.sweep.spec import Spec
from bench.sweep.study import Ledger, count_trials, create_study, study_name
from bench.sweep.worker import run_worker


def run_sweep(name: str, budget: str = "smoke", **options) -> dict:
    """Run (or resume) sweep ``name`` (a name in the sweeps directory or a path to a .toml spec) at ``budget``;
    ``options``: the other fields of bench.sweep.plan.SweepOptions (storage, workers, results, dataset, data_dir,
    progress, sweeps_dir, threads, first). Returns the summary (``summarize``). BenchError (one line) when a worker
    stopped on an error or a grid point is left without a row."""
    options = SweepOptions(budget=budget, **options)
    plan = make_plan(name, options)
    start = time.perf_counter()
    failures, killed = _run_processes(plan, options.workers) if _has_work(plan) else ([], [])
    try:
        summary = summarize(plan.spec, budget, plan.storage, plan.dataset, time.perf_counter() - start, plan.results)
    except BenchError as exc:
        raise BenchError("; ".join([*failures, *killed, str(exc), "rerun the same command to resume"])) from None
    missing = summary["missing"]
    if failures or missing:
        left = f"{len(missing)} of {summary['total']} grid points have no row yet" if missing else ""
        text = "; ".join([*failures, *killed, *filter(None, [left]), "rerun the same command to resume"])
        raise BenchError(store.redact_text(text, (store.url_password(plan.storage),)))
    for line in killed:
        print(f"warning: {line}; the other worker(s) took over its trial", file=sys.stderr, flush=True)
    return summary


def _has_work(plan: TrialPlan) -> bool:
    """Whether any trial is left to start or still runs, after reaping the stale ones (a finished sweep is resumed
    without starting workers)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = create_study(plan.spec, plan.budget.name, plan.dataset, durability.open_storage(plan.storage))
    ledger = Ledger(plan.spec, plan.budget, plan.study, study, plan.results)
    durability.reap_stale(study, ledger.stored(), plan.param_names)
    now = ledger.standing()
    return bool(now.remaining or now.live)


def _run_processes(plan: TrialPlan, workers: int) -> tuple[list[str], list[str]]:
    """``workers`` spawned processes, each running ``run_worker(plan, i)``; each is joined as soon as it ends (a dead
    worker must not linger as a zombie whose pid looks alive: the others take over its trial at once). -> (one line
    per worker that stopped on an error, one line per worker killed by a signal)."""
    # Workers are fresh processes (spawn), also when there is one: OpenMP reads OMP_WAIT_POLICY when torch loads,
    # and its default busy-waiting makes 2-thread training ~20x slower on a machine whose cores are shared.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    ctx = multiprocessing.get_context("spawn")
    pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]
    procs = [
        ctx.Process(target=_worker_entry, args=(plan, i, os.getpid(), send), name=f"sweep-worker-{i}")
        for i, (_, send) in enumerate(pipes)
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
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _worker_entry(plan: TrialPlan, worker: int, parent: int, report) -> None:
    """A worker process: run_worker; an error is sent to the parent as one line (the cause named), exit status 2."""
    _die_with_parent(parent)
    try:
        run_worker(plan, worker)
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
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage_obj = durability.open_storage(storage, repair=False)
        study = create_study(spec, budget, dataset, storage_obj)
        now = Ledger(spec, spec.budget(budget), study_name(spec, budget, dataset), study, results).standing()
        counts = count_trials(study)
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(f"cannot read the study {study_name(spec, budget, dataset)}: {describe(exc)}") from None
    return {
        "sweep": spec.name,
        "study": study_name(spec, budget, dataset),
        "storage": store.redact_url(storage),
        "seconds": seconds,
        "trials": counts,
        "done": now.n_done,
        "total": now.total,
        "missing": list(now.remaining),
    }
