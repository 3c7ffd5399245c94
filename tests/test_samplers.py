"""The Langevin samplers draw from the right distribution: checked against the exact posterior of a
linear-Gaussian model, and shown able to fail on the bugs of the public implementations."""

import math

import pytest
import torch

from lae import mala
from lae.conformance import COV_REL_TOL, MEAN_Z_MAX, posterior_mismatch  # the kit's exactness check, shared
from lae.likelihoods import log_prior
from lae.linear_gaussian import LinearGaussian

P, D, N = 16, 2, 8  # pixels, latent_dim, batch: features g(x) = x have rank N <= P (Theorem 1)


def _setup(seed=0):
    truth = LinearGaussian.random(P, D, noise_std=1.0, seed=seed)
    x = truth.sample(N, torch.Generator().manual_seed(seed + 1)).float()
    return truth, x


def ald_samples(
    truth: LinearGaussian,
    x,
    energy_noise_std=1.0,
    drop_prior=False,
    n_chains=64,
    burn_in=400,
    n_samples=1500,
    step_size=2e-3,
    seed=0,
    kernel=None,
):
    """Run the real LAE code path (model energy, ald_energy, MALA kernel) and collect
    z = Phi g(x) along the chains: (C, S, N, D)."""
    model = truth.with_noise(energy_noise_std).model("lae", n_chains=n_chains, step_size=step_size)
    g = model.trunk(x)
    energy_z = (lambda z: -model.log_likelihood(x, z).sum(-1)) if drop_prior else (lambda z: model.energy_z(x, z))
    fn = mala.ald_energy(g, energy_z)
    gen = torch.Generator().manual_seed(seed)
    state = mala.init(model.phi, fn)
    out, accept = [], []
    for t in range(burn_in + n_samples):
        state, info = (kernel or mala.step)(gen, state, fn, step_size, mh=True)
        accept.append(info.acceptance_rate.mean().item())
        if t >= burn_in:
            out.append(torch.matmul(g, state.position.transpose(1, 2)))
    return torch.stack(out, 1), sum(accept) / len(accept)


def test_ald_matches_exact_posterior_of_every_point():
    truth, x = _setup()
    mean, cov = truth.posterior(x)
    samples, accept = ald_samples(truth, x)
    z, cov_err = posterior_mismatch(samples, mean, cov)
    assert 0.3 < accept < 1.0
    assert z < MEAN_Z_MAX, f"posterior means off by {z:.1f} s.e."
    assert cov_err < COV_REL_TOL, f"posterior covariance off by {cov_err:.1%}"


@pytest.mark.parametrize("bug", ["temperature", "no_prior"])
def test_exactness_check_detects_wrong_target(bug):
    """The same check fails for an energy at the wrong temperature (noise variance doubled) or
    without the prior: the test can see the bugs the public implementations have."""
    truth, x = _setup()
    mean, cov = truth.posterior(x)
    kwargs = {"energy_noise_std": math.sqrt(2.0)} if bug == "temperature" else {"drop_prior": True}
    samples, _ = ald_samples(truth, x, **kwargs)
    z, cov_err = posterior_mismatch(samples, mean, cov)
    assert z > MEAN_Z_MAX or cov_err > COV_REL_TOL


def _step_with_wrong_reverse(generator, state, energy_fn, step_size, mh=True):
    """MALA whose reverse proposal mean uses the current point's gradient instead of the proposal's
    (the seed course project's bug); otherwise the same as lae.mala.step."""
    pos, energy, grad = state
    noise = torch.randn(pos.shape, generator=generator)
    prop = pos - step_size * grad + math.sqrt(2 * step_size) * noise
    prop_energy, prop_grad = energy_fn(prop)
    back = pos - prop + step_size * grad  # should be step_size * prop_grad
    log_alpha = energy - prop_energy - (back * back).sum((1, 2)) / (4 * step_size) + 0.5 * (noise * noise).sum((1, 2))
    accepted = torch.log(torch.rand(log_alpha.shape, generator=generator)) < log_alpha
    m = accepted[:, None, None]
    new = mala.MALAState(
        torch.where(m, prop, pos), torch.where(accepted, prop_energy, energy), torch.where(m, prop_grad, grad)
    )
    return new, mala.MALAInfo(log_alpha.clamp(max=0).exp(), accepted, new.energy)


