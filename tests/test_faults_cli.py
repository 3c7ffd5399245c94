"""Every bad input of a sweep is one line on stderr and exit status 2, before anything trains or is written: spec
values (metric settings, memory, types, ranges; each naming the spec file and key), storages, output paths. (More
spec and option cases: tests/test_sweep.py; train and evaluate: tests/test_errors.py.) Each case runs the CLI in
its own process, forked from one that imported it once (conftest.forked_cli)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY_BUDGET, TINY_SPEC

TUNE_SPEC = """
description = "a tiny tuning sweep"
kind = "tune"
dataset = "digits"
[search.step_size]
low = 1e-6
high = 1e-2
log = true
[pruner]
n_startup_trials = 2
[[models]]
model = "lae"
[budget.smoke]
epochs = 1
seeds = 1
n_trials = 2
metrics = "smoke"
[budget.default]
epochs = 1
seeds = 1
n_trials = 2
metrics = "smoke"
[budget.full]
epochs = 1
seeds = 1
n_trials = 2
metrics = "smoke"
"""

# (spec edit: old, new), the fragments the one line must hold
SPEC_CASES = {
    "subset nan": (("subset = 50", "subset = nan"), ["budget.smoke.metric_settings", "subset", "nan"]),
    "subset negative": (("subset = 50", "subset = -5"), ["budget.smoke.metric_settings", "subset", "-5"]),
    "unknown metric setting": (("subset = 50", "subsett = 50"), ["budget.smoke.metric_settings.subsett"]),
    "attack radius out of range": (("subset = 50", "subset = 50, adv_eps = [2.0]"), ["adv_eps", "(0, 1]"]),
    "unknown metrics preset": (('metrics = "smoke"', 'metrics = "huge"'), ["budget.smoke.metrics", "'huge'"]),
    "latent_dim too large for memory": (("latent_dim = 4", "latent_dim = 1000000000"), ["fixed.latent_dim", "memory"]),
    "values not numbers": (("values = [0.0001, 0.001]", 'values = ["a", "b"]'), ["values", "finite numbers"]),
    "negative train_size": (("train_size = 300", "train_size = -3"), ["budget.smoke.train_size", "-3"]),
    "set not a table": (('model = "vae"', 'model = "vae"\nset = 3'), ["models[1].set", "table"]),
    "unknown model family": (('model = "vae"', 'model = "vea"'), ["models[1].model", "'vea'"]),
    "mh not a boolean": (("mh = true", 'mh = "yes"'), ["fixed.mh", "'yes'"]),
    "negative lr": (("n_steps = 2", "n_steps = 2\nlr = -1.0"), ["fixed.lr", "-1.0"]),
    "sampler_seed not an integer": (('dataset = "digits"', 'dataset = "digits"\nsampler_seed = "x"'), ["sampler_seed"]),
    "seeds overflow memory": (("seeds = 1", "seeds = 1000000000000"), ["budget.smoke.seeds", "up to 100000"]),
    "grid too large": (("seeds = 1", "seeds = 50000"), ["budget.smoke.seeds", "3 points x 50000 seeds"]),
    "ais_intermediate huge": (("ais_intermediate = 10", "ais_intermediate = 1000000000000"), ["ais_intermediate"]),
    "ais_chains beyond memory": (("ais_chains = 2", "ais_chains = 1000000000"), ["MetricSettings.memory_bytes"]),
    "epochs huge": (("epochs = 1", "epochs = 1000000000000"), ["budget.smoke.epochs", "up to 10000"]),
    "step_size huge": (("values = [0.0001, 0.001]", "values = [0.0001, 1e308]"), ["values", "up to 10000"]),
    "tune: low above high": (("low = 1e-6", "low = 1.0"), ["search.step_size", "low < high"]),
    "tune: unknown pruner argument": (("n_startup_trials = 2", "n_startup_trials = 2\nwarmup = 3"), ["pruner"]),
}


def _spec(tmp_path: Path, case: str) -> Path:
    path = tmp_path / "sweeps" / "bad.toml"
    path.parent.mkdir(exist_ok=True)
    if case.startswith("tune:"):
        text = TUNE_SPEC
    else:
        budget = TINY_BUDGET.format(train_size=300, epochs=1, seeds=1)
        text = TINY_SPEC.format(values=[1e-4, 1e-3], mh="true", budget=budget)
    if case in SPEC_CASES:
        old, new = SPEC_CASES[case][0]
        assert old in text, case
        text = text.replace(old, new, 1)
    path.write_text(text)
    return path


CLI_CASES = {
    "unreachable PostgreSQL": (["--storage", "postgresql://lae:s3cretPW@127.0.0.1:9/nowhere"], ["cannot open storage"]),
    "journal under a file": (["--storage", "journal:{file}/x.journal"], ["cannot open storage"]),
    "results under a file": (["--results", "{file}/r"], ["cannot write results", "Not a directory"]),
    "zero threads": (["--threads", "0"], ["--threads"]),
    "negative workers": (["--workers", "-1"], ["--workers"]),
    "more workers than cores or trials": (["--workers", "1000"], ["--workers 1000: at most"]),
    "threads beyond a C int": (["--threads", "1000000000000"], ["--threads", "up to 1024"]),
    "empty results path": (["--results", ""], ["--results: an empty path"]),
}


@pytest.mark.parametrize("case", list(SPEC_CASES) + list(CLI_CASES))
def test_every_bad_input_is_one_line_and_exit_status_2(tmp_path, case, forked_cli):
    spec = _spec(tmp_path, case)
    file = tmp_path / "a-file"
    file.write_text("")
    options = [o.format(file=file) for o in CLI_CASES[case][0]] if case in CLI_CASES else []
    if "--results" not in options:
        options += ["--results", str(tmp_path / "r")]
    run = forked_cli("sweep", spec, *options, "--no-leaderboard")
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 2 and "Traceback" not in run.stderr and len(lines) == 1, run.stderr
    expected = SPEC_CASES[case][1] + [str(spec)] if case in SPEC_CASES else CLI_CASES[case][1]
    assert lines[0].startswith("error: ") and all(text in lines[0] for text in expected), lines[0]
    assert "s3cretPW" not in run.stderr + run.stdout
    assert not (tmp_path / "r" / "parquet").exists() and not run.stdout  # nothing trained, nothing written


def test_a_spec_that_is_not_utf8_is_one_line(tmp_path, forked_cli):
    """Issue 25: a Latin-1 spec was a UnicodeDecodeError traceback."""
    spec = tmp_path / "latin1.toml"
    spec.write_bytes('description = "café"\n'.encode("latin-1"))
    run = forked_cli("sweep", spec, "--results", tmp_path / "r", "--no-leaderboard")
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(f"error: {spec}: not UTF-8 text") and not (tmp_path / "r").exists()


@pytest.mark.parametrize("content", [b"my notes\nkeep them\n", b"SQLite format 3\x00" + bytes(100)])
def test_a_journal_path_holding_other_data_is_refused_never_emptied(tmp_path, forked_cli, content):
    """Issue 25: `--storage journal:<a text file>` was "repaired" (emptied, kept as .bak) and used."""
    spec = _spec(tmp_path, "no edit")
    other = tmp_path / "notes.txt"
    other.write_bytes(content)
    run = forked_cli("sweep", spec, "--storage", f"journal:{other}", "--results", tmp_path / "r", "--no-leaderboard")
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "is not an Optuna journal" in run.stderr and other.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("notes")) == ["notes.txt"]
