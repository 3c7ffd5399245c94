"""Training: determinism, divergence handling, the chain's health, memory bounds, checkpoints, and end-to-end
learning on real MNIST."""

import dataclasses
import json
import math
import os
import pickle
import warnings

import pytest
import torch

from lae.config import ConfigError, RunConfig, physical_memory_bytes
from lae.train import (
    DIVERGENCE_FACTOR,
    ChainHealthWarning,
    CheckpointError,
    DivergenceError,
    fit,
    load_checkpoint,
    load_data,
    new_model,
    save_checkpoint,
)

FAMILIES = ("vae", "iwae", "lvae", "lae", "vae_flow", "frozen", "map")


def small(model, **kw):
    return RunConfig(
        **{"model": model, "dataset": "digits", "hidden": 64, "latent_dim": 4, "batch_size": 50, "epochs": 1, **kw}
    )


@pytest.mark.parametrize("model", FAMILIES)
def test_same_seed_gives_bit_identical_parameters(model):
    a = fit(small(model, seed=7)).model.state_dict()
    b = fit(small(model, seed=7)).model.state_dict()
    c = fit(small(model, seed=8)).model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_unadjusted_langevin_at_huge_step_size_raises_divergence():
    with pytest.raises(DivergenceError, match="non-finite"):
        fit(small("lae", step_size=1e4, mh=False))


def test_mh_at_huge_step_size_rejects_instead_of_diverging_and_warns_once():
    with pytest.warns(ChainHealthWarning, match="acceptance 0.000") as record:
        result = fit(small("lae", step_size=1e4, mh=True, epochs=2))
    assert result.accept[-1] < 0.05
    assert result.jump[-1] < 1e-2 * fit(small("lae", target_accept=0.5, epochs=2)).jump[-1]  # Phi hardly moves
    assert len([w for w in record if w.category is ChainHealthWarning]) == 1  # two stuck epochs, one warning


@pytest.mark.parametrize("model", FAMILIES)
def test_runaway_loss_is_a_divergence_for_every_family(model):
    """lr 1e8: the loss explodes (LAE's stays finite: 1e29 nats) and every family stops with a DivergenceError."""
    with pytest.raises(DivergenceError, match="nats/image at epoch 1") as info:
        fit(small(model, lr=1e8))
    err = info.value
    assert not err.value <= err.limit and err.step >= 1
    assert err.limit == pytest.approx(DIVERGENCE_FACTOR * fit(small(model, epochs=1)).val_loss[0])


def test_healthy_runs_stay_far_below_the_divergence_bound():
    """The bound never fires on a healthy run: every minibatch of an adapted LAE stays under a tenth of it."""
    result = fit(small("lae", target_accept=0.5, epochs=2))
    assert max(result.train_loss) < DIVERGENCE_FACTOR * result.val_loss[0] / 10


def test_summary_records_acceptance_and_adapted_step_size_per_epoch():
    result = fit(small("lae", target_accept=0.5, epochs=2))
    summary = json.loads(json.dumps(result.summary(), allow_nan=False))  # strict JSON
    assert summary["config"]["step_size"] is None and summary["config"]["target_accept"] == 0.5
    assert len(summary["accept"]) == len(summary["step_size"]) == 2
    assert all(0 < a < 1 for a in summary["accept"])
    assert summary["step_size"][-1] == pytest.approx(result.model.step_size) and summary["step_size"][-1] != 1e-4
    assert len(summary["jump"]) == 2 and all(j > 0 for j in summary["jump"])  # an adapted chain moves
    chain = result.chain_summary()  # the result-store columns: the adapted step, the last epoch's jump
    assert chain == {"final_step_size": result.model.step_size, "phi_msjd": summary["jump"][-1]}
    vae_result = fit(small("vae"))
    vae = json.loads(json.dumps(vae_result.summary(), allow_nan=False))
    assert vae["accept"] == [None] and vae["step_size"] == [None] and vae["jump"] == [None]
    assert all(math.isnan(v) for v in vae_result.chain_summary().values())


def test_configs_beyond_memory_are_refused_before_anything_allocates():
    """RunConfig.memory_bytes is computed from shapes; validate() refuses more than the machine's memory."""
    assert RunConfig().memory_bytes() < 100e6  # the reference MNIST config: tens of MB
    huge = RunConfig(latent_dim=1_000_000_000)
    assert huge.memory_bytes() > physical_memory_bytes()
    with pytest.raises(ConfigError, match="latent_dim=1000000000.*GB.*memory"):
        huge.validate()
    with pytest.raises(ConfigError, match="k=10000000"):
        RunConfig(model="iwae", k=10_000_000).validate()


