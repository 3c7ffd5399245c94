"""Nothing lost under faults: seeded random SIGKILLs of a sweep, a kill before the trial is claimed, a killed worker,
torn journals, corrupt and missing row files, a missing journal, leftovers of killed processes, a full disk, a
runaway loss. Each fault is real (real processes killed, real files cut, a real tmpfs filled), and after the rerun
every grid point has exactly one readable row."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from conftest import TINY_BUDGET, TINY_SPEC, PostgresServer, bench_cli, bench_popen, wait_for

from bench import sweep
from bench.results import store
from bench.sweep import durability
from bench.sweep.plan import SweepOptions, make_plan
from bench.sweep.study import create_study, grid_keys
from bench.sweep.worker import run_worker

pytestmark = pytest.mark.usefixtures("one_thread")


def keys_of(spec_path: Path) -> list[str]:
    spec = sweep.load_spec(str(spec_path))
    return grid_keys(spec, spec.budget("smoke"))


def assert_every_point_once(results: Path, name: str, spec_path: Path) -> None:
    """Every grid point has exactly one row, every row file is readable and complete, nothing partial is left."""
    raw = store.read_rows(results, name, dedupe=False)
    assert Counter(raw["params"]) == Counter(keys_of(spec_path)), raw[["params", "trial"]]
    assert (raw["status"] == "complete").all(), raw[["point", "error"]]
    assert not (results / "quarantine").exists()  # read_rows found no unreadable file
    assert not list(store.parquet_dir(results, name).rglob(".*.tmp"))


def load_study(results: Path, name: str):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = sweep.default_storage(results, name)
    return optuna.load_study(study_name=f"{name}.smoke.digits", storage=sweep.open_storage(url))


def stderr_lines(run) -> list[str]:
    assert "Traceback" not in run.stderr, run.stderr
    return [ln for ln in run.stderr.splitlines() if ln.strip()]


@pytest.mark.slow
def test_seeded_random_kills_lose_nothing(tiny_spec, tmp_path):
    """10 SIGKILLs of a sweep's worker at seeded random moments, each followed by a rerun: after every rerun each grid
    point has exactly one readable row, and no row written before a kill is lost. The worker is the process that
    asks, claims, trains, writes rows and tells (killing the command kills it the same way, by PR_SET_PDEATHSIG);
    it is forked from a preloaded forkserver, so a kill costs a fraction of a second rather than an interpreter
    start."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(
        ["bench.sweep.worker", "bench.metrics", "lae.train", "sklearn.linear_model", "torchattacks"]
    )
    rng = random.Random(20240611)
    results, kills, rows_lost, at_kill = tmp_path / "r", 0, 0, []
    for i in range(20):  # until 10 kills have hit a live worker (a late moment may find it done)
        if kills == 10:
            break
        name = f"kill{i}"
        spec = tiny_spec(name=name, seeds=2)  # 6 trials: the first row after ~1.5 s, then one every ~0.25 s
        options = SweepOptions(results=results, dataset="digits", threads=1, progress=False)
        plan = make_plan(str(spec), options)
        victim = ctx.Process(target=run_worker, args=(plan, 0))
        victim.start()
        time.sleep(rng.uniform(0.0, 3.0))  # from the worker's start to about its last trial
        victim.kill()
        victim.join()
        before = {p.name for p in store.row_files(store.parquet_dir(results, name))}
        if victim.exitcode == -signal.SIGKILL:
            kills += 1
            at_kill.append(len(before))
        rerun = ctx.Process(target=run_worker, args=(plan, 0))
        rerun.start()
        rerun.join(timeout=300)
        assert rerun.exitcode == 0
        summary = sweep.summarize(sweep.load_spec(str(spec)), "smoke", plan.storage, "digits", 0.0, results)
        after = {p.name for p in store.row_files(store.parquet_dir(results, name))}
        rows_lost += len(before - after)
        assert summary["done"] == summary["total"] == 6 and not summary["missing"], summary
        assert_every_point_once(results, name, spec)
    print(f"\nkills survived: {kills}, rows written before each kill: {at_kill}, rows lost: {rows_lost}")
    assert kills == 10 and rows_lost == 0


