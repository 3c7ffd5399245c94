"""Durability: what lets a sweep survive kills, torn files, full disks and concurrent commands, behind a few
functions the run loop calls (bench.sweep.worker) without knowing any file:

- ``open_storage(url)``: the Optuna storage, a journal first freed of stale locks and repaired (``repair_journal``);
- ``clear_leftovers(results)``: the temp row files of writers that died;
- ``claim_next(study, worker)``: ask for a trial and claim it at once (``asking``, ``claim``);
- ``Heartbeat(trial)``: beat the claimed trial's heartbeat while it trains;
- ``reap_stale(study, done, names)``: fail the trials whose worker died and enqueue their whole params again;
- ``is_stale(trial)``: whether a RUNNING trial's worker is gone (bench.sweep.study's census asks it).

**The journal** (the default storage, Optuna's JournalFileBackend, one JSON record per line).

- Appends: ``JournalFile`` writes each batch of records in one call under the lock and cuts a failed write (a
  full disk) back off, so a write error leaves no torn record.
- Lock: ``FileLock`` is an ``flock`` on ``<journal>.flock`` (a file that is never removed). The kernel releases
  it when its holder dies, so a killed writer leaves no stale lock to wait for (Optuna's own symlink lock,
  ``<journal>.lock``, survives a kill and stalls the next writer for 30 s). Local file systems and NFSv4. The DLVM
  cache of the classifier sweep (bench.sweep.classifier) uses the same lock.
- Stale symlink locks: a ``<journal>.lock`` (or ``.lock.rename``) left by a plain Optuna process is removed once
  it is older than Optuna's own grace period (30 s), which is when Optuna would force it anyway.
- Torn records: a writer killed mid-line, or stopped by a full disk, leaves a last line without its end (or, once
  another process appended after it, a line that is half a record glued to a whole one). Optuna then refuses the
  file. ``repair_journal`` keeps every whole record (salvaging the whole one of a glued line), drops the torn bytes,
  and keeps the original beside it as ``<journal>.torn-<UTC time>.bak``; it runs under the lock, before the file is
  opened.

**Storages from URLs.** Default: a JournalStorage file ``<results>/optuna/<sweep>.journal`` (safe for several
processes on one machine); any Optuna RDB URL (``sqlite:///...``, ``postgresql://...``) works, and workers on several
machines running the same command with the same PostgreSQL URL share the study. ``postgresql://`` always means
psycopg 3 (the ``postgres`` extra installs ``psycopg[binary]``): it is opened as ``postgresql+psycopg://`` whatever
SQLAlchemy's default driver. An explicit ``postgresql+psycopg2://`` still works where psycopg2 is installed.

**Who is alive.** A process is named by (host, pid, start): ``start`` is its start time in clock ticks since boot
(Linux ``/proc/<pid>/stat``, field 22), so a pid reused by another process is not mistaken for the original. A zombie
is dead. Elsewhere than Linux, ``os.kill(pid, 0)``. A killed writer of the results store can leave its hidden temp
file (``.<row>.<pid>-<hex>.tmp``, see ``lae.utils.atomic_path``, or a write probe ``.probe-<host>.<pid>-<hex>.tmp``);
``clear_leftovers`` deletes those whose writer is gone (this host, pid dead) or that are older than an hour
(another host sharing the directory: a live write takes milliseconds).

**Claims and stale trials** (all in user attributes, ``lae:*``). Right after ``study.ask()`` and before any parameter
is suggested, the worker *claims* the trial: ``lae:host``, ``lae:start`` (the process's start tick), ``lae:worker``,
``lae:heartbeat`` (Unix seconds, beaten every ``LAE_BENCH_HEARTBEAT_S``, default 20) and, last, ``lae:pid``. A trial
without ``lae:pid`` is *unclaimed*. While a worker is between ``ask()`` and its claim it holds a study user attribute
``lae:asking:<host>:<pid>`` (None otherwise).

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
import datetime as _dt
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import optuna
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend
from optuna.trial import TrialState

from bench.errors import BenchError
from bench.results import store
from bench.sweep.spec import params_key

HOST, PID, START, WORKER, HEARTBEAT = "lae:host", "lae:pid", "lae:start", "lae:worker", "lae:heartbeat"
STALE, DUPLICATE, FINAL, RERUN_OF = "lae:stale", "lae:duplicate", "lae:final", "lae:rerun_of"
ASKING = "lae:asking:"  # study user attribute prefix: + "<host>:<pid>"
HOSTNAME = socket.gethostname()
OPTUNA_LOCK_GRACE_S = 30  # Optuna's JournalFileSymlinkLock grace period
ORPHAN_AGE_S = 3600  # a temp row file of another host older than this is orphaned
_TEMP_ROW = re.compile(  # a row's temp file (lae.utils.atomic_path), or a probe of store.check_writable
    r"^\.(?:t\d+-(?P<host>.+)-\d+-[0-9a-f]{8}\.parquet|probe-(?P<probe_host>.+))\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$"
)
# Workers started together on a fresh database race to create Optuna's tables; the loser sees one of these.
_TABLE_RACE = re.compile(r"UniqueViolation|already exists|IntegrityError|DuplicateTable")
_ATTEMPTS = 5


def heartbeat_seconds() -> float:
    """Seconds between heartbeats of a running trial ($LAE_BENCH_HEARTBEAT_S, default 20)."""
    return float(os.environ.get("LAE_BENCH_HEARTBEAT_S", 20))


def grace_seconds() -> float:
    """A heartbeat older than this many seconds marks a trial stale ($LAE_BENCH_GRACE_S, default 300)."""
    return float(os.environ.get("LAE_BENCH_GRACE_S", 300))


# --- storages ---------------------------------------------------------------------------------------------------


def default_storage(results: str | os.PathLike, sweep: str) -> str:
    """``journal:<results>/optuna/<sweep>.journal``."""
    return f"journal:{Path(results) / 'optuna' / f'{sweep}.journal'}"


def journal_path(url: str) -> Path | None:
    """The file of a ``journal:`` URL, None for other storages."""
    return Path(url[len("journal:") :]) if url.startswith("journal:") else None


def holds_other_data(journal: Path) -> bool:
    """Whether ``journal`` exists, is not empty and does not start as an Optuna journal does (a record
    ``{"op_code": ...``, torn or not): a text file or a database named by mistake, which the repair would empty."""
    try:
        with open(journal, "rb") as f:
            head = f.read(64)
    except OSError:  # missing, a directory, under a file: the storage's opener says what is wrong
        return False
    return bool(head) and re.match(rb'\{\s*"op_code"\s*:', head) is None


def open_storage(url: str, repair: bool = True):
    """An Optuna storage from a URL: ``journal:<path>`` (JournalStorage, file backend, flock lock) or any RDB URL.
    A journal is first freed of stale Optuna locks and, with ``repair``, of a torn last record (one warning line on
    stderr). Failures (bad URL, missing driver, unreachable server, unwritable or full disk) are
    one BenchError line with the password redacted."""
    secret = (store.url_password(url),)
    if journal_path(url) is not None and holds_other_data(journal_path(url)):  # refused, never emptied
        raise BenchError(f"cannot open storage {url}: the file is not an Optuna journal; choose another path")
    try:
        path = journal_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_symlink_locks(path)
            warning = repair_journal(path) if repair else None
            if warning:
                print(warning, file=sys.stderr, flush=True)
            return optuna.storages.JournalStorage(JournalFile(path))
        kwargs = {"connect_args": {"connect_timeout": 10}} if url.startswith("postgres") else {}
        engine_url = re.sub(r"^postgresql://", "postgresql+psycopg://", url)
        for attempt in range(_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(engine_url, engine_kwargs=kwargs)
            except Exception as exc:  # a lost table-creation race (see _TABLE_RACE): the retry finds the tables
                if attempt == _ATTEMPTS - 1 or not _TABLE_RACE.search(f"{type(exc).__name__} {exc}"):
                    raise
                time.sleep(0.5 + attempt)
    except Exception as exc:  # every storage failure becomes one line
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if not ln.startswith("(Background")), type(exc).__name__)
        if "import DB access module" in reason and url.startswith("postgres"):
            reason += " (PostgreSQL needs psycopg 3: pip install 'lae-bench[postgres]' or 'psycopg[binary]')"
        raise BenchError(f"cannot open storage {store.redact_url(url)}: {store.redact_text(reason, secret)}") from None


# --- the journal file ---------------------------------------------------------------------------------------


class FileLock:
    """An exclusive ``flock`` on ``<journal>.flock``, per thread (Optuna's lock interface: acquire, release)."""

    def __init__(self, journal: str | os.PathLike):
        self.path = f"{journal}.flock"
        self._held = threading.local()

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._held.fd = fd
        return True

    def release(self) -> None:
        fd = self._held.__dict__.pop("fd", None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock


class JournalFile(BaseJournalBackend):
    """Optuna's journal file backend (JournalFileBackend's reader) whose appends never leave a torn record: each batch
    of records is one ``write`` under the ``FileLock``, forced to disk, and a failed write (a full disk) is cut back
    off before the error propagates."""

    def __init__(self, journal: str | os.PathLike):
        self.path, self.lock = str(journal), FileLock(journal)
        self._reader = JournalFileBackend(self.path, lock_obj=self.lock)

    def read_logs(self, log_number_from: int):
        return self._reader.read_logs(log_number_from)

    def append_logs(self, logs: list[dict]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        self.lock.acquire()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                start = os.fstat(fd).st_size
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except BaseException:
                    os.ftruncate(fd, start)  # no torn record behind a failed write
                    raise
            finally:
                os.close(fd)
        finally:
            self.lock.release()


def remove_stale_symlink_locks(journal: Path) -> list[Path]:
    """Remove Optuna's symlink lock files of ``journal`` older than its grace period; returns those removed."""
    removed = []
    for lock in (Path(f"{journal}.lock"), Path(f"{journal}.lock.rename")):
        try:
            age = time.time() - lock.lstat().st_mtime
        except FileNotFoundError:
            continue
        if age > OPTUNA_LOCK_GRACE_S:
            lock.unlink(missing_ok=True)
            removed.append(lock)
    return removed


def _record(line: bytes) -> bytes | None:
    """``line`` (with its newline) when it is one whole JSON record, the whole record glued after a torn one, or
    None."""
    try:
        if isinstance(json.loads(line), dict):
            return line
    except ValueError:
        pass
    for i in range(1, len(line)):  # a torn record followed by a whole one: the whole one is the suffix that parses
        if line[i : i + 1] == b"{":
            try:
                if isinstance(json.loads(line[i:]), dict):
                    return line[i:]
            except ValueError:
                continue
    return None


def _salvage(data: bytes) -> tuple[bytes, int]:
    """(the whole records of ``data``, the number of torn bytes dropped)."""
    kept, dropped = [], 0
    for line in data.splitlines(keepends=True):
        record = _record(line) if line.endswith(b"\n") else None
        if record is None:
            dropped += len(line)
        else:
            kept.append(record)
            dropped += len(line) - len(record)
    return b"".join(kept), dropped


def _is_whole(data: bytes) -> bool:
    return not data or (data.endswith(b"\n") and _salvage(data)[1] == 0)


def repair_journal(journal: Path) -> str | None:
    """Repair a torn ``journal`` in place (under its lock); returns the warning line to print, or None when the file
    is whole. The original is kept as ``<journal>.torn-<time>.bak``. OSError (e.g. a full disk) propagates."""
    try:
        if _is_whole(journal.read_bytes()):
            return None
    except FileNotFoundError:
        return None
    lock = FileLock(journal)
    lock.acquire()
    try:
        data = journal.read_bytes()  # again, under the lock: a writer may have been mid-line a moment ago
        if _is_whole(data):
            return None
        good, dropped = _salvage(data)
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        backup = journal.with_name(f"{journal.name}.torn-{stamp}.bak")
        shutil.copyfile(journal, backup)
        if data.startswith(good):  # only the end is torn: cut it, in place (earlier offsets stay valid)
            with open(journal, "r+b") as f:
                f.truncate(len(good))
                os.fsync(f.fileno())
        else:  # a torn record inside the file: rewrite it whole
            tmp = journal.with_name(f".{journal.name}.{os.getpid()}.repair.tmp")
            with open(tmp, "wb") as f:
                f.write(good)
                os.fsync(f.fileno())
            os.replace(tmp, journal)
    finally:
        lock.release()
    return (
        f"warning: journal {journal} held a torn record ({dropped} bytes, left by a kill or a full disk); "
        f"repaired, the original kept as {backup}"
    )


# --- who is alive, and what dead writers left ------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state first, start time at index 19); None without /proc. ProcessLookupError
    when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            raise ProcessLookupError(pid) from None
        return None
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # the command name (field 2) may hold spaces and parentheses


def start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (None when unknown: no /proc, or no process)."""
    try:
        fields = _stat_fields(pid)
    except ProcessLookupError:
        return None
    return int(fields[19]) if fields else None


def identity() -> dict:
    """This process: {"host", "pid", "start"}."""
    return {"host": HOSTNAME, "pid": os.getpid(), "start": start_ticks(os.getpid())}


def alive(pid, start: int | None = None) -> bool:
    """Process ``pid`` of this host runs and is not a zombie; with ``start``, it is also the process that started at
    that tick (not a later process that reuses the pid)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        fields = _stat_fields(pid)
    except ProcessLookupError:
        return False
    if fields is None:  # no /proc: signal 0 says whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if fields[0] in ("Z", "X"):  # exited; a zombie until its parent reaps it
        return False
    return start is None or int(fields[19]) == start


def clear_leftovers(folder: Path) -> int:
    """Delete the hidden temp row files under ``folder`` whose writer is gone; returns how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.rglob(".*.tmp"):
        m = _TEMP_ROW.match(path.name)
        if m is None:
            continue
        try:
            old = time.time() - path.stat().st_mtime > ORPHAN_AGE_S
        except FileNotFoundError:
            continue  # renamed into place or removed meanwhile
        if old or ((m["host"] or m["probe_host"]) == HOSTNAME and not alive(int(m["pid"]))):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# --- claims, heartbeats and stale trials ---------------------------------------------------------------------


@contextlib.contextmanager
def asking(study):
    """Mark this process as between ``study.ask()`` and its claim (study user attribute ``lae:asking:<host>:<pid>``)
    for the duration of the block."""
    me = identity()
    key = f"{ASKING}{me['host']}:{me['pid']}"
    study.set_user_attr(key, {**me, "since": time.time()})
    try:
        yield
    finally:
        study.set_user_attr(key, None)


def claim(trial, worker: int) -> None:
    """Record who runs ``trial`` (host, start tick, worker, first heartbeat, then the pid that makes it claimed)."""
    me = identity()
    attrs = ((HOST, me["host"]), (START, me["start"]), (WORKER, worker), (HEARTBEAT, time.time()), (PID, me["pid"]))
    for name, value in attrs:
        trial.set_user_attr(name, value)


def claim_next(study, worker: int):
    """Ask ``study`` for a trial and claim it for this process at once (``asking`` covers the gap)."""
    with asking(study):
        trial = study.ask()
        claim(trial, worker)
    return trial


def _asker_alive(value) -> bool:
    if not isinstance(value, dict):
        return False  # None: not asking
    if value.get("host") == HOSTNAME:
        return alive(value.get("pid"), value.get("start"))
    return time.time() - float(value.get("since", 0)) < grace_seconds()


def is_stale(trial) -> bool:
    """A claimed RUNNING trial whose process is gone (this host) or silent for grace_seconds() (another host)."""
    attrs = trial.user_attrs
    if attrs.get(HOST) == HOSTNAME and PID in attrs:
        return not alive(attrs[PID], attrs.get(START))
    beat = attrs.get(HEARTBEAT) or (trial.datetime_start.timestamp() if trial.datetime_start else None)
    return beat is not None and time.time() - beat > grace_seconds()


def stale_trials(study) -> list:
    """The stale RUNNING trials of ``study`` (claimed and dead, or unclaimed with no live asker; see above)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    stale = [t for t in running if is_stale(t)]
    seen = {t.number for t in stale}
    unclaimed = {t.number for t in running if PID not in t.user_attrs and t.number not in seen}
    if unclaimed and not any(_asker_alive(v) for k, v in study.user_attrs.items() if k.startswith(ASKING)):
        again = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        stale += [t for t in again if t.number in unclaimed and PID not in t.user_attrs]
    return stale


def reap_stale(study, done: set | frozenset = frozenset(), names: tuple[str, ...] = ()) -> int:
    """Mark every stale RUNNING trial FAIL with ``lae:stale`` and enqueue its params again (unless they are in
    ``done``: their row is stored), if it had set all of ``names`` (TrialPlan.param_names). A worker killed between
    two suggestions leaves a trial with part of its params: enqueued, they would make the grid sampler refuse the
    next ask, and nothing of that trial ran (a grid worker enqueues every unfinished point anyway). Returns the
    trials reaped here."""
    reaped = 0
    for t in stale_trials(study):
        attrs = t.user_attrs
        why = (
            "worker died before claiming the trial"
            if PID not in attrs
            else "worker process gone"
            if attrs.get(HOST) == HOSTNAME
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
        if t.params and set(names) <= t.params.keys() and params_key(t.params) not in done:
            study.enqueue_trial(t.params, user_attrs={RERUN_OF: t.number})
    return reaped


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
