"""Optuna storages from URLs. Default: a JournalStorage file ``<results>/optuna/<sweep>.journal`` (safe for several
processes on one machine; its lock and repair: ``bench.sweep.journal``); any Optuna RDB URL (``sqlite:///...``,
``postgresql://...``) works, and workers on several machines running the same command with the same PostgreSQL URL
share the study.

PostgreSQL: ``postgresql://`` always means psycopg 3 (the maintained driver; the ``postgres`` extra installs
``psycopg[binary]``): it is opened as ``postgresql+psycopg://`` whatever SQLAlchemy's default driver (psycopg2 before
SQLAlchemy 2.1). An explicit ``postgresql+psycopg2://`` still works where psycopg2 is installed."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from bench.errors import BenchError
from bench.results import store
from bench.sweep import journal

# Workers started together on a fresh database race to create Optuna's tables; the loser sees one of these.
_TABLE_RACE = re.compile(r"UniqueViolation|already exists|IntegrityError|DuplicateTable")
_ATTEMPTS = 5


def default_storage(results: str | os.PathLike, sweep: str) -> str:
    """``journal:<results>/optuna/<sweep>.journal``."""
    return f"journal:{Path(results) / 'optuna' / f'{sweep}.journal'}"


def journal_path(url: str) -> Path | None:
    """The file of a ``journal:`` URL, None for other storages."""
    return Path(url[len("journal:") :]) if url.startswith("journal:") else None


def open_storage(url: str, repair: bool = True):
    """An Optuna storage from a URL: ``journal:<path>`` (JournalStorage, file backend, flock lock) or any RDB URL.
    A journal is first freed of stale Optuna locks and, with ``repair``, of a torn last record (one warning line on
    stderr; bench.sweep.journal). Failures (bad URL, missing driver, unreachable server, unwritable or full disk) are
    one BenchError line with the password redacted."""
    import optuna

    secret = (store.url_password(url),)
    if journal_path(url) is not None and journal.holds_other_data(journal_path(url)):  # refused, never emptied
        raise BenchError(f"cannot open storage {url}: the file is not an Optuna journal; choose another path")
    try:
        path = journal_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            journal.remove_stale_symlink_locks(path)
            warning = journal.repair(path) if repair else None
            if warning:
                print(warning, file=sys.stderr, flush=True)
            return optuna.storages.JournalStorage(journal.JournalFile(path))
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