def _ask_and_die(spec: Path, results: Path, suggest: bool) -> None:
    """A process (forked from this one) that creates a trial the way a worker does, with or without its params, then
    dies at once, before claiming it."""
    pid = os.fork()
    if pid == 0:  # the child: no cleanup, no exception may escape
        try:
            spec_ = sweep.load_spec(str(spec))
            url = sweep.default_storage(results, spec_.name)
            study = create_study(spec_, "smoke", "digits", sweep.open_storage(url))
            trial = study.ask()
            if suggest:
                trial.suggest_categorical("point", [p.label for p in spec_.points(spec_.budget("smoke"))])
                trial.suggest_categorical("seed", [0])
        finally:
            os._exit(9)
    assert os.waitpid(pid, 0)[1] >> 8 == 9


def test_a_kill_before_the_claim_is_stale_at_once(tiny_spec, tmp_path, monkeypatch):
    """Killed after ask() (with or without its params suggested) but before recording who runs the trial: the rerun
    sees the trial stale at once (not after the 300 s grace period, here an hour) and runs every grid point."""
    monkeypatch.setenv("LAE_BENCH_GRACE_S", "3600")
    spec, results = tiny_spec(seeds=1), tmp_path / "r"
    _ask_and_die(spec, results, suggest=True)
    _ask_and_die(spec, results, suggest=False)
    running = [t for t in load_study(results, "tiny").trials if t.state.name == "RUNNING"]
    assert len(running) == 2 and not any(durability.PID in t.user_attrs for t in running)
    start = time.perf_counter()
    summary = sweep.run_sweep(str(spec), "smoke", results=results, progress=False)
    assert time.perf_counter() - start < 120
    assert summary["trials"] == {"complete": 3, "stale": 2} and summary["done"] == 3
    assert_every_point_once(results, "tiny", spec)


def test_an_unclaimed_trial_waits_for_a_live_asker(tmp_path):
    """The stale rule's guard: while a live worker is between ask() and its claim, an unclaimed trial may be its
    own, so it is not reaped; once no live worker is asking, it is; a claimed trial of a live process never is."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=sweep.open_storage(f"journal:{tmp_path / 's.journal'}"))
    unclaimed, claimed = study.ask(), study.ask()
    durability.claim(claimed, worker=0)
    with durability.asking(study):
        assert durability.stale_trials(study) == []
    assert [t.number for t in durability.stale_trials(study)] == [unclaimed.number]
    dead = subprocess.Popen(["true"])
    dead.wait()
    study.set_user_attr(
        f"{durability.ASKING}{durability.HOSTNAME}:{dead.pid}",
        {"host": durability.HOSTNAME, "pid": dead.pid, "since": time.time()},
    )
    assert [t.number for t in durability.stale_trials(study)] == [unclaimed.number]  # a dead asker does not count


def test_a_zombie_is_dead_and_a_reused_pid_is_not_its_process():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert wait_for(lambda: not durability.alive(child.pid), timeout=60)  # exited, not yet reaped: a zombie
    assert Path(f"/proc/{child.pid}").exists()  # still in the process table
    child.wait()
    me = durability.identity()
    assert durability.alive(me["pid"], me["start"]) and not durability.alive(me["pid"], me["start"] + 1)


@pytest.mark.slow
def test_a_killed_worker_is_taken_over_by_the_other(tiny_spec, tmp_path):
    """`--workers 2`, one worker SIGKILLed mid-trial: the command reaps it at once, the other worker reruns its trial,
    the command succeeds with one warning line, and every grid point has exactly one row."""
    spec = tiny_spec(seeds=1, epochs=15, train_size=1000)  # 3 trials of about a second
    results = tmp_path / "r"
    proc = bench_popen("sweep", spec, "--results", results, "--no-leaderboard", "--workers", "2", "--no-progress")

    def two_running():
        log = results / "optuna" / "tiny.journal"
        if not log.exists() or log.stat().st_size == 0:
            return None
        try:
            running = [t for t in load_study(results, "tiny").trials if t.state.name == "RUNNING" and t.params]
        except KeyError:
            return None
        pids = {t.user_attrs.get(durability.PID) for t in running} - {None}
        return running if len(pids) == 2 else None

    try:
        running = wait_for(two_running, timeout=300, interval=0.2)
        assert running, "the two workers never ran trials at the same time"
        victim = running[0]
        os.kill(victim.user_attrs[durability.PID], signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = stderr_lines(subprocess.CompletedProcess([], 0, out, err))
    assert len(lines) == 1 and "was killed (SIGKILL)" in lines[0] and "took over" in lines[0]
    assert_every_point_once(results, "tiny", spec)
    stale = [t for t in load_study(results, "tiny").trials if durability.STALE in t.user_attrs]
    assert [t.number for t in stale] == [victim.number]


@pytest.fixture(scope="module")
def finished_once(tmp_path_factory) -> tuple[Path, Path]:
    """(spec, results) of the tiny sweep (3 points) run to the end once for the module, by the command."""
    base = tmp_path_factory.mktemp("finished")
    spec = base / "sweeps" / "tiny.toml"
    spec.parent.mkdir()
    budget = TINY_BUDGET.format(train_size=300, epochs=1, seeds=1)
    spec.write_text(TINY_SPEC.format(values=[1e-4, 1e-3], mh="true", budget=budget))
    run = bench_cli("sweep", spec, "--results", base / "r", "--no-leaderboard", "--no-progress")
    assert run.returncode == 0, run.stderr
    return spec, base / "r"


@pytest.fixture
def finished(finished_once, tmp_path) -> tuple[Path, Path]:
    """A copy of the finished sweep's results (journal and rows) for one test to damage."""
    spec, results = finished_once
    shutil.copytree(results, tmp_path / "r")
    return spec, tmp_path / "r"


