"""The results store: a parquet dataset with one row per finished trial.

Layout: ``<results>/parquet/<sweep>/<study>/t<trial>-<host>-<pid>-<random>.parquet``, one small file per row. A row
is written to a hidden temp file in the same directory, forced to disk and moved into place with ``os.replace``
(``lae.utils.atomic_path``; atomic on POSIX), so a kill at any moment leaves either the whole file or nothing, and
concurrent workers never write the same file. Readers list the directory (hidden files are ignored) and drop
duplicates: a trial that finished but whose process died before Optuna heard of it is run again, so the same
(study, params) may appear twice; the best status wins (complete > pruned > fail), then the earliest row.

Passwords never reach a row: storage URLs go through ``redact_url`` and error texts through ``redact_text``.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import socket
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lae.utils import atomic_path

SCHEMA_VERSION = 1

# Column -> arrow type for the columns the harness writes itself; metric columns (and any other number) are float64.
STRING_COLUMNS = (
    "sweep",
    "study",
    "budget",
    "params",
    "point",
    "status",
    "error",
    "model",
    "dataset",
    "preprocessing",
    "likelihood",
    "optimizer",
    "axis",
    "storage",
    "worker",
    "git_commit",
    "python_version",
    "torch_version",
    "optuna_version",
    "numpy_version",
    "lae_bench_version",
    "machine",
    "timestamp",
)
INT_COLUMNS = (
    "schema_version",
    "trial",
    "n_chains",
    "n_steps",
    "k",
    "latent_dim",
    "encoder_depth",
    "decoder_depth",
    "hidden",
    "epochs",
    "batch_size",
    "seed",
    "train_size",
    "val_size",
    "threads",
    "epochs_run",
)
BOOL_COLUMNS = ("mh",)
REQUIRED_COLUMNS = (
    "schema_version",
    "sweep",
    "study",
    "trial",
    "params",
    "model",
    "dataset",
    "likelihood",
    "step_size",
    "n_chains",
    "n_steps",
    "mh",
    "k",
    "latent_dim",
    "encoder_depth",
    "hidden",
    "epochs",
    "batch_size",
    "seed",
    "status",
    "error",
    "val_loss",
    "mh_accept",
    "train_seconds",
    "eval_seconds",
    "git_commit",
    "torch_version",
    "optuna_version",
    "threads",
    "timestamp",
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


def read_rows(
    results: str | os.PathLike, sweep: str | None = None, study: str | None = None, dedupe: bool = True
) -> pd.DataFrame:
    """All rows under ``<results>/parquet[/<sweep>[/<study>]]`` as one DataFrame (empty if none). With ``dedupe``,
    one row per (study, params): complete beats pruned beats fail, then the earliest timestamp, then trial number."""
    base = parquet_dir(results, sweep)
    if study is not None:
        base = base / study
    files = sorted(p for p in base.rglob("*.parquet") if not p.name.startswith(".")) if base.is_dir() else []
    frames = [pq.read_table(p).to_pandas() for p in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(REQUIRED_COLUMNS))
    df = pd.concat(frames, ignore_index=True, sort=False)
    if dedupe and len(df):
        df = dedupe_rows(df)
    return df.reset_index(drop=True)


def dedupe_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Keep one row per (study, params), preferring complete, then pruned, then fail; then the earliest."""
    ranked = df.assign(_rank=df["status"].map(STATUS_RANK).fillna(9))
    ranked = ranked.sort_values(["study", "params", "_rank", "timestamp", "trial"], kind="stable")
    kept = ranked.drop_duplicates(["study", "params"], keep="first").drop(columns="_rank")
    return kept.sort_values(["sweep", "study", "trial"], kind="stable")
