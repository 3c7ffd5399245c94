"""Who is alive: this process's identity and whether a recorded process still runs, and the leftovers of dead ones.

A process is named by (host, pid, start): ``start`` is its start time in clock ticks since boot (Linux
``/proc/<pid>/stat``, field 22), so a pid reused by another process is not mistaken for the original. A zombie (a
process that exited and that its parent has not reaped yet) is dead. Elsewhere than Linux, ``os.kill(pid, 0)``.

Leftovers: a killed writer of the results store can leave its hidden temp file (``.<row>.<pid>-<hex>.tmp``, see
``lae.utils.atomic_path``, or a write probe ``.probe-<host>.<pid>-<hex>.tmp``); ``remove_orphaned_temp_rows`` deletes
those whose writer is gone (this host, pid dead) or that are older than an hour (another host sharing the directory:
a live write takes milliseconds)."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

HOSTNAME = socket.gethostname()
ORPHAN_AGE_S = 3600  # a temp row file of another host older than this is orphaned
_TEMP_ROW = re.compile(  # a row's temp file (lae.utils.atomic_path), or a probe of store.check_writable
    r"^\.(?:t\d+-(?P<host>.+)-\d+-[0-9a-f]{8}\.parquet|probe-(?P<probe_host>.+))\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$"
)


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


def remove_orphaned_temp_rows(folder: Path) -> int:
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