@pytest.mark.parametrize("tear", ["cut", "glued"])
def test_a_torn_journal_is_repaired_and_the_sweep_resumes(finished, tear, capfd):
    """The journal's last record cut (a kill or a full disk), or cut and then followed by another process's whole
    record: the rerun repairs it (one warning line, the original kept beside it) and finishes the grid."""
    spec, results = finished
    log = results / "optuna" / "tiny.journal"
    rows = store.row_files(store.parquet_dir(results, "tiny"))
    rows[0].unlink()  # one point to run again
    data = log.read_bytes()
    torn = data[:-40]
    if tear == "glued":
        marker = next(ln for ln in data.splitlines(keepends=True) if b"lae:asking" in ln and b"null" in ln)
        torn += marker  # half a record, then a whole one on the same line
    log.write_bytes(torn)
    capfd.readouterr()
    sweep.run_sweep(str(spec), "smoke", results=results, progress=False)
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"warning: journal {log} held a torn record"), lines
    backups = list(log.parent.glob("tiny.journal.torn-*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == torn
    assert_every_point_once(results, "tiny", spec)
    assert durability.repair_journal(log) is None  # whole now


def test_journal_repair_keeps_every_whole_record(tmp_path):
    """The repair itself on a real journal: whole records kept (a glued one salvaged), torn bytes dropped."""
    log = tmp_path / "j.journal"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=sweep.open_storage(f"journal:{log}"))
    for x in (1.0, 2.0, 3.0):
        study.enqueue_trial({"x": x})
    whole = log.read_bytes()
    lines = whole.splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]) + lines[-1][:25] + lines[-1])  # torn, then the whole record glued on
    warning = durability.repair_journal(log)
    assert warning and "torn record (25 bytes" in warning
    assert log.read_bytes() == whole
    log.write_bytes(whole + b'{"op_code":5,"wor')  # a torn end
    assert durability.repair_journal(log) and log.read_bytes() == whole
    study = optuna.load_study(study_name="s", storage=sweep.open_storage(f"journal:{log}"))
    assert [t.system_attrs["fixed_params"]["x"] for t in study.trials] == [1.0, 2.0, 3.0]


