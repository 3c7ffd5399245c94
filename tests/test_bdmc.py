"""Bidirectional Monte Carlo brackets the truth on the tractable model (exact log p(x)), its gap shrinks as the AIS
path is refined, a deliberately short schedule is flagged by the leaderboard, and the pieces it rests on (sampling
from a likelihood, the proposal's density and gradient) are exact."""

import math

import pandas as pd
import pytest
import torch

from bench.results.verdict import ERROR_TOL, estimator_flags, group_error
from lae.estimators import AISSettings, bdmc
from lae.likelihoods import Bernoulli, DiscretizedLogistic
from lae.linear_gaussian import LinearGaussian
from lae.proposals import GaussianProposal

pytestmark = pytest.mark.usefixtures("one_thread")
N_IMAGES = 64


def _model():
    """A concentrated posterior (noise 0.3, |W| ~ 1): the prior is far from it, so AIS from the prior has work to do."""
    truth = LinearGaussian.random(16, 2, noise_std=0.3, seed=0, scale=1.0)
    return truth, truth.model("vae")


def _run(model, k, start, seed=5, chains=8):
    settings = AISSettings(n_intermediate=k, n_chains=chains, step_size=0.1, start=start)
    return bdmc(model, N_IMAGES, settings, torch.Generator().manual_seed(seed))


def test_forward_and_reverse_ais_bracket_the_exact_log_marginal_and_the_gap_shrinks():
    truth, model = _model()
    gaps = {}
    for k in (10, 100, 1000):
        r = _run(model, k, "prior")
        exact = truth.log_marginal(r.x).float()
        lower, upper, truth_mean = r.lower.mean().item(), r.upper.mean().item(), exact.mean().item()
        assert lower < truth_mean + 0.02 and upper > truth_mean - 0.02, (k, lower, truth_mean, upper)
        gaps[k] = r.gap
    assert gaps[10] > 2 * gaps[100] > 4 * gaps[1000], gaps  # measured: about 4.9, 0.9 and 0.05 nats
    assert gaps[1000] < 0.15, gaps


def test_the_proposal_start_needs_a_short_path():
    """The Laplace proposal is the exact posterior (inflated 1.2x) on this model: ten distributions suffice."""
    truth, model = _model()
    r = _run(model, 10, "proposal")
    exact = truth.log_marginal(r.x).float()
    assert r.gap < 0.05, r.gap
    assert abs((r.lower - exact).mean().item()) < 0.05 and abs((r.upper - exact).mean().item()) < 0.05


def test_a_deliberately_short_schedule_is_flagged():
    _, model = _model()
    gap = _run(model, 2, "prior", chains=2).gap
    assert gap > ERROR_TOL, gap
    trial = pd.DataFrame([{"test_loglik_ais": -20.0, "test_loglik_is": -20.1, "bdmc_gap": gap}])
    error = group_error(trial)
    assert error == pytest.approx(gap)  # the gap, not IS - AIS (0.1), bounds this trial's error
    table = pd.DataFrame(
        [
            {
                "variant": "vae",
                "axis_value": math.nan,
                "test_loglik_ais_mean": -20.0,
                "test_loglik_is_mean": -20.1,
                "bdmc_gap_mean": gap,
                "estimator_error": error,
            }
        ]
    )
    assert "BDMC gap" in estimator_flags(table)[0]


def test_likelihood_samples_follow_the_likelihood():
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([-2.0, 0.0, 1.5]).expand(40_000, 3)
    x = Bernoulli().sample(logits, gen)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(x.mean(0), torch.sigmoid(logits[0]), atol=0.01)
    lik = DiscretizedLogistic(1)
    with torch.no_grad():
        lik.log_scale.fill_(math.log(0.05))
    for mean in (0.0, 0.5, 0.97):  # an interior pixel and both edge bins
        m = torch.full((200_000, 1), mean)
        x = lik.sample(m, gen)
        bins = (x * 255).round().long().squeeze(1)
        assert torch.equal(x, bins.unsqueeze(1) / 255.0)  # on the 8-bit grid
        grid = torch.arange(256).float().unsqueeze(1) / 255
        p = lik(grid, torch.full_like(grid, mean)).exp().detach()
        empirical = torch.bincount(bins, minlength=256).float() / len(bins)
        assert 0.5 * (empirical - p).abs().sum().item() < 0.015  # total variation, draws vs pmf (noise ~0.007)


def test_gaussian_proposal_density_and_gradient_are_exact():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, 4, generator=gen, dtype=torch.float64)
    q = GaussianProposal(
        torch.randn(3, 4, generator=gen, dtype=torch.float64), torch.linalg.cholesky(a @ a.mT + torch.eye(4))
    )
    z, log_q = q.sample(5, gen)
    lq, grad = q.log_prob_and_grad(z)
    ref = torch.distributions.MultivariateNormal(q.mean, scale_tril=q.scale_tril)
    zz = z.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(ref.log_prob(zz).sum(), zz)
    assert torch.allclose(lq, log_q) and torch.allclose(lq, ref.log_prob(z)) and torch.allclose(grad, auto)
