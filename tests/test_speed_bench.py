"""benchmarks/speed.py end to end on a tiny setting (real MNIST minibatches): it writes a valid JSON table whose
FLOP counts and ratios follow from the models' shapes, and bad input is one error line with nothing written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "speed.py"


def run_speed(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_speed_json_table_on_a_tiny_setting(tmp_path):
    if not os.environ.get("LAE_BENCH_DATA") and not os.environ.get("CI"):
        pytest.skip("LAE_BENCH_DATA not set (the benchmark reads real MNIST)")
    out = tmp_path / "speed.json"
    r = run_speed("--settings", "tiny", "--rounds", "1", "--repeats", "2", "--threads", "1", "--json", out)
    assert r.returncode == 0, r.stderr[-2000:]
    table = json.loads(out.read_text())
    rows = {row["model"]: row for row in table["rows"]}
    assert set(rows) == {"vae", "iwae", "lvae", "lae-T2-mh", "lae-T2"} and table["device"] == "cpu"
    hidden, batch, pixels, latent = 32, 20, 784, 16
    # The VAE's matmuls, forward + backward (3x) + nothing in Adam: encoder P->H->2D, decoder D->H->P; the first
    # layer's input gradient is not computed (the images need none).
    forward = 2 * batch * (pixels * hidden + hidden * 2 * latent + latent * hidden + hidden * pixels)
    assert rows["vae"]["mflop_per_image"] * 1e6 * batch == pytest.approx(3 * forward - 2 * batch * pixels * hidden)
    for row in rows.values():
        assert row["setting"] == "tiny" and row["batch"] == batch and row["threads"] == 1
        assert row["images_per_s"] == pytest.approx(batch / (row["ms_per_step"] / 1e3))
        assert 0 < row["share_of_peak"] < 1.5 and row["peak_gflops"] > 0, row  # a FLOP rate, not a count
        assert row["share_of_peak"] == pytest.approx(
            row["mflop_per_image"] * 1e6 * batch / (row["ms_per_step"] / 1e3) / (row["peak_gflops"] * 1e9)
        )
    assert rows["vae"]["time_ratio_vae"] == rows["vae"]["flop_ratio_vae"] == 1.0
    assert rows["iwae"]["flop_ratio_vae"] > 2.5  # k = 5 decoder passes against one
    assert 1.5 < rows["lae-T2-mh"]["flop_ratio_vae"] < rows["iwae"]["flop_ratio_vae"]  # T + 1 = 3 decoder passes
    # LAE without MH, per image: the trunk P->H forward and its weight gradient (4PH); each of the T + 1 = 3
    # evaluations: z = Phi g, the decoder forward, its input gradients down to z and grad Phi = gz^T g (8DH + 4HP);
    # evaluations 1 and 2 also take the decoder's weight gradients in the same pass, and the trunk's term gz Phi
    # (2HP + 4DH). No second pass through the decoder (it would add 2HP + 2DH per held evaluation).
    lae_flops = (
        4 * pixels * hidden
        + 3 * (8 * latent * hidden + 4 * hidden * pixels)
        + 2 * (2 * hidden * pixels + 4 * latent * hidden)
    )
    assert rows["lae-T2"]["mflop_per_image"] * 1e6 == pytest.approx(lae_flops)
    assert "lae-T2-mh" in r.stdout and "% peak" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("--settings", "nope"), "unknown setting or model 'nope'"),
        (("--rounds", "0"), "--rounds and --repeats must be at least 1"),
    ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "speed.json"
    out.write_text("kept\n")
    r = run_speed(*args, "--json", out)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {message}", r.stderr
    assert out.read_text() == "kept\n"
