"""Shared fixtures: a real PostgreSQL server on loopback (Debian's package), and tiny sweep specs.

The PostgreSQL fixture runs initdb in a fresh directory and starts the server on a free 127.0.0.1 port with password
(scram-sha-256) authentication; as root it runs both as the package's unprivileged ``postgres`` user (PostgreSQL
refuses to run as root). Missing server binaries or psycopg2: the tests skip, except under CI (``CI`` set), where
they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): on a
    shared 2-core machine two threads contending with other jobs run several times slower. Restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip; .ci/run installs Debian's postgresql)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """``postgresql+psycopg2://lae:<random password>@127.0.0.1:<port>/lae_test`` of a server started for the session."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        _missing("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb)")
    try:
        import psycopg2
    except ImportError:
        _missing("psycopg2 is not installed (pip install psycopg2-binary, the 'postgres' extra)")
    bindir = Path(binaries[-1]).parent
    as_user: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="lae-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root and there is no unprivileged 'postgres' user to run the server")
        os.chown(data, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    password = secrets.token_hex(12)
    pwfile = data / "pw"
    pwfile.write_text(password + "\n")
    if as_user:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    db = data / "db"
    port = _free_port()

    def run(*cmd):
        return subprocess.run(as_user + [str(c) for c in cmd], capture_output=True, text=True, timeout=120, cwd="/")

    init = run(bindir / "initdb", "-D", db, "-U", "lae", f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8")
    if init.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr.strip()[-500:]}")
    start = run(
        bindir / "pg_ctl",
        "-D",
        db,
        "-l",
        data / "server.log",
        "-w",
        "-t",
        "60",
        "-o",
        f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=50",
        "start",
    )
    if start.returncode != 0:
        log = (data / "server.log").read_text() if (data / "server.log").exists() else ""
        shutil.rmtree(data, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {start.stderr.strip()[-300:]} {log[-500:]}")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="lae", password=password, dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE lae_test")
        conn.close()
        yield f"postgresql+psycopg2://lae:{password}@127.0.0.1:{port}/lae_test"
    finally:
        run(bindir / "pg_ctl", "-D", db, "-m", "immediate", "-w", "stop")
        shutil.rmtree(data, ignore_errors=True)


TINY_BUDGET = """train_size = {train_size}
val_size = 100
epochs = {epochs}
seeds = {seeds}
metrics = "smoke"
metric_settings = {{ subset = 50, ais_intermediate = 10, ais_chains = 2, is_samples = 20, probe_train_size = 300, \
probe_max_iter = 50, adv_subset = 50, pgd_steps = 5, speed_repeats = 1, gen_batch = 50, speed_posterior_samples = 2 }}
"""  # the same small budget serves as smoke and default

TINY_SPEC = """
description = "a tiny sweep for tests (8x8 digits)"
axis = "step_size"
values = {values}
dataset = "digits"

[fixed]
latent_dim = 4
encoder_depth = 1
hidden = 64
batch_size = 50
n_steps = 2
mh = {mh}

[[models]]
model = "lae"
axis = "step_size"

[[models]]
model = "vae"

[budget.smoke]
{budget}
[budget.default]
{budget}
[budget.full]
epochs = 1
seeds = 1
metrics = "smoke"
"""


@pytest.fixture
def tiny_spec(tmp_path):
    """write(name, **fields) -> path of a tiny digits grid spec: (len(values) LAE points + 1 VAE) x seeds trials."""

    def write(
        name: str = "tiny", values=(1e-4, 1e-3), mh: bool = True, epochs: int = 1, seeds: int = 2, train_size: int = 300
    ) -> Path:
        path = tmp_path / "sweeps" / f"{name}.toml"
        path.parent.mkdir(exist_ok=True)
        budget = TINY_BUDGET.format(train_size=train_size, epochs=epochs, seeds=seeds)
        path.write_text(TINY_SPEC.format(values=list(values), mh=str(mh).lower(), budget=budget))
        return path

    return write


def bench_cli(*args, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m bench ARGS`` from the repository root; stdout/stderr captured as text."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "bench", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def bench_popen(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None
