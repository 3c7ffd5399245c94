"""A failed trial is final only for the configuration that failed (issue 25): its row holds the fingerprint of what it
ran (bench.sweep.spec.config_key), and once the spec changes that trial's configuration, the next run reruns it;
with the spec unchanged, a failed trial is not run again. Real sweeps on the 8x8 digits: a learning rate of 1e8
makes every trial diverge (a failed row, with its reason), the default one completes."""

from __future__ import annotations

from conftest import bench_cli

from bench.results import store


def _rows(results):
    return store.read_rows(results, "tiny", dedupe=False)


def test_a_failed_trial_reruns_when_its_configuration_changes(tiny_spec, tmp_path):
    spec = tiny_spec(values=(1e-4,), seeds=1)
    good = spec.read_text()
    spec.write_text(good.replace("n_steps = 2\n", "n_steps = 2\nlr = 100000000.0\n", 1))
    results = tmp_path / "r"
    args = ("sweep", spec, "--results", results, "--no-leaderboard", "--no-progress", "--threads", "1")
    first = bench_cli(*args)
    assert first.returncode == 0, first.stderr
    failed = _rows(results)
    assert len(failed) == 2 and set(failed["status"]) == {"fail"} and failed["config_key"].notna().all()
    assert all("diverged" in e for e in failed["error"])

    again = bench_cli(*args)  # the same configuration: its failures are final, nothing runs
    assert again.returncode == 0, again.stderr
    assert len(_rows(results)) == 2

    spec.write_text(good)  # the configuration changed: the failed trials run again
    fixed = bench_cli(*args)
    assert fixed.returncode == 0, fixed.stderr
    rows = _rows(results)
    assert len(rows) == 4 and sorted(rows["status"]) == ["complete", "complete", "fail", "fail"]
    assert set(rows[rows["status"] == "complete"]["params"]) == set(failed["params"])
    assert set(store.read_rows(results, "tiny")["status"]) == {"complete"}  # the leaderboards' rows
