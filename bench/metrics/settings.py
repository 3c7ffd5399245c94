"""The sizes of an evaluation (the protocols are fixed): MetricSettings and its presets, named as in
bench.registry.PRESETS (a sweep budget names its preset)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.errors import BenchError
from bench.registry import ADV_EPS, PRESETS
from lae import estimators


@dataclass
class MetricSettings:
    """Sizes of the evaluation (the protocols are fixed). Defaults = the "full" preset."""

    subset: int | None = None  # loglik on the first N test images (None: the whole test split)
    ais_intermediate: int = estimators.AIS_INTERMEDIATE  # distributions strictly between prior and posterior
    ais_chains: int = estimators.AIS_CHAINS  # AIS runs per image (log-mean-exp over them)
    ais_leapfrog: int = estimators.AIS_LEAPFROG  # leapfrog steps per HMC transition
    ais_step_size: float = estimators.AIS_STEP_SIZE  # initial leapfrog step (adapted per image)
    is_samples: int = 1000  # importance samples per image
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

    PRESETS = PRESETS  # not a field: the preset names, cheapest first

    @classmethod
    def preset(cls, name: str) -> MetricSettings:
        """smoke: seconds, for smoke sweeps; default: ~30-60 s per MNIST model, headline AIS on a fixed
        500-image subset; full: the whole test split at the estimators' default settings."""
        if name == "smoke":
            return cls(
                subset=100,
                ais_intermediate=50,
                ais_chains=4,
                is_samples=100,
                probe_train_size=2000,
                probe_max_iter=200,
                adv_subset=100,
                adv_eps=ADV_EPS,
                pgd_steps=40,
                speed_repeats=3,
                gen_batch=200,
                speed_posterior_samples=4,
            )
        if name == "default":
            return cls(
                subset=500,
                ais_intermediate=300,
                ais_chains=8,
                is_samples=1000,
                probe_train_size=10_000,
                adv_subset=500,
                speed_repeats=5,
            )
        if name == "full":
            return cls()
        raise BenchError(f"unknown metrics preset {name!r}; choose one of: {', '.join(cls.PRESETS)}")

    def replace(self, **changes) -> MetricSettings:
        """A copy with some settings changed: MetricSettings.preset("smoke").replace(subset=50)."""
        return dataclasses.replace(self, **changes)
