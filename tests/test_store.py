"""The parquet results store: atomic rows, concurrent writers, dedupe, schema version, password redaction."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from conftest import ROOT

from bench.results import store


def row(trial: int, status: str = "complete", params: str | None = None, **extra) -> dict:
    return {
        "sweep": "s",
        "study": "s.smoke.digits",
        "trial": trial,
        "params": params or f'{{"seed": {trial}}}',
        "status": status,
        "error": None if status == "complete" else "boom",
        "model": "lae",
        "seed": trial,
        "mh": True,
        "val_loss": 100.0 + trial,
        "test_loglik_ais": -90.0 - trial,
        **extra,
    }


def test_rows_round_trip_with_schema_version_and_types(tmp_path):
    path = store.write_row(tmp_path, row(3, train_size=None))
    assert path.parent == tmp_path / "parquet" / "s" / "s.smoke.digits" and path.name.startswith("t00003-")
    df = store.read_rows(tmp_path)
    assert len(df) == 1 and df.loc[0, "schema_version"] == store.SCHEMA_VERSION
    assert df.loc[0, "trial"] == 3 and df.loc[0, "val_loss"] == 103.0 and bool(df.loc[0, "mh"]) is True
    schema = pq.read_schema(path)
    assert str(schema.field("trial").type) == "int64" and str(schema.field("val_loss").type) == "double"
    assert str(schema.field("error").type) == "string" and df.loc[0, "timestamp"].endswith("+00:00")
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_readers_ignore_partial_temp_files(tmp_path):
    store.write_row(tmp_path, row(0))
    folder = tmp_path / "parquet" / "s" / "s.smoke.digits"
    (folder / ".t00001-host-1-abc.parquet.tmp").write_bytes(b"PAR1 half a file")  # what a kill mid-write leaves
    df = store.read_rows(tmp_path, "s")
    assert list(df["trial"]) == [0]


def _write_many(args):
    results, start = args
    for i in range(start, start + 10):
        store.write_row(results, row(i))


def test_concurrent_writers_lose_nothing(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_write_many, [(str(tmp_path), 10 * k) for k in range(4)])
    df = store.read_rows(tmp_path, "s", dedupe=False)
    assert sorted(df["trial"]) == list(range(40))


def test_sigkilled_writer_leaves_only_whole_files(tmp_path):
    """A process writing rows in a loop is SIGKILLed; every visible file reads back complete."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.results import store\n"
        "i = 0\nwhile True:\n"
        f"    store.write_row({str(tmp_path)!r}, {{'sweep': 's', 'study': 's.x', 'trial': i, 'params': str(i), "
        "'status': 'complete', 'blob': 'x' * 200000})\n    i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    folder = tmp_path / "parquet" / "s" / "s.x"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(folder.glob("*.parquet"))) < 5:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    df = store.read_rows(tmp_path, "s", dedupe=False)
    assert len(df) >= 5 and (df["blob"].str.len() == 200000).all()
    assert sorted(df["trial"]) == list(range(len(df)))  # no gap: each row whole or absent, in order


def test_dedupe_prefers_complete_then_earliest(tmp_path):
    store.write_row(tmp_path, row(1, "fail", params="p", timestamp="2026-01-01T00:00:01+00:00"))
    store.write_row(tmp_path, row(4, "complete", params="p", timestamp="2026-01-01T00:00:03+00:00"))
    store.write_row(tmp_path, row(7, "complete", params="p", timestamp="2026-01-01T00:00:05+00:00"))
    store.write_row(tmp_path, row(2, "pruned", params="q"))
    df = store.read_rows(tmp_path, "s")
    assert sorted(zip(df["params"], df["trial"], df["status"])) == [("p", 4, "complete"), ("q", 2, "pruned")]
    assert len(store.read_rows(tmp_path, "s", dedupe=False)) == 4


def test_empty_store_reads_as_empty_frame(tmp_path):
    df = store.read_rows(tmp_path, "nothing")
    assert df.empty and "status" in df.columns


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql://lae:s3cret@db.example:5432/bench", "postgresql://lae:***@db.example:5432/bench"),
        ("postgresql+psycopg2://u:p%40ss:w@10.0.0.1/x", "postgresql+psycopg2://u:***@10.0.0.1/x"),
        ("mysql://root@localhost/db", "mysql://root@localhost/db"),
        ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
        (
            "postgresql://host/db?user=u&password=hunter2&sslmode=require",
            "postgresql://host/db?user=u&password=***&sslmode=require",
        ),
        ("journal:results/optuna/x.journal", "journal:results/optuna/x.journal"),
    ],
)
def test_redact_url(url, expected):
    assert store.redact_url(url) == expected


def test_passwords_never_reach_a_row(tmp_path):
    url = "postgresql://lae:TopSecret42@127.0.0.1/db"
    path = store.write_row(tmp_path, row(0, "fail", storage=url, error=f"OperationalError: could not connect to {url}"))
    assert b"TopSecret42" not in path.read_bytes()
    df = store.read_rows(tmp_path)
    assert df.loc[0, "storage"] == "postgresql://lae:***@127.0.0.1/db" and "***" in df.loc[0, "error"]
    assert store.redact_text("password TopSecret42 leaked", ("TopSecret42",)) == "password *** leaked"
    assert store.url_password(url) == "TopSecret42" and store.url_password("sqlite:///x.db") is None
    assert df.loc[0, "test_loglik_ais"] == -90.0
