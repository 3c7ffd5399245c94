"""Throughput of the evaluation paths (pytest-benchmark; not part of the default `pytest` run):

    pytest benchmarks/bench_metrics.py --benchmark-columns=median,ops

- AIS and IS: likelihood evaluations per second (one evaluation = log p(x | z) of one (image, z) pair;
  AIS's also include the gradient in z), reported in `extra_info["evals_per_s"]`.
- generation (prior -> decoder output) and posterior sampling (VAE amortized, LVAE MALA refinement,
  LAE ALD steps), parameterized by n_chains and latent_dim; samples per second in extra_info.

Models are untrained (speed does not depend on the weights) MNIST-sized networks (784 pixels,
hidden 256, depth 1); images are binarized real MNIST test images when $LAE_BENCH_DATA holds them,
else Bernoulli noise of the same shape. The thread count is recorded in extra_info["threads"].
"""

from __future__ import annotations

import pytest
import torch

from lae import estimators
from lae.config import RunConfig
from lae.train import new_model

N_IMAGES = 100


def _images(n: int = N_IMAGES) -> torch.Tensor:
    try:
        from lae import data

        return data.load("mnist", "static", test_size=n, download=False).test.x
    except Exception:  # no MNIST here: same shape and sparsity
        return torch.bernoulli(torch.full((n, 784), 0.13), generator=torch.Generator().manual_seed(0))


def _model(kind: str, latent_dim: int = 16, n_chains: int = 1):
    torch.manual_seed(0)
    config = RunConfig(model=kind, dataset="mnist", latent_dim=latent_dim, n_chains=n_chains, device="cpu")
    model = new_model(config, 784, torch.device("cpu")).eval()
    model.requires_grad_(False)
    return model


def _record(benchmark, units: float, key: str) -> None:
    benchmark.extra_info["threads"] = torch.get_num_threads()
    benchmark.extra_info[key] = units / benchmark.stats.stats.median


@pytest.mark.parametrize("latent_dim", [16, 64])
def test_ais_throughput(benchmark, latent_dim):
    model, x = _model("vae", latent_dim), _images()
    gen = torch.Generator().manual_seed(0)
    settings = estimators.AISSettings(n_intermediate=20)
    k, c, n_leapfrog = settings.n_intermediate, settings.n_chains, settings.n_leapfrog
    benchmark.pedantic(lambda: estimators.ais(model, x, settings, gen), rounds=3, warmup_rounds=1)
    _record(benchmark, k * c * n_leapfrog * len(x), "evals_per_s")
    # the headline default, extrapolated: seconds for 1,000 images
    benchmark.extra_info["ais_default_s_per_1000_images"] = (
        estimators.AIS_INTERMEDIATE * c * n_leapfrog * 1000 / benchmark.extra_info["evals_per_s"]
    )


@pytest.mark.parametrize("kind", ["vae", "lae"])
def test_is_throughput(benchmark, kind):
    model, x = _model(kind), _images()
    gen = torch.Generator().manual_seed(0)
    k = 500
    benchmark.pedantic(lambda: estimators.importance_sampling(model, x, k, gen), rounds=3, warmup_rounds=1)
    _record(benchmark, k * len(x), "evals_per_s")


@pytest.mark.parametrize("latent_dim", [16, 64])
def test_generation(benchmark, latent_dim):
    model = _model("vae", latent_dim)
    gen = torch.Generator().manual_seed(0)
    n = 1000
    benchmark.pedantic(lambda: model.generate(n, gen), rounds=5, warmup_rounds=1)
    _record(benchmark, n, "samples_per_s")


@pytest.mark.parametrize("latent_dim", [16, 64])
@pytest.mark.parametrize("kind,n_chains", [("vae", 1), ("lvae", 1), ("lae", 1), ("lae", 4), ("lae", 16)])
def test_posterior_sampling(benchmark, kind, n_chains, latent_dim):
    """Posterior z samples per second, counted per (image, draw), on a 100-image batch."""
    model, x = _model(kind, latent_dim, n_chains), _images()
    gen = torch.Generator().manual_seed(0)
    n = 16
    benchmark.pedantic(lambda: model.posterior_samples(x, n, gen), rounds=5, warmup_rounds=1)
    _record(benchmark, n * len(x), "samples_per_s")
