"""On the linear-Gaussian model, where log p(x) is exact: ELBO <= log p(x), and the IWAE bound
rises toward log p(x) as k grows."""

import math

import torch

from lae.linear_gaussian import LinearGaussian


def test_elbo_below_exact_and_iwae_rises_with_k():
    truth = LinearGaussian.random(16, 2, noise_std=1.0, seed=3)
    x = truth.sample(64, torch.Generator().manual_seed(4)).float()
    exact = truth.log_marginal(x).mean().item()
    model = truth.model("iwae", k=1)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        # A deliberately imperfect encoder: the exact posterior mean map, shrunk, with a too-wide variance.
        mean_map = truth.W @ torch.linalg.inv(torch.eye(2, dtype=torch.float64) + truth.W.T @ truth.W)
        model.head.weight.copy_(torch.cat([0.8 * mean_map.T, torch.zeros(2, 16)]).float())
        model.head.bias.copy_(torch.cat([torch.zeros(2), torch.full((2,), -1.0)]))
        elbo = torch.stack([model.elbo(x, gen).mean() for _ in range(200)]).mean().item()
        bounds = {}
        for k in (1, 10, 100, 1000):
            reps = max(1, 2000 // k)
            lw = torch.stack([model.log_weights(x, k, gen) for _ in range(reps)])  # (reps, k, N)
            bounds[k] = (torch.logsumexp(lw, 1) - math.log(k)).mean().item()
    # Monte Carlo error of these means is under 0.05 nats (64 images x >= 2 repeats x many draws).
    assert elbo < exact
    assert abs(bounds[1] - elbo) < 0.3  # same bound, MC vs analytic KL
    assert bounds[1] < bounds[10] < bounds[100] < bounds[1000] < exact + 0.05
    assert exact - bounds[1000] < 0.25 * (exact - bounds[1])  # most of the gap closed
