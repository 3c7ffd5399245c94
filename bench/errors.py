"""Errors the CLI turns into one line on stderr and a non-zero exit (never a traceback), the one-line naming of
an unexpected failure's cause (``describe``: disk full, storage unreachable, ...), the check that refuses an
unwritable output path before any work (``check_output``), and the argparse types of every command's paths
(``path_arg``: never empty) and bounded integers (``ranged``: seeds, threads, ports, counts, in lae.config's
ranges)."""

from __future__ import annotations

import argparse
import errno
import tempfile
from pathlib import Path

from lae.config import Range

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_UNREACHABLE = ("Operational", "Interface", "Connection", "Timeout")  # exception class names of a lost server
_STORAGE_MODULES = ("sqlalchemy", "psycopg", "psycopg2", "sqlite3", "optuna.storages", "optuna.exceptions")


class BenchError(Exception):
    """A user-facing failure of the harness (bad sweep spec, unreachable storage, ...). exit_code 2."""

    exit_code = 2


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, outermost first."""
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("(Background")]
    return lines[0] if lines else type(exc).__name__


def describe(exc: BaseException) -> str:
    """One line naming the cause of ``exc``: ``disk full (...)``, ``storage unreachable (...)``, an OSError's message
    and file, a BenchError's message, else ``<type>: <first line>``. Passwords are the caller's to redact."""
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, OSError) and e.errno in _DISK_FULL:
            return f"disk full ({e.strerror}{f': {e.filename}' if e.filename else ''})"
    if isinstance(exc, BenchError):
        return _first_line(exc)
    storage = [e for e in chain if type(e).__module__.startswith(_STORAGE_MODULES)]
    if storage:
        inner = storage[-1]
        name = type(inner).__name__
        what = "storage unreachable" if any(w in name for w in _UNREACHABLE) else "storage error"
        return f"{what} ({name}: {_first_line(inner)})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}{f': {exc.filename}' if exc.filename else ''}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def check_output(path: Path, option: str, directory: bool) -> None:
    """Refuse, before any work, an output path that cannot be written: `path` (a directory when `directory`, else a
    file) must not exist as the other kind, and the directory that will hold it (or its nearest existing ancestor,
    created later) must take a new file. BenchError (one line) otherwise; nothing is created."""
    if path.exists() and path.is_dir() != directory:
        kind, need = ("a file", "a directory") if directory else ("a directory", "a file path")
        raise BenchError(f"{option} {path} is {kind}; need {need}")
    target = path if directory else path.parent
    probe = target.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise BenchError(f"{option} {path}: {probe} is a file, not a directory")
    try:
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as exc:
        raise BenchError(f"{option} {path}: cannot write in {probe} ({exc.strerror})") from None


def path_arg(text: str) -> Path:
    """An argparse type: a path option's value, refused when empty (`--out ''` would mean the working directory, a
    checkout often): the usage error is one line, exit status 2."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; name a file or directory")
    return Path(text)


def ranged(kind: Range):
    """An argparse type: an integer in ``kind`` (lae.config.SEEDS, THREADS, PORTS, COUNTS); a value out of range (a
    seed of 10**30, a port of 70000) is a one-line usage error, exit status 2, before any work."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not kind.holds(value):
            raise argparse.ArgumentTypeError(f"must be {kind.describe()}; got {text}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    parse.range = kind  # what the fuzzing test (tests/test_fuzz_cli.py) draws outside of
    return parse
