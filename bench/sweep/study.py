"""The Optuna study of a sweep and its trial bookkeeping, all in user attributes (``lae:*``).

Study name: ``<sweep>.<budget>.<dataset>``. A grid sweep's trials are {point} x {seed}: the workers enqueue the
unfinished grid points themselves (bench.sweep.worker), so the grid follows the results store as well as the study;
``GridSampler`` only serves a trial asked while the queue is empty. A tuning sweep uses TPE and a median pruner fed
the validation loss (nats per image) every epoch.

Who runs a trial: right after ``study.ask()`` and before any parameter is suggested, the worker *claims* the trial:
``lae:host``, ``lae:start`` (the process's start tick), ``lae:worker``, ``lae:heartbeat`` (Unix seconds, beaten every
``LAE_BENCH_HEARTBEAT_S``, default 20) and, last, ``lae:pid``. A trial without ``lae:pid`` is *unclaimed*. While a
worker is between ``ask()`` and its claim it holds a study user attribute ``lae:asking:<host>:<pid>`` (None
otherwise).

Stale: a claimed RUNNING trial whose process is gone (same host: pid dead, a zombie, or reused by a later process)
or, on another host, whose heartbeat is older than ``LAE_BENCH_GRACE_S`` (default 300); and an unclaimed RUNNING
trial while no live worker is asking (read in the order trials, askers, trials again, no race can hide a live
asker), or older than the grace period. A stale trial is marked FAIL (``lae:stale``) and its params are enqueued again
(``lae:rerun_of``) unless the store already holds their row. So a kill at any moment, even inside ``ask()``, is seen
at once by the next run. A *duplicate* (the same params done, or running in another live trial) is marked FAIL
(``lae:duplicate``) without training; a failed trial's reason is ``lae:final``: a recorded failure is final.

Optuna's own heartbeat is not used: it exists only on RDBStorage and only inside ``study.optimize``, and the dead-pid
check is needed on every storage anyway. JournalStorage has no heartbeat (Optuna 5.0)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from typing import NamedTuple

from bench.sweep import liveness
from bench.sweep.spec import Spec

HOST, PID, START, WORKER, HEARTBEAT = "lae:host", "lae:pid", "lae:start", "lae:worker", "lae:heartbeat"
STALE, DUPLICATE, FINAL, RERUN_OF = "lae:stale", "lae:duplicate", "lae:final", "lae:rerun_of"
ASKING = "lae:asking:"  # study user attribute prefix: + "<host>:<pid>"


def heartbeat_seconds() -> float:
    """Seconds between heartbeats of a running trial ($LAE_BENCH_HEARTBEAT_S, default 20)."""
    return float(os.environ.get("LAE_BENCH_HEARTBEAT_S", 20))


def grace_seconds() -> float:
    """A heartbeat older than this many seconds marks a trial stale ($LAE_BENCH_GRACE_S, default 300)."""
    return float(os.environ.get("LAE_BENCH_GRACE_S", 300))


def study_name(spec: Spec, budget: str, dataset: str) -> str:
    return f"{spec.name}.{budget}.{dataset}"


def params_key(params: dict) -> str:
    """A trial's params as canonical JSON: the grid's bookkeeping key and the row's ``params`` column."""
    return json.dumps(params, sort_keys=True)


def grid_sampler(search_space: dict, seed: int = 0):
    """Optuna's GridSampler without its study.stop() in after_trial: we drive the study with ask/tell (stop() raises
    outside optimize()) and stop by our own bookkeeping."""
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values):
            pass

    return GridSampler(search_space, seed=seed)


def create_study(spec: Spec, budget: str, dataset: str, storage, worker: int = 0):
    """Create or load the sweep's study: grid (GridSampler over {point} x {seed}, no pruning) or tune (TPE seeded
    per worker, MedianPruner with the spec's arguments); direction: minimize the validation loss."""
    import optuna

    b = spec.budget(budget)
    if spec.kind == "grid":
        space = {"point": [p.label for p in spec.points(b)], "seed": list(b.seeds)}
        sampler = grid_sampler(space, seed=spec.sampler_seed)
        pruner = optuna.pruners.NopPruner()
    else:
        sampler = optuna.samplers.TPESampler(
            seed=spec.sampler_seed + worker, n_startup_trials=int(spec.pruner.get("n_startup_trials", 5))
        )
        pruner = optuna.pruners.MedianPruner(**spec.pruner)
    return optuna.create_study(
        study_name=study_name(spec, budget, dataset),
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="minimize",
        load_if_exists=True,
    )


