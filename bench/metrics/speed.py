"""Sampling speed: the speed group of metrics.

Protocol: generation = model.generate(gen_batch) (prior -> decoder mean); posterior = the model's own
posterior sampler (VAE/IWAE: amortized encoder draws; LVAE: encoder + MALA refinement; LAE: ALD steps)
on config.batch_size test images, speed_posterior_samples draws per image. speed_warmup untimed calls,
then the median of speed_repeats timed calls; the thread count is recorded as eval_threads.
"""

from __future__ import annotations

import statistics
import time

import torch

from bench.metrics.settings import MetricSettings
from lae.config import RunConfig
from lae.data import Dataset
from lae.utils import model_device


def median_seconds(fn, repeats: int, warmup: int) -> float:
    """Median wall time of fn() over `repeats` calls after `warmup` calls (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def speed_metrics(model, config: RunConfig, dataset: Dataset, s: MetricSettings, gen) -> dict:
    """{gen_samples_per_s, posterior_samples_per_s}: images per second and z samples per second (one per
    image and draw). Draws from `gen`: generation calls, then posterior calls."""
    device = model_device(model)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def generate():
        model.generate(s.gen_batch, gen)
        sync()

    x = dataset.test.x[: config.batch_size].to(device)

    def posterior():
        model.posterior_samples(x, s.speed_posterior_samples, gen)
        sync()

    t_gen = median_seconds(generate, s.speed_repeats, s.speed_warmup)
    t_post = median_seconds(posterior, s.speed_repeats, s.speed_warmup)
    return {
        "gen_samples_per_s": s.gen_batch / t_gen,
        "posterior_samples_per_s": s.speed_posterior_samples * x.shape[0] / t_post,
    }
