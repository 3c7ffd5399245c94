"""Every bad input of `train`, `evaluate`, `figures` and `dashboard` (issues 11, 12 and 25), run as a user runs it:
one line on stderr starting `error:`, no traceback, no warning before it, the documented exit status (2; 3 for a
divergence), and nothing written or lost. The inputs are real files: a trained checkpoint, a pickle that would run
code, a checkpoint whose tensors do not fit its config (or whose config names another dataset, whose decoder keys are
odd, whose weights are not finite), a read-only directory (a read-only tmpfs when root, else chmod).

Each case is its own process running the CLI's entry point (`bench.__main__`: `sys.exit(main())`) with its own
stdout, stderr and exit status, forked from one process that imported the CLI once: a fresh interpreter per case
spends about 2 s of CPU importing torch, and there are 40 cases. `tests/test_cli.py` runs `python -m bench` itself."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from lae.config import RunConfig
from lae.train import fit, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


class Payload:
    """Unpickling this runs a shell command: a checkpoint must never be unpickled with code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _read_only_dir(base: Path) -> tuple[Path | None, str]:
    """A directory nobody can write in: a read-only tmpfs (root ignores permission bits) or a chmod 555 directory."""
    path = base / "read-only"
    path.mkdir()
    if os.geteuid() == 0:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], capture_output=True)
        if r.returncode != 0:
            return None, f"cannot mount a read-only tmpfs as root: {r.stderr.decode().strip()}"
    else:
        path.chmod(0o555)
    try:
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return path, ""
    return None, f"{path} stayed writable"


def _nan_weight(blob: dict) -> None:
    blob["state_dict"]["decoder.net.0.weight"][0, 0] = float("nan")