@contextlib.contextmanager
def asking(study):
    """Mark this process as between ``study.ask()`` and its claim (study user attribute ``lae:asking:<host>:<pid>``)
    for the duration of the block."""
    me = liveness.identity()
    key = f"{ASKING}{me['host']}:{me['pid']}"
    study.set_user_attr(key, {**me, "since": time.time()})
    try:
        yield
    finally:
        study.set_user_attr(key, None)


def claim(trial, worker: int) -> None:
    """Record who runs ``trial`` (host, start tick, worker, first heartbeat, then the pid that makes it claimed)."""
    me = liveness.identity()
    attrs = ((HOST, me["host"]), (START, me["start"]), (WORKER, worker), (HEARTBEAT, time.time()), (PID, me["pid"]))
    for name, value in attrs:
        trial.set_user_attr(name, value)


def _asker_alive(value) -> bool:
    if not isinstance(value, dict):
        return False  # None: not asking
    if value.get("host") == liveness.HOSTNAME:
        return liveness.alive(value.get("pid"), value.get("start"))
    return time.time() - float(value.get("since", 0)) < grace_seconds()


def is_stale(trial) -> bool:
    """A claimed RUNNING trial whose process is gone (this host) or silent for grace_seconds() (another host)."""
    attrs = trial.user_attrs
    if attrs.get(HOST) == liveness.HOSTNAME and PID in attrs:
        return not liveness.alive(attrs[PID], attrs.get(START))
    beat = attrs.get(HEARTBEAT) or (trial.datetime_start.timestamp() if trial.datetime_start else None)
    return beat is not None and time.time() - beat > grace_seconds()


def stale_trials(study) -> list:
    """The stale RUNNING trials of ``study`` (claimed and dead, or unclaimed with no live asker; see above)."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    stale = [t for t in running if is_stale(t)]
    seen = {t.number for t in stale}
    unclaimed = {t.number for t in running if PID not in t.user_attrs and t.number not in seen}
    if unclaimed and not any(_asker_alive(v) for k, v in study.user_attrs.items() if k.startswith(ASKING)):
        again = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        stale += [t for t in again if t.number in unclaimed and PID not in t.user_attrs]
    return stale


def reap_stale(study, done: set | frozenset = frozenset()) -> int:
    """Mark every stale RUNNING trial FAIL with ``lae:stale`` and enqueue its params again (unless they are in
    ``done``: their row is stored). Returns the trials reaped here."""
    import optuna
    from optuna.trial import TrialState

    reaped = 0
    for t in stale_trials(study):
        attrs = t.user_attrs
        why = (
            "worker died before claiming the trial"
            if PID not in attrs
            else "worker process gone"
            if attrs.get(HOST) == liveness.HOSTNAME
            else f"no heartbeat for {grace_seconds():.0f} s"
        )
        try:
            # The one private call: Optuna's public API sets attributes only on a trial this process asked for
            # (Trial.set_user_attr), and the stale trial belongs to a dead process; a finished trial takes none.
            study._storage.set_trial_user_attr(t._trial_id, STALE, why)
            study.tell(t.number, state=TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
            continue  # another worker reaped it first, and enqueued its rerun
        reaped += 1
        if t.params and params_key(t.params) not in done:
            study.enqueue_trial(t.params, user_attrs={RERUN_OF: t.number})
    return reaped


class Census(NamedTuple):
    """The study's trials by bookkeeping kind."""

    done: set  # params keys of finished trials: complete, pruned, or failed for good (lae:final)
    finished: list  # those trials
    live: dict  # params key -> numbers of the RUNNING trials with those params whose worker is not known dead
    waiting: int  # enqueued trials not yet asked for


def census(study) -> Census:
    from optuna.trial import TrialState

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


class Heartbeat:
    """Sets ``lae:heartbeat`` (Unix seconds) of a running trial every heartbeat_seconds(), in a thread."""

    def __init__(self, trial):
        self.trial, self.interval, self.stop_event = trial, heartbeat_seconds(), threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while not self.stop_event.wait(self.interval):
            with contextlib.suppress(Exception):  # finished meanwhile, or a transient storage error
                self.trial.set_user_attr(HEARTBEAT, time.time())

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join()