def test_unreadable_rows_are_quarantined_and_their_points_rerun(finished, capfd):
    """A truncated and a garbage row file: each is named in one warning line, moved aside (never deleted), left out
    of the rows; the rerun runs those two points again (Optuna calls them complete, the store does not)."""
    spec, results = finished
    first, second, _ = store.row_files(store.parquet_dir(results, "tiny"))
    first.write_bytes(first.read_bytes()[:300])
    second.write_bytes(b"not a parquet file at all")
    rows = store.read_rows(results, "tiny")
    assert len(rows) == 1
    warnings = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("warning: unreadable row file")]
    assert len(warnings) == 2 and all("moved to" in w and "left out of every table" in w for w in warnings)
    moved = sorted(p.name for p in (results / "quarantine").rglob("*.parquet"))
    assert moved == sorted([first.name, second.name])
    summary = sweep.run_sweep(str(spec), "smoke", results=results, progress=False)
    assert summary["trials"] == {"complete": 5} and summary["done"] == 3  # 3 before, 2 run again
    raw = store.read_rows(results, "tiny", dedupe=False)
    assert Counter(raw["params"]) == Counter(keys_of(spec)) and (raw["status"] == "complete").all()


def test_committed_rows_count_when_the_journal_is_missing(finished):
    """Journal deleted: the rerun trains nothing; journal and one row deleted: it trains exactly that point."""
    spec, results = finished
    log = results / "optuna" / "tiny.journal"
    before = {p.name for p in store.row_files(store.parquet_dir(results, "tiny"))}
    log.unlink()
    summary = sweep.run_sweep(str(spec), "smoke", results=results, progress=False)
    assert summary["trials"] == {} and summary["done"] == summary["total"] == 3  # nothing trained
    assert {p.name for p in store.row_files(store.parquet_dir(results, "tiny"))} == before
    log.unlink()
    gone = store.row_files(store.parquet_dir(results, "tiny"))[0]
    point = store.read_row_file(results, gone)["params"].iloc[0]
    gone.unlink()
    summary = sweep.run_sweep(str(spec), "smoke", results=results, progress=False)
    assert summary["trials"] == {"complete": 1} and summary["done"] == 3
    assert [json.dumps(t.params, sort_keys=True) for t in load_study(results, "tiny").trials] == [point]
    assert_every_point_once(results, "tiny", spec)


def test_stale_locks_and_orphaned_temp_files_are_removed(finished, capfd):
    """A leftover Optuna lock older than its grace period and temp row files of dead processes are removed by the next
    run (no 30 s stall); a temp file of a live process is kept."""
    spec, results = finished
    log = results / "optuna" / "tiny.journal"
    lock = Path(f"{log}.lock")
    lock.symlink_to(log)
    old = time.time() - 120
    os.utime(lock, (old, old), follow_symlinks=False)
    folder = store.parquet_dir(results, "tiny") / "tiny.smoke.digits"
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = durability.HOSTNAME
    orphan = folder / f".t00007-{host}-{dead.pid}-0123abcd.parquet.{dead.pid}-89abcdef.tmp"
    probe = folder / f".probe-{host}.{dead.pid}-0123abcd.tmp"
    live = folder / f".t00008-{host}-{os.getpid()}-0123abcd.parquet.{os.getpid()}-89abcdef.tmp"
    for path in (orphan, probe, live):
        path.write_bytes(b"")
    start = time.perf_counter()
    capfd.readouterr()
    sweep.run_sweep(str(spec), "smoke", results=results, progress=False)
    assert time.perf_counter() - start < 25 and capfd.readouterr().err == ""
    assert not lock.is_symlink() and not orphan.exists() and not probe.exists() and live.exists()


