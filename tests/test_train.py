"""Training: determinism, divergence handling, and end-to-end learning on real MNIST."""

import dataclasses
import os
import warnings

import pytest
import torch

from lae.config import ConfigError, RunConfig
from lae.train import DivergenceError, fit, load_checkpoint, load_data, new_model, save_checkpoint

FAMILIES = ("vae", "iwae", "lvae", "lae")


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


def test_mh_at_huge_step_size_rejects_instead_of_diverging():
    result = fit(small("lae", step_size=1e4, mh=True))
    assert result.accept[-1] < 0.05


@pytest.mark.parametrize(
    "field,value",
    [
        ("step_size", -1.0),
        ("latent_dim", 0),
        ("model", "gan"),
        ("dataset", "cifar"),
        ("n_chains", 0),
        ("lr", float("nan")),
    ],
)
def test_invalid_values_are_rejected_before_training(field, value):
    with pytest.raises(ConfigError, match=field):
        fit(dataclasses.replace(small("lae"), **{field: value}))


def test_rank_warning_when_hidden_below_batch_size():
    with pytest.warns(UserWarning, match="rank"):
        fit(small("lae", hidden=32, batch_size=50))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(small("lae", hidden=64, batch_size=50))


def test_checkpoint_round_trip(tmp_path):
    result = fit(small("lae", n_chains=2))
    path = save_checkpoint(result, tmp_path / "ckpt.pt")
    model, config = load_checkpoint(path)
    assert config == result.config
    for k, v in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


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
