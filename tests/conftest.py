"""Shared fixtures: a real PostgreSQL server on loopback (Debian's package), and tiny sweep specs.

The PostgreSQL fixture runs initdb in a fresh directory and starts the server on a free 127.0.0.1 port with password
(scram-sha-256) authentication; as root it runs both as the package's unprivileged ``postgres`` user (PostgreSQL
refuses to run as root). Missing server binaries or psycopg2: the tests skip, except under CI (``CI`` set), where
they fail.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
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


class PostgresServer:
    """A PostgreSQL server of its own on a free 127.0.0.1 port (Debian's binaries; as root, run as ``postgres``):
    ``url`` is ``postgresql://lae:<random password>@127.0.0.1:<port>/lae_test`` (the documented URL: psycopg 3).
    ``stop()`` and ``start()`` simulate an outage; ``close()`` removes everything."""

    def __init__(self):
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            _missing("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb)")
        try:
            import psycopg
        except ImportError:
            _missing("psycopg (3) is not installed (pip install 'psycopg[binary]', the 'postgres' extra)")
        self.bindir = Path(binaries[-1]).parent
        self.as_user: list[str] = []
        self.data = Path(tempfile.mkdtemp(prefix="lae-pg-"))
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                _missing("running as root and there is no unprivileged 'postgres' user to run the server")
            os.chown(self.data, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.password = secrets.token_hex(12)
        pwfile = self.data / "pw"
        pwfile.write_text(self.password + "\n")
        if self.as_user:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        self.db, self.port = self.data / "db", _free_port()
        init = self._run(
            "initdb", "-D", self.db, "-U", "lae", f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8"
        )
        if init.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            pytest.fail(f"initdb failed: {init.stderr.strip()[-500:]}")
        self.start()
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="lae", password=self.password, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE lae_test")
        self.url = f"postgresql://lae:{self.password}@127.0.0.1:{self.port}/lae_test"

    def _run(self, tool: str, *args):
        cmd = self.as_user + [str(self.bindir / tool)] + [str(a) for a in args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c max_connections=50"
        log = self.data / "server.log"
        started = self._run("pg_ctl", "-D", self.db, "-l", log, "-w", "-t", "60", "-o", options, "start")
        if started.returncode != 0:
            text = log.read_text() if log.exists() else ""
            self.close()
            pytest.fail(f"pg_ctl start failed: {started.stderr.strip()[-300:]} {text[-500:]}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.db, "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a PostgreSQL server started for the session (PostgresServer)."""
    server = PostgresServer()
    try:
        yield server.url
    finally:
        server.close()


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


def terminal_sigint() -> None:
    """Popen(preexec_fn=...): Ctrl-C as in a terminal. A job started in the background by a non-interactive shell (a CI
    script's `cmd &`, nohup) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt; the tests that
    press Ctrl-C restore the default first."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


# Reads one JSON argv per line; forks a child per argv that runs `python -m bench`'s `sys.exit(main())` with stdout and
# stderr in files (an uncaught exception prints its traceback, as the interpreter would); answers one JSON line.
FORK_SERVER = r"""
import json, os, sys, tempfile, traceback
import bench.cli, bench.commands.evaluate, bench.commands.list, bench.commands.sweep, bench.commands.train  # noqa
import bench.commands.dashboard, bench.commands.figures, bench.commands.leaderboard  # noqa
import bench.results.leaderboard, bench.sweep, optuna  # noqa  (what the sweep and leaderboard commands import)
answer = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    argv = json.loads(line)
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            code = bench.cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    _, status = os.waitpid(pid, 0)
    out.seek(0), err.seek(0)
    text = {"stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}
    answer.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status), **text}) + "\n")
    answer.flush()
"""


@pytest.fixture(scope="module")
def forked_cli():
    """run(*argv) -> subprocess.CompletedProcess of one `python -m bench ARGV`, each in its own process forked from one
    that imported the CLI and its commands once (a fresh interpreter spends ~2 s of CPU importing torch). Only for
    runs that fail before any worker process starts."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen(
        [sys.executable, "-c", FORK_SERVER], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    def run(*argv) -> subprocess.CompletedProcess:
        server.stdin.write(json.dumps([str(a) for a in argv]) + "\n")
        server.stdin.flush()
        answer = json.loads(server.stdout.readline())
        return subprocess.CompletedProcess(argv, answer["returncode"], answer["stdout"], answer["stderr"])

    yield run
    server.stdin.close()
    server.wait(timeout=60)
