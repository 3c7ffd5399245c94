"""Likelihoods are normalized distributions over their data, in nats."""

import math

import torch

from lae.likelihoods import Bernoulli, DiscretizedLogistic, Gaussian, log_prior


def test_discretized_logistic_sums_to_one_over_the_256_bins():
    lik = DiscretizedLogistic(n_pixels=1)
    x = torch.arange(256, dtype=torch.float64).div(255).reshape(256, 1)
    for log_scale in (-6.0, -3.0, -1.0, 0.5):
        with torch.no_grad():
            lik.log_scale.fill_(log_scale)
        for mean in (-0.3, 0.0, 0.37, 1.0, 1.4):
            logp = lik(x, torch.full_like(x, mean))
            assert torch.isfinite(logp).all()
            assert abs(torch.logsumexp(logp, 0).item()) < 1e-6, (log_scale, mean)


def test_bernoulli_sign_form_equals_general_form_with_gradients():
    torch.manual_seed(0)
    lik = Bernoulli()
    logits = torch.randn(5, 7, 30, dtype=torch.float64, requires_grad=True)
    for x in ((torch.rand(7, 30) < 0.3).double(), torch.rand(7, 30, dtype=torch.float64)):
        general = (x * logits - torch.nn.functional.softplus(logits)).sum(-1)
        torch.testing.assert_close(lik(x, logits), general)
        (g1,) = torch.autograd.grad(lik(x, logits).sum(), logits)
        (g2,) = torch.autograd.grad(general.sum(), logits)
        torch.testing.assert_close(g1, g2)
    x = torch.tensor([[0.0, 1.0, 1.0]], dtype=torch.float64)  # sums to one over the 8 binary images
    images = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=torch.float64)
    assert abs(torch.logsumexp(lik(images, torch.randn(1, 3, dtype=torch.float64)), 0).item()) < 1e-9
    assert lik(x, torch.zeros(1, 3, dtype=torch.float64)).item() == -3 * math.log(2)


def test_gaussian_and_prior_match_torch_distributions():
    x, mean = torch.randn(4, 6), torch.randn(4, 6)
    ref = torch.distributions.Normal(mean, 0.7).log_prob(x).sum(-1)
    torch.testing.assert_close(Gaussian(0.7)(x, mean), ref)
    z = torch.randn(3, 4, 5)
    torch.testing.assert_close(log_prior(z), torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1))