def test_exactness_check_detects_wrong_mh_reverse_proposal():
    truth, x = _setup()
    mean, cov = truth.posterior(x)
    samples, _ = ald_samples(truth, x, kernel=_step_with_wrong_reverse)
    z, cov_err = posterior_mismatch(samples, mean, cov)
    assert z > MEAN_Z_MAX or cov_err > COV_REL_TOL


@pytest.mark.parametrize("kind", ["frozen", "map"])
def test_exactness_check_fails_for_the_no_sampling_controls(kind):
    """The check LAE passes fails for its controls (lae.controls), whose posterior samples are a point mass per chain:
    `frozen` at its random initial Phi, and `map` even at its optimum, the Phi whose codes are the exact posterior
    modes (= means): the means are right, the spread is missing. The controls differ from LAE in the sampler alone."""
    truth, x = _setup()
    mean, cov = truth.posterior(x)
    n_chains, n_samples = 64, 20
    torch.manual_seed(0)
    model = truth.model(kind, n_chains=n_chains)
    if kind == "map":
        with torch.no_grad():  # z = x Phi^T = the exact posterior mean, for every chain
            model.phi.copy_(torch.linalg.pinv(x.double()).matmul(mean).T.float().expand(n_chains, D, P))
        loss, _ = model.loss(x, None)
        (grad,) = torch.autograd.grad(loss, model.phi)
        assert grad.abs().max() < 1e-4  # a fixed point of MAP's training: the energy is at its minimum in Phi
    draws = model.posterior_samples(x, n_chains * n_samples, None)  # (n, N, D), the chains in turn
    samples = draws.reshape(n_samples, n_chains, N, D).transpose(0, 1)  # (C, S, N, D)
    assert torch.equal(samples[:, 0], samples[:, -1])  # no chain moves
    z, cov_err = posterior_mismatch(samples, mean, cov)
    assert z > MEAN_Z_MAX or cov_err > COV_REL_TOL
    assert cov_err > 0.5  # no spread: the covariance is missed by far more than the check's tolerance


def test_acceptance_tends_to_one_as_step_size_shrinks():
    truth, x = _setup()
    rates = [
        ald_samples(truth, x, n_chains=16, burn_in=0, n_samples=200, step_size=s)[1]
        for s in (1e-5, 1e-4, 1e-3, 1e-2, 3e-2)
    ]
    assert rates[0] > 0.99
    assert all(a >= b - 0.01 for a, b in zip(rates, rates[1:])), rates
    assert rates[-1] < 0.5


def test_lvae_mala_matches_exact_posterior():
    """The Langevin-refined VAE's MALA step on z, one chain per image, from a bad initialisation."""
    truth, x = _setup()
    mean, cov = truth.posterior(x)
    model = truth.model("lvae", step_size=0.1, n_steps=1, mh=True)
    chains, burn_in, n_samples = 64, 200, 600
    xs = x.repeat(chains, 1)  # (C * N, P): every copy is an independent chain
    fn = model.z_energy(xs)
    gen = torch.Generator().manual_seed(0)
    state = mala.init(torch.zeros(chains * N, D), fn)
    out = []
    for t in range(burn_in + n_samples):
        state, _ = mala.step(gen, state, fn, 0.1)
        if t >= burn_in:
            out.append(state.position.reshape(chains, N, D))
    z, cov_err = posterior_mismatch(torch.stack(out, 1), mean, cov)
    assert z < MEAN_Z_MAX and cov_err < COV_REL_TOL


def test_ald_chains_are_batched_and_independent():
    """Chains advance in one batched computation; chain c's trajectory does not depend on others."""
    truth, x = _setup()
    model = truth.model("lae", n_chains=3, step_size=1e-3)
    g = model.trunk(x)
    calls = []
    base = mala.ald_energy(g, lambda z: model.energy_z(x, z))

    def counting(phi):
        calls.append(phi.shape)
        return base(phi)

    state = mala.init(model.phi, counting)
    state, info = mala.step(torch.Generator().manual_seed(0), state, counting, 1e-3)
    assert calls == [torch.Size([3, D, P])] * 2  # T steps cost T + 1 evaluations, all chains at once
    energy_each = torch.stack([base(state.position[c : c + 1])[0][0] for c in range(3)])
    torch.testing.assert_close(energy_each, info.energy)
    assert info.acceptance_rate.shape == (3,)


def test_prior_is_in_the_energy():
    truth, x = _setup()
    model = truth.model("lae", n_chains=1)
    z = torch.randn(1, N, D)
    expected = -(log_prior(z) + model.log_likelihood(x, z)).sum(-1)
    torch.testing.assert_close(model.energy_z(x, z), expected)
