"""Optuna storages from URLs. Default: a JournalStorage file ``<results>/optuna/<sweep>.journal`` (safe for several
processes on one machine); any Optuna RDB URL (``sqlite:///...``, ``postgresql://...``) works, and workers on several
machines running the same command with the same PostgreSQL URL share the study."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from bench.errors import BenchError
from bench.results import store

# Workers started together on a fresh database race to create Optuna's tables; the loser sees one of these.
_TABLE_RACE = re.compile(r"UniqueViolation|already exists|IntegrityError|DuplicateTable")
_ATTEMPTS = 5


def default_storage(results: str | os.PathLike, sweep: str) -> str:
    """``journal:<results>/optuna/<sweep>.journal``."""
    return f"journal:{Path(results) / 'optuna' / f'{sweep}.journal'}"


def open_storage(url: str):
    """An Optuna storage from a URL: ``journal:<path>`` (JournalStorage, file backend) or any RDB URL. Failures
    (bad URL, missing driver, unreachable server) are one BenchError line with the password redacted."""
    import optuna

    secret = (store.url_password(url),)
    try:
        if url.startswith("journal:"):
            path = Path(url[len("journal:") :])
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        kwargs = {"connect_args": {"connect_timeout": 10}} if url.startswith("postgres") else {}
        for attempt in range(_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            except Exception as exc:  # a lost table-creation race (see _TABLE_RACE): the retry finds the tables
                if attempt == _ATTEMPTS - 1 or not _TABLE_RACE.search(f"{type(exc).__name__} {exc}"):
                    raise
                time.sleep(0.5 + attempt)
    except Exception as exc:  # every storage failure becomes one line
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if not ln.startswith("(Background")), type(exc).__name__)
        raise BenchError(f"cannot open storage {store.redact_url(url)}: {store.redact_text(reason, secret)}") from None
