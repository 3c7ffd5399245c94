"""The results store: a parquet dataset with one row per finished trial.

Layout: ``<results>/parquet/<sweep>/<study>/t<trial>-<host>-<pid>-<random>.parquet``, one small file per row. A row
is written to a hidden temp file in the same directory, forced to disk and moved into place with ``os.replace``
(``lae.utils.atomic_path``; atomic on POSIX), so a kill at any moment leaves either the whole file or nothing, and
concurrent workers never write the same file. Readers list the directory (hidden files are ignored) and drop
duplicates (should the same (study, params) ever appear twice, the best status wins: complete > pruned > fail, then
the earliest row).

An unreadable row file (truncated, garbage, not a row) is moved aside to ``<results>/quarantine/<sweep>/<study>/``
(never deleted) with one warning line on stderr, and left out of every table; the sweep then sees its grid point
unfinished and runs it again. Hidden temp files that a killed writer left are removed by the sweep
(``bench.sweep.durability``).

Passwords never reach a row: storage URLs go through ``redact_url`` and error texts through ``redact_text``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
import socket
import sys
import typing
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.commands.train import option_type
from lae.config import RunConfig
from lae.utils import atomic_path

SCHEMA_VERSION = 1


def _columns(names: str) -> tuple[str, ...]:
    return tuple(names.split())


def _run_fields(kind: type) -> tuple[str, ...]:
    """The RunConfig fields of one value type (`int | None` counts as int): a row's configuration columns. Read from
    the dataclass, so a family's options (IWAE k, LAE n_chains, a plugin's) are typed here without being named."""
    hints = typing.get_type_hints(RunConfig)
    return tuple(f.name for f in dataclasses.fields(RunConfig) if option_type(hints[f.name]) is kind)


# Column -> arrow type for the columns the harness writes itself (its own, then every RunConfig field by its type);
# metric columns (and any other number) are float64.
STRING_COLUMNS = _columns(
    "sweep study budget params point status error axis storage worker git_commit python_version torch_version "
    "optuna_version numpy_version lae_bench_version machine timestamp warnings likelihood"
) + _run_fields(str)
INT_COLUMNS = _columns("schema_version trial threads epochs_run") + _run_fields(int)
BOOL_COLUMNS = _run_fields(bool)
REQUIRED_COLUMNS = (
    _columns("schema_version sweep study trial params")
    + tuple(f.name for f in dataclasses.fields(RunConfig) if f.name != "data_dir")  # where the data lie: not a row's
    + _columns("likelihood status error val_loss mh_accept final_step_size phi_msjd train_seconds eval_seconds")
    + _columns("git_commit torch_version optuna_version threads timestamp")
)
STATUS_RANK = {"complete": 0, "pruned": 1, "fail": 2}

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&;\s](?:password|passwd|pwd)=)(?P<pw>[^&;\s]*)", re.IGNORECASE)


def redact_url(url: str | None) -> str | None:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``; also ``?password=...``."""
    if url is None:
        return None
    url = _URL_PASSWORD.sub(lambda m: m["head"] + "***" + m["tail"], url)
    return _QUERY_PASSWORD.sub(lambda m: m["head"] + "***", url)


def redact_text(text: str | None, secrets: tuple[str, ...] = ()) -> str | None:
    """Redact URL passwords anywhere in ``text`` and every literal secret in ``secrets``."""
    if text is None:
        return None
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return redact_url(text)


def url_password(url: str | None) -> str | None:
    """The password in a storage URL (to redact it from error messages), or None."""
    m = _URL_PASSWORD.search(url or "")
    return m["pw"] if m and m["pw"] else None


def parquet_dir(results: str | os.PathLike, sweep: str | None = None) -> Path:
    base = Path(results) / "parquet"
    return base / sweep if sweep else base


def _arrow_type(column: str, value) -> pa.DataType:
    if column in STRING_COLUMNS:
        return pa.string()
    if column in INT_COLUMNS:
        return pa.int64()
    if column in BOOL_COLUMNS:
        return pa.bool_()
    if isinstance(value, str):
        return pa.string()
    return pa.float64()


def write_row(results: str | os.PathLike, row: dict) -> Path:
    """Write one trial's row atomically (temp file + os.replace); returns the final path. ``row`` needs at least
    sweep, study and trial; a schema_version and a UTC timestamp are added when missing."""
    row = dict(row)
    row.setdefault("schema_version", SCHEMA_VERSION)
    row.setdefault("timestamp", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    row["storage"] = redact_url(row.get("storage"))
    row["error"] = redact_text(row.get("error"))
    schema = pa.schema([(c, _arrow_type(c, v)) for c, v in row.items()])
    table = pa.Table.from_pylist([row], schema=schema)
    name = f"t{int(row['trial']):05d}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
    path = parquet_dir(results, row["sweep"]) / row["study"] / name
    with atomic_path(path, fsync=True) as tmp:  # fsync: the bytes reach the disk before the name does
        pq.write_table(table, tmp)
    return path


def row_files(folder: Path) -> list[Path]:
    """The row files under ``folder`` (hidden temp files excluded), sorted."""
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith(".")) if folder.is_dir() else []


