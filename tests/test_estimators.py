"""The log-likelihood estimators land on the truth where it is known (linear-Gaussian model, exact
log p(x)), AIS tightens as intermediate distributions are added, and on a trained MNIST VAE the
two estimators (different algorithms, same model) agree."""

import os

import pytest
import torch

from lae.ais import sigmoid_schedule
from lae.estimators import AISSettings, Escalation, ais, escalating_ais, escalation_tolerance, importance_sampling
from lae.linear_gaussian import LinearGaussian

N_IMAGES = 32
IS_TOL_MEAN, IS_TOL_MAX = 0.03, 0.15  # nats per image: mean and worst error of IS with 1000 samples
AIS_TOL_MEAN = 0.1  # nats per image: mean error of AIS at 1000 intermediate distributions
AGREE_TOL = 0.5  # nats per image: AIS vs IS with 2000 samples on a trained MNIST VAE


pytestmark = pytest.mark.usefixtures("one_thread")


def _hard_case():
    """A concentrated posterior (noise 0.3, |W| ~ 1): the prior is far from it, so AIS has work to do."""
    truth = LinearGaussian.random(16, 2, noise_std=0.3, seed=0, scale=1.0)
    x = truth.sample(N_IMAGES, torch.Generator().manual_seed(1)).float()
    return truth, x, truth.log_marginal(x)


def _vae_with_exact_marginals(truth):
    """VAE whose q(z|x) has the exact posterior mean and the exact marginal variances x 1.44
    (diagonal, so it misses the correlations: a good, not a perfect, proposal)."""
    model = truth.model("vae")
    mean_map, cov = truth.posterior(torch.zeros(1, truth.W.shape[0], dtype=truth.W.dtype))
    W, s2 = truth.W, truth.noise_std**2
    A = (W @ cov / s2).T  # posterior mean = A (x - b)
    with torch.no_grad():
        model.head.weight.copy_(torch.cat([A, torch.zeros_like(A)]).float())
        model.head.bias.copy_(torch.cat([-(A @ truth.b), torch.log(1.44 * torch.diagonal(cov))]).float())
    return model


@pytest.mark.parametrize("kind", ["vae", "lae"])
def test_importance_sampling_matches_exact_log_marginal(kind):
    truth, x, exact = _hard_case()
    if kind == "vae":
        model = _vae_with_exact_marginals(truth)
    else:  # untrained ALD chains: the proposal must find the posterior from a poor start
        model = truth.model("lae", n_chains=4, step_size=1e-3, batch_size=N_IMAGES)
    est = importance_sampling(model, x, 1000, torch.Generator().manual_seed(2)).double()
    err = est - exact
    assert est.shape == (N_IMAGES,)
    assert abs(err.mean().item()) < IS_TOL_MEAN, f"IS mean error {err.mean().item():.3f} nats"
    assert err.abs().max().item() < IS_TOL_MAX, f"IS worst error {err.abs().max().item():.3f} nats"


def test_ais_from_the_prior_matches_exact_and_improves_with_intermediate_distributions():
    truth, x, exact = _hard_case()
    model = truth.model("vae")  # AIS from the prior uses only the decoder, which is exactly the truth
    gaps = {}
    for k in (10, 100, 1000):
        settings = AISSettings(n_intermediate=k, n_chains=16, n_leapfrog=2, step_size=0.1, start="prior")
        est = ais(model, x, settings, torch.Generator().manual_seed(3)).double()
        gaps[k] = (exact - est).mean().item()
    # AIS is a stochastic lower bound: the gap shrinks toward 0 from above as the path is refined.
    assert gaps[10] > gaps[100] + 1.0 > gaps[1000] + 1.0, gaps
    assert -0.02 < gaps[1000] < AIS_TOL_MEAN, gaps


def test_escalating_ais_doubles_the_length_until_its_error_bound_is_small_and_that_bound_holds():
    truth, x, exact = _hard_case()
    model = _vae_with_exact_marginals(truth)  # its decoder is the truth; its encoder a good IS proposal
    log_is = importance_sampling(model, x, 1000, torch.Generator().manual_seed(2))
    settings = AISSettings(10, n_chains=8, n_leapfrog=2, step_size=0.1, start="prior")  # from the prior: a long path
    tol = escalation_tolerance(1.2)  # a 1.2-nat difference to decide: the floor, 0.5 nats, applies
    assert tol == 0.5 and escalation_tolerance(-4.0) == 1.0
    run = escalating_ais(model, x, log_is, Escalation(tol, 5000, 16), settings, torch.Generator().manual_seed(3))
    lengths = [n for n, _ in run.history]
    assert lengths == [10 * 2**i for i in range(len(lengths))] and run.n_intermediate == lengths[-1] > 10
    assert run.history[0][1] > tol > run.error == run.history[-1][1]  # the prior path at 10 is far off
    assert all(e >= tol for _, e in run.history[:-1])  # it stopped at the first length under the tolerance
    true_error = (exact - run.log_px.double()).mean().item()
    assert -0.05 < true_error < tol, (true_error, run.history)  # the bound it met holds against the exact value
    capped = escalating_ais(model, x, log_is, Escalation(0.01, 40, 16), settings, torch.Generator().manual_seed(3))
    assert capped.n_intermediate == 40 and capped.error > 0.01  # at the cap, the error is reported, not hidden


def test_sigmoid_schedule_runs_from_prior_to_posterior():
    b = sigmoid_schedule(50)
    assert b.shape == (52,) and b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all()


@pytest.mark.slow
def test_ais_and_is_agree_on_a_trained_mnist_vae():
    if not os.environ.get("LAE_BENCH_DATA"):
        pytest.skip("LAE_BENCH_DATA not set (real MNIST needed)")
    from lae import data
    from lae.config import RunConfig
    from lae.train import fit

    ds = data.load("mnist", "dynamic", train_size=20_000, test_size=20)
    model = fit(RunConfig(model="vae", dataset="mnist", epochs=1, train_size=20_000, device="cpu", seed=0), ds).model
    model.requires_grad_(False)
    gen = torch.Generator().manual_seed(4)
    log_is = importance_sampling(model, ds.test.x, 2000, gen)
    log_ais = ais(model, ds.test.x, AISSettings(n_intermediate=300, n_chains=8, n_leapfrog=2), gen)
    diff = (log_ais - log_is).mean().item()
    assert abs(diff) < AGREE_TOL, f"AIS - IS = {diff:.2f} nats per image"
    assert log_is.mean().item() < -50  # a real likelihood of binarized MNIST, not a degenerate value
