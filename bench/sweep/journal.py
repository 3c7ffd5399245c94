"""The journal file of the default storage (Optuna's JournalFileBackend, one JSON record per line): its lock, and the
repair of what a kill or a full disk leaves behind.

- **Appends**: ``JournalFile`` writes each batch of records in one call under the lock and cuts a failed write (a
  full disk) back off, so a write error leaves no torn record.
- **Lock**: ``FileLock`` is an ``flock`` on ``<journal>.flock`` (a file that is never removed). The kernel releases
  it when its holder dies, so a killed writer leaves no stale lock to wait for (Optuna's own symlink lock,
  ``<journal>.lock``, survives a kill and stalls the next writer for 30 s). Local file systems and NFSv4.
- **Stale symlink locks**: a ``<journal>.lock`` (or ``.lock.rename``) left by a plain Optuna process is removed once
  it is older than Optuna's own grace period (30 s), which is when Optuna would force it anyway.
- **Torn records**: a writer killed mid-line, or stopped by a full disk, leaves a last line without its end (or, once
  another process appended after it, a line that is half a record glued to a whole one). Optuna then refuses the
  file. ``repair`` keeps every whole record (salvaging the whole one of a glued line), drops the torn bytes, and keeps
  the original beside it as ``<journal>.torn-<UTC time>.bak``; it runs under the lock, before the file is opened."""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

from optuna.storages.journal import BaseJournalBackend, JournalFileBackend

OPTUNA_LOCK_GRACE_S = 30  # Optuna's JournalFileSymlinkLock grace period


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


def holds_other_data(journal: Path) -> bool:
    """Whether ``journal`` exists, is not empty and does not start as an Optuna journal does (a record
    ``{"op_code": ...``, torn or not): a text file or a database named by mistake, which `repair` would empty."""
    try:
        with open(journal, "rb") as f:
            head = f.read(64)
    except OSError:  # missing, a directory, under a file: the storage's opener says what is wrong
        return False
    return bool(head) and re.match(rb'\{\s*"op_code"\s*:', head) is None


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


def repair(journal: Path) -> str | None:
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