def test_a_runaway_loss_is_a_failed_trial_for_every_family(tiny_spec, tmp_path):
    """lr 1e8: every trial (LAE and VAE) fails as diverged with its reason, and the sweep records every point."""
    spec = tiny_spec(seeds=1)
    spec.write_text(spec.read_text().replace("hidden = 64\n", "hidden = 64\nlr = 1e8\n", 1))
    summary = sweep.run_sweep(str(spec), "smoke", results=tmp_path / "r", progress=False)
    rows = store.read_rows(tmp_path / "r", "tiny")
    assert summary["trials"] == {"fail": 3} and set(rows["model"]) == {"lae", "vae"}
    assert (rows["status"] == "fail").all() and rows["error"].str.startswith("diverged: ").all(), rows["error"]


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a tmpfs cannot be mounted: not running as root")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here: {mount.stderr.decode().strip()}")


@pytest.mark.slow
def test_a_full_disk_stops_the_sweep_in_one_line_and_the_rerun_finishes(tiny_spec, tmp_path):
    """Results on a 3 MB tmpfs filled to its last 60 KB: the sweep stops with one line naming the full disk (exit
    2), keeps every row it wrote readable, and once space is freed the rerun finishes every grid point once."""
    mnt = tmp_path / "full"
    _mount_tmpfs(mnt, "3m")
    try:
        spec, results = tiny_spec(seeds=2), mnt / "r"
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (free - 60_000))
        run = bench_cli("sweep", spec, "--results", results, "--no-leaderboard", "--no-progress")
        lines = stderr_lines(run)
        assert run.returncode == 2 and len(lines) == 1, run.stderr
        assert lines[0].startswith("error: ") and "disk full" in lines[0] and "rerun the same command" in lines[0]
        written = store.read_rows(results, "tiny", dedupe=False)
        assert 1 <= len(written) < 6 and not (results / "quarantine").exists()
        log = results / "optuna" / "tiny.journal"
        assert durability.repair_journal(log) is None  # the journal is whole: a failed append is cut back off
        size = log.stat().st_size
        with pytest.raises(OSError, match="No space left"):
            durability.JournalFile(log).append_logs([{"op_code": 0, "pad": "x" * 200_000}])
        assert log.stat().st_size == size and durability.repair_journal(log) is None
        filler.unlink()
        again = bench_cli("sweep", spec, "--results", results, "--no-leaderboard", "--no-progress")
        assert again.returncode == 0, again.stderr
        assert_every_point_once(results, "tiny", spec)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_storage_outage_stops_the_sweep_in_one_line_and_the_rerun_finishes(tiny_spec, tmp_path):
    """The PostgreSQL server stops while a trial trains: the command ends with one line naming the unreachable
    storage (exit 2, no password); with the server back, the rerun finishes every grid point once."""
    server = PostgresServer()
    try:
        spec, results = tiny_spec(seeds=1, epochs=5, train_size=1000), tmp_path / "r"
        proc = bench_popen("sweep", spec, "--storage", server.url, "--results", results, "--no-leaderboard")

        def training():
            try:
                study = optuna.load_study(study_name="tiny.smoke.digits", storage=sweep.open_storage(server.url))
            except Exception:  # the study does not exist yet
                return False
            return any(t.state.name == "RUNNING" and t.params for t in study.trials)

        try:
            seen = wait_for(lambda: training() or proc.poll() is not None, timeout=300, interval=0.2)
            if proc.poll() is not None:  # ended before a trial was seen running: say how
                raise AssertionError(f"the sweep ended (exit {proc.returncode}) first: {proc.stderr.read()}")
            assert seen, "no trial seen running within 300 s"
            server.stop()
            out, err = proc.communicate(timeout=300)
        finally:
            proc.kill()
        lines = stderr_lines(subprocess.CompletedProcess([], 0, out, err))
        assert proc.returncode == 2 and len(lines) == 1 and "storage unreachable" in lines[0], err
        assert "rerun the same command" in lines[0]
        assert server.password not in out + err
        server.start()
        again = bench_cli("sweep", spec, "--storage", server.url, "--results", results, "--no-leaderboard")
        assert again.returncode == 0, again.stderr
        assert_every_point_once(results, "tiny", spec)
    finally:
        server.close()
