"""The conformance kit: what the suite's estimators rely on, checked for one model family on the tractable
linear-Gaussian model (lae.linear_gaussian: its decoder is exactly x = W z + b + noise), where log p(x) is known.

    checks = conformance.run("vampprior")            # list[Check]; every built-in family passes
    python -m bench conformance vampprior            # the same, printed; exit status 1 on a failure

The family's model is built on the linear-Gaussian decoder (lae.linear_gaussian.LinearGaussian.model, linear
encoders) with its own prior (`log_prior`), and trained for FIT_STEPS minibatches of fresh images with its own
`loss` and `update`, the decoder held at the truth (so an ELBO is judged near log p(x), not far below it).
With D = 2 latent dimensions the truth is a quadrature: log p(x) = log sum_g exp(log_joint(x, z_g)) dz^2 over a
fine grid, and the exact posterior's mean and covariance likewise, so a family with any prior is judged against
its own marginal likelihood. The checks:

  prior       the prior integrates to one (grid); for an N(0, I) prior the grid's log p(x) equals the closed form
  elbo        the family's ELBO (where it has one), averaged over ELBO_DRAWS draws, is at most log p(x)
  is          importance sampling from the family's proposal lands on log p(x) (IS_SAMPLES samples)
  ais         AIS from the family's proposal lands on log p(x), from below (AIS_INTERMEDIATE distributions)
  posterior   where the family claims exact samples (LatentModel.exact_posterior), the second half of
              posterior_samples(x, n) (draws in time order; the first half is burn-in) has the exact posterior's
              mean (batch means: at most MEAN_Z_MAX standard errors) and covariance (COV_REL_TOL)
  checkpoint  a checkpoint of the family (lae.train.save_checkpoint) loads back with the same tensors and the same
              log p(x, z); where CUDA exists, also onto the GPU and back

Tolerances are for the sizes here (N_IMAGES images, tight posteriors); every number is in nats per image.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch

from lae import estimators
from lae.linear_gaussian import LinearGaussian
from lae.models import LatentModel

P, D, N_IMAGES = 16, 2, 8  # pixels, latent dimensions, images (LAE: features g(x) = x of rank N <= P, Theorem 1)
NOISE_STD = 1.0
GRID_HALF_WIDTH, GRID_POINTS = 8.0, 401  # the quadrature grid: [-8, 8]^2, spacing 0.04
PRIOR_TOL = 0.01  # |log of the prior's integral|
CLOSED_FORM_TOL = 1e-3  # grid vs closed-form log p(x), N(0, I) prior
ELBO_DRAWS = 200
IS_SAMPLES, IS_TOL_MEAN, IS_TOL_MAX = 2000, 0.03, 0.15
AIS_INTERMEDIATE, AIS_CHAINS, AIS_TOL_MEAN, AIS_TOL_ABOVE = 200, 8, 0.1, 0.03
AIS_SETTINGS = estimators.AISSettings(n_intermediate=AIS_INTERMEDIATE, n_chains=AIS_CHAINS)
MEAN_Z_MAX = 4.5  # max |sample mean - exact mean| / batch-means standard error over N*D coordinates
COV_REL_TOL = 0.10  # relative Frobenius error of the pooled posterior covariance
BATCHES = 16  # batch means of the posterior check: the kept draws cut into this many consecutive blocks
POSTERIOR_DRAWS = 64 * 1900  # posterior_samples(x, n) draws per image for a family claiming exact samples
FIT_STEPS, FIT_LR = 300, 1e-2  # Adam on everything but the decoder, minibatches of N_IMAGES fresh images
CHECKPOINT_TOL = 1e-4  # nats: log p(x, z) after a CPU <-> GPU round trip


class Check(NamedTuple):
    name: str
    passed: bool | None  # None: not applicable to this family (detail says why)
    detail: str


def posterior_mismatch(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> tuple[float, float]:
    """samples (C, S, N, D) from C independent chains (or C consecutive batches of one). Returns (max z-score of the
    per-point means, using the spread of per-chain averages as the s.e.; relative Frobenius error of the pooled
    covariance about the exact means). mean (N, D), cov (D, D) or (N, D, D) (the covariance then averaged)."""
    samples = samples.double()
    chain_means = samples.mean(1)  # (C, N, D): independent across chains
    se = chain_means.std(0) / math.sqrt(samples.shape[0])
    z = ((chain_means.mean(0) - mean) / se).abs().max().item()
    centered = (samples - mean).reshape(-1, mean.shape[-1])
    emp = centered.T @ centered / centered.shape[0]
    cov = cov.mean(0) if cov.dim() == 3 else cov
    return z, (torch.linalg.norm(emp - cov) / torch.linalg.norm(cov)).item()


class Quadrature(NamedTuple):
    log_marginal: torch.Tensor  # (N,) log p(x), float64
    mean: torch.Tensor  # (N, D) posterior means
    cov: torch.Tensor  # (N, D, D) posterior covariances
    log_prior_mass: float  # log of the prior's integral over the grid (0 for a normalised prior)


@torch.no_grad()
def quadrature(model: LatentModel, x: torch.Tensor, chunk: int = 4096) -> Quadrature:
    """The model's exact log p(x) and posterior moments for images x (N, P), D = 2, on the module's grid."""
    axis = torch.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, GRID_POINTS, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis).to(x.device)  # (G, 2)
    log_cell = 2 * math.log(float(axis[1] - axis[0]))
    log_joint, log_prior = [], []
    for zg in grid.split(chunk):
        z = zg.to(x.dtype).unsqueeze(1).expand(-1, x.shape[0], -1)  # (g, N, D)
        log_joint.append(model.log_joint(x, z).double())
        log_prior.append(model.log_prior(zg.to(x.dtype)).double())
    lj = torch.cat(log_joint)  # (G, N)
    log_px = torch.logsumexp(lj, 0) + log_cell
    w = torch.softmax(lj, 0)  # (G, N) posterior weights
    mean = w.T @ grid  # (N, D)
    centered = grid.unsqueeze(1) - mean  # (G, N, D)
    cov = torch.einsum("gn,gni,gnj->nij", w, centered, centered)
    return Quadrature(log_px.cpu(), mean.cpu(), cov.cpu(), (torch.logsumexp(torch.cat(log_prior), 0) + log_cell).item())


def run(kind: str, options: dict | None = None, seed: int = 0, device: str = "cpu") -> list[Check]:
    """Every check of the module docstring for family `kind` (lae.families), its config built with `options`
    (e.g. LAE's n_chains, step_size). Returns the checks in order; none raises on a failed property."""
    truth = LinearGaussian.random(P, D, noise_std=NOISE_STD, seed=seed)
    x = truth.sample(N_IMAGES, torch.Generator().manual_seed(seed + 1)).float().to(device)
    model = truth.model(kind, **(options or {})).to(device)
    gen = torch.Generator(device=device).manual_seed(seed + 2)
    fit(model, truth, gen, seed)
    exact = quadrature(model, x)
    checks = [_prior(model, truth, x, exact), _elbo(model, x, exact, gen)]
    est = estimators.importance_sampling(model, x, IS_SAMPLES, gen).double().cpu()
    err = est - exact.log_marginal
    checks.append(
        Check(
            "is",
            abs(err.mean().item()) < IS_TOL_MEAN and err.abs().max().item() < IS_TOL_MAX,
            f"IS ({IS_SAMPLES} samples) - log p(x): mean {err.mean().item():+.3f}, worst {err.abs().max().item():.3f}"
            f" nats (tolerances {IS_TOL_MEAN}, {IS_TOL_MAX})",
        )
    )
    est = estimators.ais(model, x, AIS_SETTINGS, gen).double().cpu()
    gap = (exact.log_marginal - est).mean().item()
    checks.append(
        Check(
            "ais",
            -AIS_TOL_ABOVE < gap < AIS_TOL_MEAN,
            f"log p(x) - AIS ({AIS_INTERMEDIATE} x {AIS_CHAINS}): {gap:+.3f} nats (a lower bound: within "
            f"-{AIS_TOL_ABOVE}..{AIS_TOL_MEAN})",
        )
    )
    checks.append(_posterior(model, x, exact, gen))
    try:
        checks.append(_checkpoint(kind, options or {}, seed))
    except Exception as exc:  # a family the harness cannot save or rebuild: a failed check, not a crash
        checks.append(Check("checkpoint", False, f"{type(exc).__name__}: {' '.join(str(exc).split())}"))
    return checks


def fit(model: LatentModel, truth: LinearGaussian, generator, seed: int) -> None:
    """FIT_STEPS training steps (loss, Adam, update) on fresh images of the truth, the decoder frozen at it; leaves
    the model in eval mode."""
    device = next(model.decoder.parameters()).device
    data = torch.Generator().manual_seed(seed + 3)
    params = [p for name, p in model.named_parameters() if not name.startswith("decoder.")]
    opt = torch.optim.Adam(params, lr=FIT_LR) if params else None
    model.train()
    for _ in range(FIT_STEPS):
        x = truth.sample(N_IMAGES, data).float().to(device)
        loss, _ = model.loss(x, generator)
        if opt is not None:
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.update()
    model.eval()


def _prior(model, truth, x, exact: Quadrature) -> Check:
    detail = f"log of the prior's mass on the grid {exact.log_prior_mass:+.4f}"
    ok = abs(exact.log_prior_mass) < PRIOR_TOL
    if type(model).log_prior is LatentModel.log_prior:  # N(0, I): the closed form checks the grid itself
        off = (exact.log_marginal - truth.log_marginal(x.cpu().double())).abs().max().item()
        ok = ok and off < CLOSED_FORM_TOL
        detail += f"; grid vs closed-form log p(x): {off:.1e} nats"
    return Check("prior", ok, detail)


def _elbo(model, x, exact: Quadrature, gen) -> Check:
    with torch.no_grad():
        draws = [model.elbo(x, gen) for _ in range(ELBO_DRAWS)]
    if draws[0] is None:
        return Check("elbo", None, f"{type(model).__name__} has no ELBO")
    elbo = torch.stack(draws).double().cpu()  # (R, N)
    mean, se = elbo.mean().item(), elbo.mean(1).std().item() / math.sqrt(ELBO_DRAWS)
    truth = exact.log_marginal.mean().item()
    return Check(
        "elbo", mean <= truth + 4 * se, f"ELBO {mean:.3f} (s.e. {se:.3f}) <= log p(x) {truth:.3f} nats per image"
    )


def _posterior(model, x, exact: Quadrature, gen) -> Check:
    if not type(model).exact_posterior:
        return Check("posterior", None, f"{type(model).__name__} does not claim exact posterior samples")
    with torch.no_grad():
        samples = model.posterior_samples(x, POSTERIOR_DRAWS, gen).detach().double().cpu()
    kept = samples[samples.shape[0] // 2 :]
    kept = kept[: kept.shape[0] - kept.shape[0] % BATCHES].reshape(BATCHES, -1, *kept.shape[1:])
    z, cov_err = posterior_mismatch(kept, exact.mean, exact.cov)
    return Check(
        "posterior",
        z < MEAN_Z_MAX and cov_err < COV_REL_TOL,
        f"means off by at most {z:.1f} s.e. (< {MEAN_Z_MAX}), covariance by {cov_err:.1%} (< {COV_REL_TOL:.0%})",
    )


def _checkpoint(kind: str, options: dict, seed: int) -> Check:
    from lae.config import RunConfig  # the harness's run config: imported here, the kit itself needs none
    from lae.train import TrainResult, load_checkpoint, new_model, save_checkpoint

    fields = {f.name for f in dataclasses.fields(RunConfig)}
    run_options = {k: v for k, v in options.items() if k in fields and k not in ("device", "data_dir")}
    config = RunConfig(model=kind, dataset="digits", latent_dim=D, hidden=16, batch_size=N_IMAGES, **run_options)
    torch.manual_seed(seed)
    model = new_model(config.validate(), 64, torch.device("cpu")).eval()
    g = torch.Generator().manual_seed(seed)
    x, z = torch.rand(N_IMAGES, 64, generator=g).round(), torch.randn(3, N_IMAGES, D, generator=g)
    with torch.no_grad():
        before = model.log_joint(x, z)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(TrainResult(model, config), Path(tmp) / "model.pt")
        for device in devices:
            loaded, _ = load_checkpoint(path, device=device)
            same = all(torch.equal(v.cpu(), model.state_dict()[k]) for k, v in loaded.state_dict().items())
            with torch.no_grad():
                after = loaded.log_joint(x.to(device), z.to(device)).cpu()
            off = (after - before).abs().max().item()
            if not same or set(loaded.state_dict()) != set(model.state_dict()) or off > CHECKPOINT_TOL:
                problems.append(f"{device}: tensors equal {same}, log p(x, z) off by {off:.1e}")
    return Check("checkpoint", not problems, "; ".join(problems) or f"round trip on {', '.join(devices)}: identical")


def report(checks: list[Check]) -> str:
    """One line per check: PASS / FAIL / n/a, name, detail."""
    marks = {True: "PASS", False: "FAIL", None: "n/a "}
    return "\n".join(f"{marks[c.passed]}  {c.name:<10}  {c.detail}" for c in checks)
