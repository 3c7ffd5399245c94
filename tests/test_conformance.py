"""The conformance kit (lae.conformance): every built-in family passes it, and it fails families that break what the
estimators rely on (an unnormalised prior, a false claim of exact posterior samples)."""

from dataclasses import dataclass

import pytest
import torch

from lae import conformance
from lae.families import BUILT_IN, FAMILIES, Family
from lae.likelihoods import log_prior
from lae.models import ModelConfig
from lae.vae import VAE

pytestmark = pytest.mark.usefixtures("one_thread")

# LAE's exact-posterior check mixes within POSTERIOR_DRAWS / n_chains ALD steps at this step size (tests/test_samplers)
OPTIONS = {"lae": {"n_chains": 64, "step_size": 2e-3}}
NO_ELBO = {"lae", "frozen", "map"}  # no variational distribution: LAE and its no-sampling controls (lae.controls)


@pytest.mark.parametrize("kind", list(BUILT_IN))
def test_every_built_in_family_conforms(kind):
    checks = {c.name: c for c in conformance.run(kind, OPTIONS.get(kind))}
    assert list(checks) == ["prior", "elbo", "is", "ais", "posterior", "checkpoint"]
    assert all(c.passed is not False for c in checks.values()), conformance.report(list(checks.values()))
    assert checks["is"].passed and checks["ais"].passed and checks["checkpoint"].passed and checks["prior"].passed
    assert (checks["elbo"].passed is None) == (kind in NO_ELBO)  # LAE and its controls have none; the rest are judged
    assert (checks["posterior"].passed is None) == (kind != "lae")  # only LAE claims exact samples


@dataclass(frozen=True)
class _BrokenConfig(ModelConfig):
    pass


class _UnnormalisedPrior(VAE):
    """log p(z) one nat too high: every log p(x) estimate inflates with it, the prior check must say so."""

    def log_prior(self, z):
        return log_prior(z) + 1.0


class _FalseClaim(VAE):
    """Claims exact posterior samples but draws from its (amortised, diagonal) encoder."""

    exact_posterior = True


@pytest.mark.parametrize("model, failing", [(_UnnormalisedPrior, "prior"), (_FalseClaim, "posterior")])
def test_the_kit_fails_a_family_that_breaks_the_contract(monkeypatch, model, failing):
    monkeypatch.setitem(FAMILIES, "broken", Family(_BrokenConfig, model))
    monkeypatch.setattr(conformance, "POSTERIOR_DRAWS", 20_000)
    checks = {c.name: c for c in conformance.run("broken")}
    assert checks[failing].passed is False, conformance.report(list(checks.values()))
    assert checks["checkpoint"].passed is False  # not a registered --model of this process: cannot be rebuilt
    assert checks["is"].passed  # IS and AIS estimate the model's own (here: unnormalised) marginal correctly


def test_cli_runs_the_kit_and_refuses_an_unknown_family(tmp_path):
    from conftest import bench_cli

    run = bench_cli("conformance", "iwae", "--options", '{"k": 3}', timeout=300)
    assert run.returncode == 0, run.stderr
    assert "iwae: conforms" in run.stdout and "PASS  ais" in run.stdout
    bad = bench_cli("conformance", "nope")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "vae" in bad.stderr
    bad = bench_cli("conformance", "iwae", "--options", '{"kk": 3}')
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "kk" in bad.stderr


def test_quadrature_matches_the_closed_form_posterior():
    from lae.linear_gaussian import LinearGaussian

    truth = LinearGaussian.random(conformance.P, conformance.D, noise_std=0.5, seed=7)
    x = truth.sample(4, torch.Generator().manual_seed(0)).float()
    exact = conformance.quadrature(truth.model("vae"), x)
    mean, cov = truth.posterior(x)
    assert torch.allclose(exact.mean, mean, atol=1e-4) and torch.allclose(exact.cov, cov.expand(4, 2, 2), atol=1e-4)
    assert torch.allclose(exact.log_marginal, truth.log_marginal(x), atol=1e-3)
