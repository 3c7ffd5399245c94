"""The Optuna study of a sweep and its trial bookkeeping, all in trial user attributes (``lae:*``).

Study name: ``<sweep>.<budget>.<dataset>``. A grid sweep samples {point} x {seed} with GridSampler, so each point and
seed runs once; a tuning sweep uses TPE and a median pruner fed the validation loss (nats per image) every epoch.

Resume: every running trial records its host, pid and worker and beats a heartbeat (``lae:heartbeat``, Unix seconds,
every ``LAE_BENCH_HEARTBEAT_S``, default 20). A RUNNING trial whose process is gone (same host, pid not alive) or
whose heartbeat is older than ``LAE_BENCH_GRACE_S`` (default 300) is *stale*: its params are enqueued again and it is
marked FAIL (``lae:stale``). A trial whose params are already done, or running in an older live trial, is a
*duplicate* (GridSampler can hand out the same point to two workers in a race): it is marked FAIL (``lae:duplicate``)
without training. A failed trial's reason is ``lae:final``: a recorded failure is final. Grid bookkeeping is by
params, so nothing completed is run twice and nothing is lost.

Optuna's own heartbeat is not used: it exists only on RDBStorage and only inside ``study.optimize`` (``study.ask``
warns when it is on, and a heartbeat cannot be recorded for an asked trial through the public API);
``fail_stale_trials`` fails a trial before its callback runs, so the trial could no longer take ``lae:stale``; and the
dead-pid check is needed on every storage anyway. JournalStorage has no heartbeat (Optuna 5.0)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

from bench.sweep.spec import Spec

HOST, PID, WORKER, HEARTBEAT = "lae:host", "lae:pid", "lae:worker", "lae:heartbeat"
STALE, DUPLICATE, FINAL, RERUN_OF = "lae:stale", "lae:duplicate", "lae:final", "lae:rerun_of"


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


def claim(trial, worker: int) -> None:
    """Record who runs ``trial`` (host, pid, worker) and its first heartbeat."""
    for name, value in ((HOST, socket.gethostname()), (PID, os.getpid()), (HEARTBEAT, time.time()), (WORKER, worker)):
        trial.set_user_attr(name, value)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(trial) -> bool:
    """A RUNNING trial whose worker is gone: same host and dead pid, or no heartbeat for grace_seconds()."""
    attrs = trial.user_attrs
    if attrs.get(HOST) == socket.gethostname() and PID in attrs and not _pid_alive(attrs[PID]):
        return True
    beat = attrs.get(HEARTBEAT) or (trial.datetime_start.timestamp() if trial.datetime_start else None)
    return beat is not None and time.time() - beat > grace_seconds()


def reap_stale(study) -> None:
    """Enqueue the params of every stale RUNNING trial again, then mark it FAIL with ``lae:stale``."""
    import optuna
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(t):
            continue
        study.enqueue_trial(t.params, user_attrs={RERUN_OF: t.number})
        try:
            # The one private call: Optuna's public API sets attributes only on a trial this process asked for
            # (Trial.set_user_attr), and the stale trial belongs to a dead process; a finished trial takes none.
            study._storage.set_trial_user_attr(t._trial_id, STALE, "worker died (stale heartbeat)")
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            pass  # another worker reaped it first


def classify(study) -> tuple[set, dict, int, list]:
    """-> (done params keys, {live running params key: oldest trial number}, number of waiting trials, the finished
    trials that count: complete, pruned, or failed for good (``lae:final``))."""
    from optuna.trial import TrialState

    done, live, waiting, finished = set(), {}, 0, []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            waiting += 1
        elif t.state == TrialState.RUNNING and t.params:
            live.setdefault(params_key(t.params), t.number)
        elif t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
            t.state == TrialState.FAIL and FINAL in t.user_attrs
        ):
            done.add(params_key(t.params))
            finished.append(t)
    return done, live, waiting, finished


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
