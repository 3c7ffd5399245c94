"""LAE's no-sampling controls (lae.controls) differ from LAE in the sampler alone, and what LAE's chain did (its
squared jump per ALD step) is measured exactly: checked on the linear-Gaussian model, where the energy is known."""

import pytest
import torch

from lae import mala
from lae.linear_gaussian import LinearGaussian

P, D, N, C = 16, 2, 8, 4  # pixels, latent_dim, batch, chains: features g(x) = x (encoder_depth 0)


def _setup(seed=0):
    truth = LinearGaussian.random(P, D, noise_std=1.0, seed=seed)
    x = truth.sample(N, torch.Generator().manual_seed(seed + 1)).float()
    return truth, x


def _model(truth, kind, seed=0, **options):
    torch.manual_seed(seed)  # the parameters' initialisation (lae.train.seed_everything)
    return truth.model(kind, n_chains=C, **options)


def _train(model, x, steps=20, lr=1e-2):
    """The trainer's step (lae.train._train_epoch) on the one minibatch x: loss, backward, Adam, update."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss, _ = model.loss(x, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.update()


def test_controls_start_from_laes_initial_phi():
    truth, _ = _setup()
    lae = _model(truth, "lae")
    for kind in ("frozen", "map"):
        assert torch.equal(_model(truth, kind).phi.detach(), lae.phi)


def test_frozen_leaves_phi_bit_identical_over_training_while_the_rest_trains():
    truth, x = _setup()
    model = _model(truth, "frozen")
    phi, decoder = model.phi.clone(), model.decoder.net[0].weight.detach().clone()
    assert "phi" not in dict(model.named_parameters())
    _train(model, x)
    assert torch.equal(model.phi, phi)
    assert not torch.equal(model.decoder.net[0].weight, decoder)


def test_map_trains_phi():
    truth, x = _setup()
    model = _model(truth, "map")
    phi = model.phi.detach().clone()
    _train(model, x)
    assert not torch.equal(model.phi.detach(), phi)


@pytest.mark.parametrize("kind", ["frozen", "map"])
def test_control_loss_is_laes_energy_at_the_same_phi(kind):
    """The loss is V(Phi) / (n_chains N), V LAE's ALD energy (lae.mala.ald_energy) at the same Phi, and for `map` its
    Phi-gradient is the drift of ALD's Langevin step over the same normalisation: the controls differ from LAE in the
    sampler alone."""
    truth, x = _setup()
    model, lae = _model(truth, kind), _model(truth, "lae")
    with torch.no_grad():
        model.phi.add_(0.1 * torch.randn(model.phi.shape, generator=torch.Generator().manual_seed(3)))
    lae.phi = model.phi.detach().clone()
    energy, grad_phi = mala.ald_energy(lae.trunk(x), lambda z: lae.energy_z(x, z))(lae.phi)
    loss, stats = model.loss(x, None)
    assert stats == {}
    torch.testing.assert_close(loss.detach(), energy.sum() / (C * N), rtol=1e-6, atol=0)
    if kind == "map":
        (grad,) = torch.autograd.grad(loss, model.phi)
        torch.testing.assert_close(grad, grad_phi / (C * N), rtol=1e-5, atol=1e-7)


def test_frozen_loss_is_the_loss_of_lae_whose_chain_rejects_every_move():
    """An LAE whose MH step rejects every proposal (a huge step) holds its initial Phi: its loss is frozen's."""
    truth, x = _setup()
    frozen, lae = _model(truth, "frozen"), _model(truth, "lae", step_size=1e4)
    lae_loss, stats = lae.loss(x, torch.Generator().manual_seed(0))
    assert stats["accept"] == 0 and stats["jump"] == 0
    torch.testing.assert_close(lae_loss.detach(), frozen.loss(x, None)[0].detach(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("mh", [True, False])
def test_lae_jump_is_the_squared_distance_phi_moved_per_step_and_chain(mh):
    """One ALD step per minibatch (n_steps 1): the `jump` diagnostic is the mean over chains of |Phi' - Phi|^2, the
    Phi that update() moves to; chains that MH rejects add 0."""
    truth, x = _setup()
    model = _model(truth, "lae", step_size=2e-3, n_steps=1, mh=mh)
    phi = model.phi.clone()
    _, stats = model.loss(x, torch.Generator().manual_seed(0))
    model.update()
    moved = ((model.phi - phi) ** 2).sum((1, 2))  # (C,)
    torch.testing.assert_close(stats["jump"], moved.mean(), rtol=1e-5, atol=0)
    assert stats["jump"] > 0


@pytest.mark.parametrize("name", ["latent_dim", "encoder_depth", "capacity", "ald_stepsize", "latent_dim_full"])
def test_the_controls_run_beside_every_lae_of_the_control_sweeps(name):
    """Each LAE entry has a `frozen` and a `map` beside it: the same swept field, batch size and every setting but the
    sampler's (step size, steps, MH, adaptation), at every budget (MNIST; Fashion-MNIST with --dataset)."""
    from bench.sweep import load_spec

    spec = load_spec(name)
    sampler = ("model", "step_size", "n_steps", "mh", "target_accept")
    for budget in spec.budgets.values():
        points = spec.points(budget)
        for lae in (p for p in points if p.model == "lae" and p.variant != "lae adaptive"):
            settings = {k: v for k, v in spec.config(lae, budget, 0).to_dict().items() if k not in sampler}
            for kind in ("frozen", "map"):
                twins = [
                    p
                    for p in points
                    if p.model == kind
                    and {k: v for k, v in spec.config(p, budget, 0).to_dict().items() if k not in sampler} == settings
                ]
                assert len(twins) == 1, (name, budget.name, lae.label, kind)


def test_the_full_data_headline_sweep_is_the_full_budget_with_default_metrics():
    from bench.sweep import load_spec

    spec = load_spec("latent_dim_full")
    full = spec.budget("full")
    assert (full.epochs, len(full.seeds), full.train_size, full.metrics) == (50, 5, None, "default")
    assert spec.values == (16, 32) and full.values is None
    assert {p.model for p in spec.points(full)} == {"lae", "frozen", "map", "vae", "iwae", "lvae"}
    # LAE at D = 32 decides a verdict: its AIS escalates as latent_dim's does (issue 23)
    assert full.metric_settings == load_spec("latent_dim").budget("default").metric_settings
    assert full.metric_settings["ais_max_intermediate"] == 400


def test_the_leaderboard_shows_what_the_chain_did_beside_the_likelihood():
    """mh_accept, final_step_size and phi_msjd are registry metrics in the likelihood section (bench.registry), so
    every table shows them beside LAE's likelihood, and the result store requires them of every new row."""
    from bench.registry import METRICS
    from bench.results import leaderboard, store

    chain = ("mh_accept", "final_step_size", "phi_msjd")
    assert all(METRICS[m].section == "likelihood" for m in chain)
    assert set(chain) <= {m.name for m in leaderboard.COLUMNS if m.section == "likelihood"}
    assert set(chain) <= set(store.REQUIRED_COLUMNS)