CHECKPOINT_EDITS = {
    "says-mnist": lambda blob: blob["config"].update(dataset="mnist"),  # a digits model (64 pixels)
    "odd-key": lambda blob: blob["state_dict"].update({"decoder.net.x.bias": blob["state_dict"]["decoder.net.2.bias"]}),
    "scalar-bias": lambda blob: blob["state_dict"].update({"decoder.net.2.bias": torch.tensor(1.0)}),
    "nan-weight": _nan_weight,
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad-inputs")
    config = RunConfig(model="lae", dataset="digits", hidden=64, latent_dim=4, batch_size=50, target_accept=0.5)
    ckpt = save_checkpoint(fit(config), base / "run" / "checkpoint.pt")
    blob = torch.load(ckpt, weights_only=True)
    blob["config"]["latent_dim"] = 8  # the tensors are for latent_dim 4
    torch.save(blob, base / "mismatch.pt")
    marker = base / "payload-ran"
    (base / "evil.pt").write_bytes(pickle.dumps({"config": {}, "state_dict": Payload(marker)}, protocol=4))
    torch.save({"config": {}, "state_dict": Payload(marker)}, base / "evil-zip.pt")
    (base / "corrupt.pt").write_bytes(ckpt.read_bytes()[:1000])
    for name, change in CHECKPOINT_EDITS.items():  # checkpoints that claim what they are not (issue 25)
        edited = torch.load(ckpt, weights_only=True)
        change(edited)
        torch.save(edited, base / f"{name}.pt")
    (base / "a-file").write_text("not a directory\n")
    read_only, why = _read_only_dir(base)
    values = {
        "base": base,
        "ckpt": ckpt,
        "run": ckpt.parent,
        "marker": marker,
        "read_only": read_only,
        "why": why,
        "before": ckpt.read_bytes(),
    }
    yield values
    if read_only is not None and os.geteuid() == 0:
        subprocess.run(["umount", str(read_only)], capture_output=True)


@pytest.fixture(scope="module")
def cli(forked_cli):
    """run(*argv) -> subprocess.CompletedProcess of one CLI run in its own forked process (conftest.forked_cli)."""
    return forked_cli


TRAIN = ["train", "--dataset", "digits", "--hidden", "64", "--batch-size", "50", "--no-progress"]
EVAL = ["evaluate", "{ckpt}", "--preset", "smoke", "--no-progress"]

# (id, argv, exit status, a fragment of the one line)
CASES = [
    ("train-step-size-negative-exp", TRAIN + ["--step-size", "-1e-4"], 2, "step_size must be a positive finite"),
    ("train-step-size-negative", TRAIN + ["--step-size", "-1"], 2, "step_size must be a positive finite"),
    ("train-lr-negative", TRAIN + ["--lr", "-.5"], 2, "lr must be a positive finite"),
    ("train-lr-inf", TRAIN + ["--lr", "inf"], 2, "lr must be a positive finite"),
    ("train-seed-negative", TRAIN + ["--seed", "-1"], 2, "seed must be a non-negative integer up to 4294967295"),
    ("train-latent-dim-zero", TRAIN + ["--latent-dim", "0"], 2, "latent_dim must be a positive integer"),
    ("train-latent-dim-huge", TRAIN + ["--latent-dim", "1000000000"], 2, "GB of memory"),
    ("train-hidden-huge", TRAIN + ["--hidden", "100000000"], 2, "GB of memory"),
    ("train-batch-huge", TRAIN + ["--batch-size", "1000000000"], 2, "GB of memory"),
    ("train-model-unknown", TRAIN + ["--model", "gan"], 2, "invalid choice: 'gan'"),
    ("train-dataset-unknown", ["train", "--dataset", "cifar"], 2, "unknown dataset 'cifar'"),
    ("train-preprocessing-unknown", TRAIN + ["--preprocessing", "float"], 2, "invalid choice: 'float'"),
    ("train-n-chains-zero", TRAIN + ["--n-chains", "0"], 2, "n_chains must be a positive integer"),
    ("train-epochs-text", TRAIN + ["--epochs", "abc"], 2, "invalid int value: 'abc'"),
    ("train-epochs-fraction", TRAIN + ["--epochs", "1.5"], 2, "invalid int value: '1.5'"),
    ("train-target-accept-one", TRAIN + ["--target-accept", "1"], 2, "target_accept must be in (0, 1)"),
    ("train-train-size-negative", TRAIN + ["--train-size", "-5"], 2, "train_size must be a positive integer"),
    ("train-val-size-too-large", TRAIN + ["--val-size", "100000"], 2, "val_size=100000 is invalid"),
    ("train-out-is-a-file", TRAIN + ["--out", "{base}/a-file"], 2, "is a file; need a directory"),
    ("train-out-under-a-file", TRAIN + ["--out", "{base}/a-file/run"], 2, "is a file, not a directory"),
    ("train-out-read-only", TRAIN + ["--out", "{read_only}/run"], 2, "cannot write in"),
    ("train-out-holds-a-run", TRAIN + ["--out", "{run}"], 2, "already holds a run"),
    ("train-data-missing", ["train", "--dataset", "mnist", "--data-dir", "{base}/nowhere"], 2, "LAE_BENCH_DATA"),
    ("train-runaway-loss", TRAIN + ["--lr", "1e8", "--out", "{base}/runaway"], 3, "run diverged: training loss"),
    ("train-unadjusted-blowup", TRAIN + ["--step-size", "1e4", "--no-mh", "--out", "{base}/ula"], 3, "run diverged"),
    ("evaluate-missing", ["evaluate", "{base}/none.pt"], 2, "does not exist"),
    ("evaluate-corrupt", ["evaluate", "{base}/corrupt.pt"], 2, "corrupt or not a lae-bench checkpoint"),
    ("evaluate-pickle-payload", ["evaluate", "{base}/evil.pt"], 2, "refused unread"),
    ("evaluate-zip-payload", ["evaluate", "{base}/evil-zip.pt"], 2, "refused unread"),
    ("evaluate-shape-mismatch", ["evaluate", "{base}/mismatch.pt"], 2, "phi has shape (1, 4, 64), the config needs"),
    ("evaluate-out-read-only", EVAL + ["--out", "{read_only}/m.json"], 2, "cannot write in"),
    ("evaluate-out-is-a-directory", EVAL + ["--out", "{base}"], 2, "is a directory; need a file path"),
    ("evaluate-metrics-unknown", EVAL + ["--metrics", "loglik,fid"], 2, "unknown group(s) fid"),
    ("evaluate-subset-negative", EVAL + ["--subset", "-5"], 2, "argument --subset: must be a positive integer"),
    ("evaluate-setting-unknown", EVAL + ["--setting", "ais_steps=5"], 2, "expected NAME=VALUE with NAME one of"),
    ("evaluate-setting-bad", EVAL + ["--setting", "ais_chains=0"], 2, "--setting: ais_chains must be a positive"),
    ("evaluate-subset-too-large", EVAL + ["--subset", "100000"], 2, "exceeds the 297 test images"),
    ("evaluate-preset-unknown", EVAL + ["--preset", "huge"], 2, "invalid choice: 'huge'"),
    ("evaluate-dataset-mismatch", EVAL + ["--dataset", "mnist"], 2, "was trained on digits, not mnist"),
    ("train-epochs-huge", TRAIN + ["--epochs", "1000000000000"], 2, "epochs must be a positive integer up to 10000"),
    ("train-step-size-huge", TRAIN + ["--step-size", "1e308"], 2, "step_size must be a positive finite number up to"),
    ("train-depth-huge", TRAIN + ["--encoder-depth", "1000000000000"], 2, "encoder_depth must be a non-negative"),
    ("train-decoder-depth-huge", TRAIN + ["--decoder-depth", "10000000000"], 2, "decoder_depth must be a non-negative"),
    ("train-out-empty", TRAIN + ["--out", ""], 2, "argument --out: an empty path"),
    ("train-target-accept-vae", TRAIN + ["--model", "vae", "--target-accept", "0.5"], 2, "--target-accept does not"),
    ("train-momentum-adam", TRAIN + ["--momentum", "0.5"], 2, "--momentum does not apply to optimizer adam"),
    ("train-k-lae", TRAIN + ["--k", "3"], 2, "--k does not apply to model lae"),
    ("evaluate-says-mnist", ["evaluate", "{base}/says-mnist.pt"], 2, "decodes 64 pixels but its config's"),
    ("evaluate-odd-key", ["evaluate", "{base}/odd-key.pt"], 2, "unexpected tensor decoder.net.x.bias"),
    ("evaluate-scalar-bias", ["evaluate", "{base}/scalar-bias.pt"], 2, "decoder.net.2.bias has shape ()"),
    ("evaluate-nan-weight", ["evaluate", "{base}/nan-weight.pt"], 2, "holds non-finite values"),
    ("figures-odd-key", ["figures", "{base}/odd-key.pt", "--out", "{base}/f"], 2, "unexpected tensor decoder.net.x"),
    (
        "figures-scalar-bias",
        ["figures", "{base}/scalar-bias.pt", "--out", "{base}/f"],
        2,
        "decoder.net.2.bias has shape ()",
    ),
    ("figures-seed-huge", ["figures", "{ckpt}", "--seed", str(10**30)], 2, "argument --seed: must be a non-negative"),
    ("figures-out-empty", ["figures", "{ckpt}", "--out", ""], 2, "argument --out: an empty path"),
    ("evaluate-seed-negative", EVAL + ["--seed", "-1"], 2, "argument --seed: must be a non-negative integer"),
    ("evaluate-seed-huge", EVAL + ["--seed", str(10**30)], 2, "argument --seed: must be a non-negative integer"),
    ("evaluate-threads-huge", EVAL + ["--threads", "1000000000000"], 2, "argument --threads: must be a positive"),
    ("evaluate-out-empty", EVAL + ["--out", ""], 2, "argument --out: an empty path"),
    ("evaluate-ais-huge", EVAL + ["--setting", "ais_intermediate=1000000000000"], 2, "ais_intermediate must be a"),
    ("evaluate-ais-chains-memory", EVAL + ["--setting", "ais_chains=1000000000"], 2, "MetricSettings.memory_bytes"),
    ("dashboard-port-negative", ["dashboard", "--port", "-1"], 2, "argument --port: must be a non-negative integer"),
    ("dashboard-port-huge", ["dashboard", "--port", "70000"], 2, "argument --port: must be a non-negative integer"),
    ("evaluate-threads-zero", EVAL + ["--threads", "0"], 2, "argument --threads: must be a positive integer"),
]
if not torch.cuda.is_available():
    CASES.append(("train-device-cuda", TRAIN + ["--device", "cuda"], 2, "no CUDA device"))


@pytest.mark.parametrize("argv,status,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_loses_nothing(cli, files, argv, status, fragment):
    if any("{read_only}" in a for a in argv) and files["read_only"] is None:
        pytest.skip(f"no read-only directory here: {files['why']}")
    r = cli(*[a.format(**files) for a in argv])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == status, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr
    assert not files["marker"].exists()  # no payload ever ran
    assert files["ckpt"].read_bytes() == files["before"]  # the existing run is intact
    for out in ("runaway", "ula"):
        assert not (files["base"] / out / "checkpoint.pt").exists()  # a diverged run writes nothing


def test_overwrite_replaces_an_existing_run(cli, files, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(files["run"], run)
    r = cli(*TRAIN, "--model", "vae", "--out", run, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert torch.load(run / "checkpoint.pt", weights_only=True)["config"]["model"] == "vae"


def test_leaderboard_of_only_garbage_rows_names_what_it_lacks(cli, tmp_path):
    """Issue 25: a store of only unreadable rows said `no rows of  in ...` (an empty name)."""
    folder = tmp_path / "parquet" / "foo" / "foo.smoke.mnist"
    folder.mkdir(parents=True)
    (folder / "t00001-x.parquet").write_bytes(b"not a parquet file" * 20)
    r = cli("leaderboard", "--results", tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no readable rows of any sweep in ") and "quarantine" in last, last
