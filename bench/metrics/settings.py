"""The sizes of an evaluation (the protocols are fixed): MetricSettings and its presets, named as in
bench.registry.PRESETS (a sweep budget names its preset)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from bench.errors import BenchError
from bench.registry import ADV_EPS, PRESETS
from lae import estimators
from lae.config import COUNTS, DEFAULT_PIXELS, INT32_MAX, Range, physical_memory_bytes


@dataclass
class MetricSettings:
    """Sizes of the evaluation (the protocols are fixed). Defaults = the "full" preset."""

    subset: int | None = None  # loglik on the first N test images (None: the whole test split)
    ais_intermediate: int = estimators.AIS_INTERMEDIATE  # distributions strictly between start and posterior
    ais_chains: int = estimators.AIS_CHAINS  # AIS runs per image (log-mean-exp over them)
    ais_leapfrog: int = estimators.AIS_LEAPFROG  # leapfrog steps per HMC transition
    ais_step_size: float = estimators.AIS_STEP_SIZE  # initial leapfrog step, whitened units (adapted per image)
    ais_start: str = "proposal"  # AIS anneals from the model's IS proposal ("proposal") or from N(0, I) ("prior")
    ais_max_intermediate: int = 0  # > 0: double ais_intermediate up to this until the error bound < ais_tolerance
    ais_tolerance: float = estimators.ESCALATION_FLOOR  # nats per image (a quarter of a difference to decide it)
    bdmc_images: int = 500  # images simulated from the model for the BDMC bound on the AIS error (same AIS settings)
    is_samples: int = 1000  # importance samples per image
    paper_images: int | None = None  # test_bpd_paper on the first N test images (None: all, as the paper)
    estimator_batch: int = estimators.DEFAULT_BATCH  # (sample, image) pairs per decoder call
    probe_train_size: int | None = None  # probe fit on the first N training images (None: all)
    probe_c: float = 1.0  # inverse L2 strength of the logistic regression
    probe_max_iter: int = 1000
    adv_subset: int | None = 1000  # attacked test images (first N; None: all)
    adv_eps: tuple[float, ...] = ADV_EPS  # L-infinity radii on [0, 1] pixels
    pgd_steps: int = 40
    pgd_step_frac: float = 0.1  # PGD step = eps * pgd_step_frac (40 steps of 0.1 eps can cross the ball twice)
    speed_repeats: int = 5
    speed_warmup: int = 1
    gen_batch: int = 1000  # images per generation call
    speed_posterior_samples: int = 10  # posterior draws per image per timed call
    quality_images: int = 10_000  # generated and test images of the quality group (0: skip the group)

    PRESETS = PRESETS  # not a field: the preset names, cheapest first

    @classmethod
    def preset(cls, name: str) -> MetricSettings:
        """smoke: seconds, for smoke sweeps (likelihoods not converged); default: the sweeps' budget, AIS of 100
        distributions x 4 chains on a fixed 500-image subset and BDMC on 100 simulated images; full: the whole test
        split, AIS of 500 x 8, BDMC on 500."""
        if name == "smoke":  # seconds; its likelihoods are not converged (the leaderboards say so)
            return cls(
                subset=100,
                paper_images=1000,
                ais_intermediate=20,
                ais_chains=2,
                is_samples=100,
                bdmc_images=20,
                probe_train_size=2000,
                probe_max_iter=200,
                adv_subset=100,
                speed_repeats=3,
                gen_batch=200,
                speed_posterior_samples=4,
                quality_images=1000,
            )
        if name == "default":  # BDMC gap under 0.5 nats on MNIST D = 16 (results/README.md)
            return cls(
                subset=500,
                ais_intermediate=100,
                ais_chains=4,
                is_samples=1000,
                bdmc_images=100,
                probe_train_size=10_000,
                adv_subset=500,
                speed_repeats=5,
            )
        if name == "full":
            return cls()
        raise BenchError(f"unknown metrics preset {name!r}; choose one of: {', '.join(cls.PRESETS)}")

    def validate(self, where: str = "metric settings") -> MetricSettings:
        """Check every size's type and range (integers: lae.config.COUNTS, 1..2**31-1, or 0.. for bdmc_images and
        quality_images; floats: positive and finite), then the memory estimate (`memory_bytes`) against this machine's
        physical memory (BenchError naming `where` and the field); returns self."""

        def bad(name: str, why: str) -> BenchError:
            return BenchError(f"{where}: {name} {why}; got {getattr(self, name)!r}")

        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("subset", "probe_train_size", "adv_subset", "paper_images") and v is None:
                continue
            if f.name == "ais_start":
                if v not in estimators.AIS_STARTS:
                    raise bad(f.name, f"must be one of {', '.join(estimators.AIS_STARTS)}")
            elif f.name == "adv_eps":
                if not isinstance(v, (tuple, list)) or not v or not all(_number(e) and 0 < e <= 1 for e in v):
                    raise bad(f.name, "must be a non-empty list of radii in (0, 1]")
            elif isinstance(f.default, float):
                if not (_number(v) and 0 < v < math.inf):
                    raise bad(f.name, "must be a positive finite number")
            elif not (_SIZES if f.name in _MAY_BE_ZERO else COUNTS).holds(v):
                raise bad(f.name, f"must be {(_SIZES if f.name in _MAY_BE_ZERO else COUNTS).describe()}")
        need, have = self.memory_bytes(), physical_memory_bytes()
        if need > have:
            raise BenchError(
                f"{where}: ais_intermediate={self.ais_intermediate}, ais_chains={self.ais_chains}, "
                f"estimator_batch={self.estimator_batch}, quality_images={self.quality_images}: the evaluation's "
                f"buffers need about {need / 1e9:.3g} GB (MetricSettings.memory_bytes), more than this machine's "
                f"{have / 1e9:.3g} GB of memory"
            )
        return self

    def memory_bytes(self) -> int:
        """An estimate in bytes of the largest buffers these sizes make an evaluation allocate, from the sizes alone
        (nothing is allocated; the model's own are RunConfig.memory_bytes'): AIS's schedule (ais_intermediate + 2
        inverse temperatures, as a float64 tensor and a Python list: 40 bytes each), one chunk of AIS chains or IS
        samples (max(estimator_batch, ais_chains, is_samples) (sample, image) pairs, 12 bytes per decoder output of
        DEFAULT_PIXELS (an MNIST image; the sizes are not tied to a dataset here): value, gradient, momentum), and the
        quality group's and one generation batch's images (float32)."""
        schedule = 40 * (max(self.ais_intermediate, self.ais_max_intermediate) + 2)  # the longest escalated schedule
        chains = 12 * max(self.estimator_batch, self.ais_chains, self.is_samples) * DEFAULT_PIXELS
        images = 4 * DEFAULT_PIXELS * (2 * self.quality_images + self.gen_batch * self.speed_posterior_samples)
        return schedule + chains + images

    def replace(self, **changes) -> MetricSettings:
        """A copy with some settings changed: MetricSettings.preset("smoke").replace(subset=50)."""
        return dataclasses.replace(self, **changes)


_MAY_BE_ZERO = ("bdmc_images", "quality_images", "ais_max_intermediate")  # 0: skip that part (or no escalation)
_SIZES = Range(0, INT32_MAX)  # their range; every other integer setting is in lae.config.COUNTS (1..2**31-1)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
