"""The fused discretized-logistic energy (lae.fused) against its references: the value and every gradient of the
custom autograd Function equal autograd through the reference formula (gradcheck and gradgradcheck in float64,
allclose in float32), the value equals the textbook bin probability in its 0 and 255 edge bins and in between, and the
likelihood module takes the fused path where a model trains. Also LAE's training energy: each chain's held
evaluation, computed from the acceptances at once."""

import pytest
import torch

from lae import fused
from lae.likelihoods import DiscretizedLogistic


def _images(n, p, dtype, seed=0):
    """8-bit images k/255 (n, p) whose first row has the 0 and 255 edge bins and their neighbours 1 and 254."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, p), generator=gen).to(dtype) / 255
    x[0, :4] = torch.tensor([0.0, 1.0, 254.0, 255.0], dtype=dtype) / 255
    return x


def _textbook_logistic(x, mean, log_scale):
    """log [F(a) - F(b)], a = (x + 1/510 - mean)/s, b = (x - 1/510 - mean)/s, F the logistic CDF, F(+inf) = 1 in the
    top bin and F(-inf) = 0 in the bottom one; as a difference of survival functions right of the mean (no
    cancellation there)."""
    s = torch.exp(log_scale)
    a, b = (x + 1 / 510 - mean) / s, (x - 1 / 510 - mean) / s
    interior = torch.where(b > 0, torch.sigmoid(-b) - torch.sigmoid(-a), torch.sigmoid(a) - torch.sigmoid(b))
    prob = torch.where(x < 1 / 510, torch.sigmoid(a), torch.where(x > 1 - 1 / 510, torch.sigmoid(-b), interior))
    return torch.log(prob).sum(-1)


@pytest.mark.parametrize("scale_shape", [(7,), (1,)], ids=["per-pixel", "shared"])
def test_logistic_gradients_are_exact_in_float64(scale_shape):
    x = _images(4, 7, torch.float64)
    gen = torch.Generator().manual_seed(1)
    mean = (torch.rand(2, 4, 7, generator=gen, dtype=torch.float64) * 1.2 - 0.1).requires_grad_()
    log_scale = (torch.randn(scale_shape, generator=gen, dtype=torch.float64) * 0.5 - 2.0).requires_grad_()
    fn = lambda m, ls: fused.discretized_logistic(x, m, ls)
    assert torch.autograd.gradcheck(fn, (mean, log_scale))
    assert torch.autograd.gradgradcheck(fn, (mean, log_scale))  # the Laplace proposal's Hessian path
    value = fn(mean, log_scale)
    assert value.grad_fn is not None and "_LogisticEdges" in type(value.grad_fn.next_functions[0][0]).__name__
    torch.testing.assert_close(value, _textbook_logistic(x, mean, log_scale), rtol=1e-12, atol=1e-10)


def test_logistic_value_and_gradients_match_the_reference_in_float32_edge_bins_included():
    """Weighted like LAE's training loss, twice through the same graph like its z-gradient then its training
    backward; the edge bins (x = 0, 255) and the tails (mean far outside [0, 1]) included."""
    x = _images(50, 784, torch.float32)
    gen = torch.Generator().manual_seed(2)
    mean = (torch.rand(3, 50, 784, generator=gen) * 3.0 - 1.0).requires_grad_()
    log_scale = (torch.randn(784, generator=gen) * 0.5 - 2.0).requires_grad_()
    weights = torch.rand(3, 50, generator=gen)
    masks = fused.logistic_masks(x)
    ref = fused.logistic_edges_reference(x, mean, log_scale, *masks) + fused.logistic_width(
        log_scale, masks[0] * masks[1]
    )
    got = fused.discretized_logistic(x, mean, log_scale, masks)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)  # the same arithmetic for the value
    ref_first = torch.autograd.grad(ref.sum(), mean, retain_graph=True)[0]
    got_first = torch.autograd.grad(got.sum(), mean, retain_graph=True)[0]
    torch.testing.assert_close(got_first, ref_first, rtol=1e-5, atol=1e-6)
    ref_grads = torch.autograd.grad((weights * ref).sum(), (mean, log_scale))
    got_grads = torch.autograd.grad((weights * got).sum(), (mean, log_scale))
    for g, r in zip(got_grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4 * r.abs().max().item())
    exact = _textbook_logistic(x.double(), mean.detach().double(), log_scale.detach().double())
    torch.testing.assert_close(got.detach().double(), exact, rtol=1e-5, atol=0.0)


def test_the_likelihood_module_takes_the_fused_path_when_training_and_the_reference_otherwise():
    lik = DiscretizedLogistic(9, scale="shared")
    x8 = _images(4, 9, torch.float32)
    mean = torch.rand(4, 9, requires_grad=True)
    out = lik(x8, mean)
    assert "_LogisticEdges" in type(out.grad_fn.next_functions[0][0]).__name__
    (g_tau,) = torch.autograd.grad(out.sum(), lik.logit_tau)
    masks = fused.logistic_masks(x8)
    ref = fused.logistic_edges_reference(x8, mean, lik.log_s(), *masks) + fused.logistic_width(
        lik.log_s(), masks[0] * masks[1]
    )
    torch.testing.assert_close(g_tau, torch.autograd.grad(ref.sum(), lik.logit_tau)[0], rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(lik(x8, mean), ref)


def test_a_gradient_in_the_data_takes_the_reference_formula():
    """Attacks differentiate in x: the fused Functions give no x-gradient, so x that requires one is routed to the
    reference formula and its gradient is autograd's."""
    x = _images(3, 6, torch.float64).requires_grad_()
    mean = torch.rand(3, 6, dtype=torch.float64, requires_grad=True)
    log_scale = torch.full((6,), -1.5, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(fused.discretized_logistic(x, mean, log_scale).sum(), x)
    (gm,) = torch.autograd.grad(fused.discretized_logistic(x.detach(), mean, log_scale).sum(), mean)
    torch.testing.assert_close(gx, -gm)  # the value depends on x - mean inside each bin


@pytest.mark.parametrize("mh", [True, False])
def test_lae_training_energy_is_each_chains_held_evaluation_with_or_without_a_host_read(mh):
    """LAE's training energy (lae.lae.LAE._held_energy, computed from the (T, C) acceptances at once) equals the
    explicit sum over steps and chains of the evaluation each chain holds, in value and decoder gradient, whether
    the evaluations no chain holds are left out (CPU: one host read) or masked (other devices: none)."""
    from lae.config import RunConfig
    from lae.train import load_data, new_model

    config = RunConfig(model="lae", dataset="digits", hidden=32, latent_dim=3, n_chains=3, n_steps=4, mh=mh)
    x = load_data(config).train.x[:30]
    torch.manual_seed(0)
    model = new_model(config, x.shape[1], torch.device("cpu"))
    with torch.no_grad():
        model.log_step_size.fill_(-3.0)  # some proposals accepted, some rejected
    evals = []
    _, infos = model.run_chains(x, torch.Generator().manual_seed(1), on_eval=evals.append)
    held, expected = torch.zeros(3, dtype=torch.long), 0.0
    for t, info in enumerate(infos, 1):
        held = torch.where(info.is_accepted, t, held)
        expected = expected + sum(evals[h][c] for c, h in enumerate(held.tolist()))
    accepted = torch.stack([i.is_accepted for i in infos])
    assert not mh or 0 < accepted.float().mean() < 1, accepted  # both kinds of step happen
    params = list(model.decoder.parameters())
    ref = torch.autograd.grad(expected, params, retain_graph=True)
    for skip in (True, False):
        got = model._held_energy(evals, infos, skip_unused=skip)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=0.0)
        for g, r in zip(torch.autograd.grad(got, params, retain_graph=True), ref):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5 * r.abs().max().item())