def quarantine_dir(results: str | os.PathLike) -> Path:
    return Path(results) / "quarantine"


def quarantine(results: str | os.PathLike, path: Path, reason: str) -> Path | None:
    """Move an unreadable row file into ``<results>/quarantine/`` (same relative path) with one warning line on
    stderr; returns the new path (None when another reader moved it first or it cannot be moved)."""
    dest = quarantine_dir(results) / path.relative_to(parquet_dir(results))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, dest)
    except FileNotFoundError:
        return None  # another reader moved it first (and said so)
    except OSError as exc:
        print(f"warning: unreadable row file {path} ({reason}) left out; cannot move it aside: {exc}", file=sys.stderr)
        return None
    print(
        f"warning: unreadable row file {path} ({reason}) moved to {dest}, left out of every table; "
        "the sweep runs its grid point again",
        file=sys.stderr,
        flush=True,
    )
    return dest


def read_row_file(results: str | os.PathLike, path: Path) -> pd.DataFrame | None:
    """One row file as a DataFrame; None (after quarantining it) when it is unreadable or not a results row."""
    try:
        df = pq.read_table(path).to_pandas()
        missing = [c for c in ("study", "params", "status") if c not in df.columns]
        if missing:
            raise ValueError(f"not a results row: no {missing[0]!r} column")
        return df
    except FileNotFoundError:
        return None  # quarantined meanwhile by another reader
    except (pa.ArrowException, OSError, ValueError) as exc:
        text = re.sub(r"Could not open Parquet input source '[^']*': ", "", str(exc)).strip().splitlines()
        quarantine(results, path, f"{type(exc).__name__}: {text[0] if text else ''}")
        return None


def read_rows(
    results: str | os.PathLike, sweep: str | None = None, study: str | None = None, dedupe: bool = True
) -> pd.DataFrame:
    """All rows under ``<results>/parquet[/<sweep>[/<study>]]`` as one DataFrame (empty if none); unreadable files
    are quarantined and left out. With ``dedupe``, one row per (study, params): complete beats pruned beats fail,
    then the earliest timestamp, then trial number."""
    base = parquet_dir(results, sweep)
    if study is not None:
        base = base / study
    frames = [read_row_file(results, p) for p in row_files(base)]
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=list(REQUIRED_COLUMNS))
    df = pd.concat(frames, ignore_index=True, sort=False)
    if dedupe and len(df):
        df = dedupe_rows(df)
    return df.reset_index(drop=True)


def stored_params(results: str | os.PathLike, sweep: str, study: str, cache: dict | None = None, keep=None) -> set[str]:
    """The params keys of one study's readable rows (any status: each is a finished trial), of those ``keep`` (a
    filter of a row file's DataFrame) keeps. ``cache``: {file name: params keys} kept by the caller between calls, so
    each file is read once (row files are never rewritten)."""
    cache = {} if cache is None else cache
    for path in row_files(parquet_dir(results, sweep) / study):
        if path.name not in cache:
            df = read_row_file(results, path)
            if df is not None:
                cache[path.name] = set((keep(df) if keep is not None else df)["params"])
    return set().union(*cache.values())


def quarantined_trials(results: str | os.PathLike, sweep: str, study: str) -> set[int]:
    """Trial numbers of the quarantined row files of one study (from their names, ``t<trial>-...``)."""
    folder = quarantine_dir(results) / sweep / study
    names = (p.name for p in folder.glob("t*.parquet")) if folder.is_dir() else ()
    return {int(m[1]) for n in names if (m := re.match(r"t(\d+)-", n))}


def check_writable(results: str | os.PathLike, sweep: str, study: str) -> Path:
    """Write (then remove) a probe file in the study's row folder, or in ``results`` (created) when the folder does
    not exist yet: OSError (read-only, full disk, not a directory) before anything trains. Returns the row folder."""
    folder = parquet_dir(results, sweep) / study
    where = folder if folder.is_dir() else Path(results)
    where.mkdir(parents=True, exist_ok=True)
    probe = where / f".probe-{socket.gethostname()}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    finally:
        probe.unlink(missing_ok=True)
    return folder


def dedupe_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Keep one row per (study, params), preferring complete, then pruned, then fail; then the earliest."""
    ranked = df.assign(_rank=df["status"].map(STATUS_RANK).fillna(9))
    ranked = ranked.sort_values(["study", "params", "_rank", "timestamp", "trial"], kind="stable")
    kept = ranked.drop_duplicates(["study", "params"], keep="first").drop(columns="_rank")
    return kept.sort_values(["sweep", "study", "trial"], kind="stable")