@pytest.mark.parametrize(
    "field,value",
    [
        ("step_size", -1.0),
        ("latent_dim", 0),
        ("model", "gan"),
        ("dataset", "cifar"),
        ("n_chains", 0),
        ("lr", float("nan")),
        ("seed", -1),
        ("latent_dim", True),
        ("mh", 1),
        ("target_accept", 1.0),
        ("momentum", 1.0),
        ("momentum", -0.1),
    ],
)
def test_invalid_values_are_rejected_before_training(field, value):
    with pytest.raises(ConfigError, match=field):
        fit(dataclasses.replace(small("lae"), **{field: value}))


def test_sgd_momentum_is_the_configs():
    """momentum reaches SGD (0: the official LAE code's plain SGD); the default keeps the committed runs' 0.9."""
    from lae.train import make_optimizer

    layer = torch.nn.Linear(2, 2)
    for momentum in (0.0, 0.5):
        opt = make_optimizer(RunConfig(optimizer="sgd", lr=0.1, momentum=momentum), layer.parameters())
        assert opt.param_groups[0]["momentum"] == momentum
    assert make_optimizer(RunConfig(optimizer="sgd"), layer.parameters()).param_groups[0]["momentum"] == 0.9


def test_rank_warning_when_hidden_below_batch_size():
    with pytest.warns(UserWarning, match="rank"):
        fit(small("lae", hidden=32, batch_size=50))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ChainHealthWarning)  # step 1e-4 on digits: acceptance 0.999, said once
        fit(small("lae", hidden=64, batch_size=50))


def test_checkpoint_round_trip(tmp_path):
    result = fit(small("lae", n_chains=2))
    path = save_checkpoint(result, tmp_path / "ckpt.pt")
    model, config = load_checkpoint(path)
    assert config == result.config
    for k, v in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_checkpoint_shape_mismatch_names_the_first_tensor_and_both_shapes(tmp_path):
    result = fit(small("lae"))
    path = save_checkpoint(result, tmp_path / "ckpt.pt")
    blob = torch.load(path, weights_only=True)
    blob["config"]["latent_dim"] = 8
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match=r"phi has shape \(1, 4, 64\), the config needs \(1, 8, 64\)"):
        load_checkpoint(path)


def test_a_pickle_that_would_run_code_is_refused_unread_and_quietly(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": 1, "config": {}, "state_dict": Payload()}, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "Detected pickle protocol 4" UserWarning would fail here
        with pytest.raises(CheckpointError, match="refused unread"):
            load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("model", FAMILIES)
def test_every_family_learns_on_real_mnist(model):
    """A few thousand real MNIST images, one epoch: the validation loss falls (nats per image)."""
    if not os.environ.get("LAE_BENCH_DATA") and not os.environ.get("CI"):
        pytest.skip("LAE_BENCH_DATA not set")
    config = RunConfig(
        model=model,
        dataset="mnist",
        train_size=3000,
        val_size=1000,
        epochs=1,
        batch_size=100,
        hidden=256,
        latent_dim=16,
    )
    result = fit(config, load_data(config))
    assert result.val_loss[-1] < result.val_loss[0] - 50, result.val_loss
    assert torch.isfinite(torch.tensor(result.train_loss)).all()


def test_step_size_adaptation_moves_acceptance_toward_target():
    fixed = fit(small("lae", step_size=3e-2, epochs=3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChainHealthWarning)  # an adapted chain is healthy: no warning
        adapted = fit(small("lae", step_size=3e-2, epochs=3, target_accept=0.6))
    assert adapted.model.step_size < 3e-2 and fixed.model.step_size == pytest.approx(3e-2)
    assert abs(adapted.accept[-1] - 0.6) < abs(fixed.accept[-1] - 0.6) - 0.1, (fixed.accept, adapted.accept)


def test_lae_state_moves_only_in_update_and_never_in_eval_mode():
    """loss() keeps the chains' new Phi and the adapted step for update(); eval mode keeps nothing."""
    config = small("lae", target_accept=0.5)
    x = load_data(config).train.x[:50]
    model, gen = new_model(config, x.shape[1], torch.device("cpu")), torch.Generator().manual_seed(0)
    phi, log_step = model.phi.clone(), model.log_step_size.clone()
    model.eval()
    model.loss(x, gen)
    model.update()
    assert torch.equal(model.phi, phi) and torch.equal(model.log_step_size, log_step)
    model.train()
    _, stats = model.loss(x, gen)
    assert torch.equal(model.phi, phi) and torch.equal(model.log_step_size, log_step)
    model.update()
    assert not torch.equal(model.phi, phi) and model.step_size == stats["step_size"] != pytest.approx(1e-4)
    moved = model.phi.clone()
    model.update()  # applied once
    assert torch.equal(model.phi, moved)