@pytest.mark.parametrize("likelihood", ["bernoulli", "logistic", "logistic_shared"])
def test_lae_loss_without_mh_has_the_held_energys_value_gradients_and_chain(likelihood):
    """Without MH, LAE's training loss takes the decoder's and likelihood's gradients in the z-gradient passes and
    the trunk's from the z-gradients (lae.lae.LAE._loss_without_mh). Its value and every parameter's gradient (trunk,
    decoder, likelihood) equal autograd through `_held_energy` (evaluations 1..T of every chain) from the same
    generator, within float32 rounding (relative 1e-5 of each gradient's largest entry), and its chains take the same
    moves (positions within 1e-6)."""
    import copy

    from lae.lae import LAE, LAEConfig

    torch.manual_seed(0)
    config = LAEConfig(n_pixels=20, latent_dim=3, hidden=16, n_chains=3, n_steps=3, mh=False, likelihood=likelihood)
    model = LAE(config).train()
    x = torch.rand(8, 20)
    x = (x > 0.5).float() if likelihood == "bernoulli" else (x * 255).round() / 255
    reference = copy.deepcopy(model)
    loss, _ = model.loss(x, torch.Generator().manual_seed(1))
    loss.backward()
    evals = []
    state, infos = reference.run_chains(x, torch.Generator().manual_seed(1), on_eval=evals.append)
    expected = reference._held_energy(evals, infos, skip_unused=True) / (config.n_steps * config.n_chains * 8)
    expected.backward()
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-6, atol=0.0)
    for (name, p), r in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, r.grad, rtol=1e-5, atol=1e-5 * r.grad.abs().max().item(), msg=name)
    torch.testing.assert_close(model._proposed.phi, state.position, rtol=0.0, atol=1e-6)
