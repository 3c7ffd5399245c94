"""Resume after SIGKILL, two local workers on one study, the distributed mode on a real PostgreSQL server, and the
stale-trial bookkeeping (heartbeat, dead pid) on a journal file and on SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter

import optuna
import pytest
from conftest import bench_cli, bench_popen, wait_for

from bench import sweep
from bench.results import store
from bench.sweep import durability
from bench.sweep.study import count_trials


def grid_keys(spec_path, budget="smoke"):
    spec = sweep.load_spec(str(spec_path))
    b = spec.budget(budget)
    return sorted(sweep.params_key({"point": p.label, "seed": s}) for p in spec.points(b) for s in b.seeds)


def complete_params(storage_url: str, name: str) -> Counter:
    study = optuna.load_study(study_name=name, storage=sweep.open_storage(storage_url))
    return Counter(json.dumps(t.params, sort_keys=True) for t in study.trials if t.state.name == "COMPLETE")


def assert_each_point_once(results, sweep_name, keys, storage_url, study_name):
    rows = store.read_rows(results, sweep_name)
    assert sorted(rows["params"]) == keys  # every grid point has its row, none twice after dedupe
    assert (rows["status"] == "complete").all(), rows[["point", "error"]]
    raw = store.read_rows(results, sweep_name, dedupe=False)
    assert set(raw["params"]) == set(keys)
    assert complete_params(storage_url, study_name) == Counter(keys)  # Optuna: each point complete exactly once
    return rows, raw


def _running_trial(storage_url, name):
    try:
        study = optuna.load_study(study_name=name, storage=sweep.open_storage(storage_url))
    except KeyError:
        return None
    return [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING" and t.params]


@pytest.mark.slow
def test_sigkill_mid_trial_then_rerun_finishes_each_point_once(tiny_spec, tmp_path):
    spec = tiny_spec(epochs=40, train_size=1000)  # trials of a few seconds, so the kill lands mid-trial
    results = tmp_path / "r"
    storage = sweep.default_storage(results, "tiny")
    keys = grid_keys(spec)
    proc = bench_popen("sweep", spec, "--results", results, "--no-leaderboard")
    try:
        # at least one row written and a later trial running: kill it in the middle of that trial
        def mid_trial():
            done = list(store.parquet_dir(results, "tiny").rglob("*.parquet"))
            running = _running_trial(storage, "tiny.smoke.digits") if done else None
            return running if running and running[0].params else None

        running = wait_for(mid_trial, timeout=300, interval=0.5)
        assert running, "the sweep never reached a second trial"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = running[0]
    rows_before = store.read_rows(results, "tiny")
    assert 1 <= len(rows_before) < len(keys)
    assert killed.params and json.dumps(killed.params, sort_keys=True) not in set(rows_before["params"])
    assert not list(store.parquet_dir(results, "tiny").rglob(".*.tmp"))  # nothing partial is visible
    rerun = bench_cli("sweep", spec, "--results", results, "--no-leaderboard")
    assert rerun.returncode == 0, rerun.stderr
    rows, raw = assert_each_point_once(results, "tiny", keys, storage, "tiny.smoke.digits")
    before = rows_before.set_index("params")["timestamp"]
    assert (rows.set_index("params").loc[before.index, "timestamp"] == before).all()  # completed rows kept, not redone
    study = optuna.load_study(study_name="tiny.smoke.digits", storage=sweep.open_storage(storage))
    stale = [t for t in study.trials if "lae:stale" in t.user_attrs]
    assert [t.number for t in stale] == [killed.number] and stale[0].state.name == "FAIL"
    assert len(raw) == len(keys)  # the killed trial had written no row: nothing to dedupe


@pytest.mark.slow
def test_two_local_workers_share_one_study(tiny_spec, tmp_path):
    spec = tiny_spec(values=(1e-4, 3e-4, 1e-3), seeds=3)  # 12 trials
    results = tmp_path / "r"
    summary = sweep.run_sweep(str(spec), "smoke", workers=2, results=results, progress=False)
    keys = grid_keys(spec)
    _, raw = assert_each_point_once(results, "tiny", keys, sweep.default_storage(results, "tiny"), "tiny.smoke.digits")
    assert len(raw) == len(keys)  # no grid point trained twice
    workers = {w.rsplit("/", 1)[1] for w in raw["worker"]}
    assert workers == {"0", "1"}  # both workers did work
    assert set(raw["threads"]) == {max(1, sweep.cpu_count() // 2)}
    assert summary["trials"].get("complete") == len(keys)


@pytest.mark.slow
@pytest.mark.postgres
def test_distributed_workers_on_postgresql(postgres_url, tiny_spec, tmp_path):
    """Two workers started independently with the same command and the same PostgreSQL URL (the multi-machine
    mode): each grid point exactly once, and the password appears nowhere in output, parquet or leaderboards."""
    spec = tiny_spec(values=(1e-4, 3e-4, 1e-3), seeds=3)
    results = tmp_path / "r"
    password = postgres_url.split(":")[2].split("@")[0]
    procs = [bench_popen("sweep", spec, "--storage", postgres_url, "--results", results) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert password not in out + err
    keys = grid_keys(spec)
    _, raw = assert_each_point_once(results, "tiny", keys, postgres_url, "tiny.smoke.digits")
    assert len({w.split("/")[0] for w in raw["worker"]}) == 2  # both processes trained
    assert raw["storage"].str.contains(r"\*\*\*").all()
    for path in results.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("backend", ["journal", "sqlite"])
def test_stale_trials_fail_and_their_params_are_enqueued_again(tmp_path, monkeypatch, backend):
    """The bookkeeping alone, no training: a trial silent for longer than the grace period (another host) and one
    whose pid is dead (this host) are stale; a live one with a beating heartbeat is not, and reaping twice is once."""
    monkeypatch.setenv("LAE_BENCH_GRACE_S", "60")
    monkeypatch.setenv("LAE_BENCH_HEARTBEAT_S", "0.05")
    url = f"journal:{tmp_path / 's.journal'}" if backend == "journal" else f"sqlite:///{tmp_path / 's.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=sweep.open_storage(url))
    live, silent, dead = trials = [study.ask() for _ in range(3)]
    for i, trial in enumerate(trials):
        trial.suggest_int("x", i, i)
        durability.claim(trial, worker=0)
    silent.set_user_attr(durability.HOST, "another-host")
    silent.set_user_attr(durability.HEARTBEAT, time.time() - 120)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead.set_user_attr(durability.PID, gone.pid)
    before = live.user_attrs[durability.HEARTBEAT]
    with durability.Heartbeat(live):  # beats every 0.05 s
        assert wait_for(lambda: study.trials[0].user_attrs[durability.HEARTBEAT] > before, timeout=30)
    durability.reap_stale(study)
    durability.reap_stale(study)
    states = {t.number: t.state.name for t in study.trials}
    assert states == {0: "RUNNING", 1: "FAIL", 2: "FAIL", 3: "WAITING", 4: "WAITING"}
    assert [t.number for t in study.trials if durability.STALE in t.user_attrs] == [1, 2]
    assert [t.user_attrs.get(durability.RERUN_OF) for t in study.trials[3:]] == [1, 2]
    assert count_trials(study) == {"running": 1, "stale": 2, "waiting": 2}


def test_a_trial_killed_between_its_two_suggestions_is_not_enqueued_half(tmp_path):
    """A grid worker killed after suggesting ``point`` and before ``seed`` leaves a RUNNING trial with half its params
    (test_faults.py's seeded kills hit it once, in 1 of 12 kills). Reaped, it is failed and not enqueued: an enqueued
    {point} would make the grid sampler refuse the next trial's ``seed`` (ValueError, the worker dead on a
    traceback). The next ask gets a whole grid point; a whole stale trial is still enqueued again."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = {"point": ["a", "b"], "seed": [0, 1]}
    study = optuna.create_study(
        storage=sweep.open_storage(f"journal:{tmp_path / 's.journal'}"), sampler=optuna.samplers.GridSampler(grid)
    )
    gone = subprocess.Popen(["true"])
    gone.wait()
    half, whole = study.ask(), study.ask()
    half.suggest_categorical("point", grid["point"])
    for name in grid:
        whole.suggest_categorical(name, grid[name])
    for trial in (half, whole):
        durability.claim(trial, worker=0)
        trial.set_user_attr(durability.PID, gone.pid)
    assert durability.reap_stale(study, names=("point", "seed")) == 2
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs[durability.RERUN_OF] for t in waiting] == [whole.number]
    for _ in range(2):  # the rerun of `whole`, then a fresh grid point
        trial = study.ask()
        params = {name: trial.suggest_categorical(name, grid[name]) for name in grid}
        assert params["point"] in grid["point"] and params["seed"] in grid["seed"]
