"""The GPU path (`--device cuda`): every family trains, evaluates and sweeps on the device; the estimators, the
samplers and the step-size adaptation run there (the conformance kit with device="cuda": IS, AIS and LAE's exact
posterior samples against the exact linear-Gaussian truth); a training step makes no host synchronisation; checkpoints
move between the CPU and the GPU. Skipped, with the reason, where CUDA is not available."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import bench_cli

from lae import conformance
from lae.config import RunConfig
from lae.families import BUILT_IN
from lae.train import TrainResult, load_checkpoint, new_model, save_checkpoint

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: torch.cuda.is_available() is False"),
    pytest.mark.usefixtures("one_thread"),
]
TINY = ("--dataset", "digits", "--latent-dim", "4", "--hidden", "32", "--batch-size", "50", "--train-size", "300",
        "--epochs", "1", "--no-progress")  # fmt: skip
FAMILY_OPTIONS = {"lae": ("--target-accept", "0.5", "--step-size", "1e-3"), "iwae": ("--k", "3")}
KIT_OPTIONS = {"lae": {"n_chains": 64, "step_size": 2e-3}}


@pytest.mark.parametrize("kind", list(BUILT_IN))
def test_train_and_evaluate_on_the_gpu_and_evaluate_the_checkpoint_on_the_cpu(kind, tmp_path):
    run = bench_cli("train", "--model", kind, "--device", "cuda", *TINY, *FAMILY_OPTIONS.get(kind, ()),
                    "--out", tmp_path / "run")  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["device"] == "cuda" and summary["val_loss"][-1] < summary["val_loss"][0]
    if kind == "lae":  # the step size adapted on the device (Robbins-Monro toward target_accept)
        assert summary["step_size"][-1] != 1e-3
    results = {}
    for device in ("cuda", "cpu"):  # the GPU-trained checkpoint, evaluated on either device
        out = tmp_path / f"eval-{device}.json"
        run = bench_cli("evaluate", tmp_path / "run" / "checkpoint.pt", "--device", device, "--preset", "smoke",
                        "--metrics", "loglik,probe", "--subset", "50", "--out", out, "--no-progress")  # fmt: skip
        assert run.returncode == 0, run.stderr
        results[device] = json.loads(out.read_text())["metrics"]
    for device, metrics in results.items():
        assert -200 < metrics["test_loglik_ais"] < 0 and -200 < metrics["test_loglik_is"] < 0, (device, metrics)
        assert 0.1 < metrics["probe_acc"] <= 1, (device, metrics)
    # the same checkpoint and seeds on either device: the estimates agree to a few tenths of a nat per image
    assert abs(results["cuda"]["test_loglik_is"] - results["cpu"]["test_loglik_is"]) < 1.0


def test_a_smoke_sweep_of_every_family_on_the_gpu(tmp_path, tiny_spec):
    spec = tiny_spec(values=(1e-3,), seeds=1, train_size=300)
    text = spec.read_text().replace("[fixed]\n", '[fixed]\ndevice = "cuda"\n')
    text += "".join(f'\n[[models]]\nmodel = "{kind}"\n' for kind in BUILT_IN if kind not in ("lae", "vae"))
    spec.write_text(text)
    run = bench_cli("sweep", spec, "--budget", "smoke", "--results", tmp_path / "r", timeout=900)
    assert run.returncode == 0, run.stderr
    from bench.results.store import read_rows

    rows = read_rows(tmp_path / "r")
    assert set(rows["model"]) == set(BUILT_IN) and set(rows["status"]) == {"complete"}
    assert set(rows["device"]) == {"cuda"}


@pytest.mark.parametrize("kind", list(BUILT_IN))
def test_estimators_samplers_and_checkpoints_on_the_gpu_conform(kind):
    checks = conformance.run(kind, KIT_OPTIONS.get(kind), device="cuda")
    assert all(c.passed is not False for c in checks), conformance.report(checks)
    assert "cuda" in checks[-1].detail  # the checkpoint went CPU -> GPU and back


@pytest.mark.parametrize("kind", list(BUILT_IN))
def test_a_training_step_makes_no_host_synchronisation(kind):
    """loss, backward and update with torch.cuda.set_sync_debug_mode("error"): an .item(), a .tolist() or a
    data-dependent shape inside the step raises."""
    config = RunConfig(model=kind, dataset="digits", latent_dim=4, hidden=32, batch_size=20, target_accept=0.5)
    model = new_model(config.validate(), 64, torch.device("cuda"))
    x = torch.rand(20, 64, device="cuda").round()  # 20 images <= 32 features: ALD exact (Theorem 1)
    gen = torch.Generator(device="cuda").manual_seed(0)
    for _ in range(2):  # warm up: lazy initialisation may synchronise once
        model.loss(x, gen)[0].backward()
        model.update()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss, stats = model.loss(x, gen)
        loss.backward()
        model.update()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item() and all(v.device.type == "cuda" for v in stats.values())


def test_a_cpu_checkpoint_loads_on_the_gpu_and_back(tmp_path):
    config = RunConfig(model="lae", dataset="digits", latent_dim=4, hidden=32, target_accept=0.5).validate()
    model = new_model(config, 64, torch.device("cpu"))
    path = save_checkpoint(TrainResult(model, config), tmp_path / "cpu.pt")
    gpu, _ = load_checkpoint(path, device="cuda")
    assert all(t.device.type == "cuda" for t in gpu.state_dict().values())
    back = save_checkpoint(TrainResult(gpu, config), tmp_path / "gpu.pt")
    cpu, _ = load_checkpoint(back, device="cpu")
    for name, tensor in model.state_dict().items():
        assert torch.equal(cpu.state_dict()[name], tensor), name
