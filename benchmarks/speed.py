"""Training-step speed: images/s, FLOP rate as a share of a float32 matmul measured in the same run,
and the LAE/VAE step-time ratio. Read it top to bottom; `python benchmarks/speed.py` prints a table.

FLOPs are counted with torch.utils.flop_counter.FlopCounterMode over one real training step
(forward, backward, optimizer), so elementwise work counts as zero: the share of the matmul rate says
how close the step is to what its matrix products alone would cost. The minibatches are real MNIST
(see `real_batches`: no synthetic fallback).
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.metrics.speed import median_seconds
from lae.config import RunConfig
from lae.train import make_optimizer, new_model, seed_everything


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """float32 matmul FLOP/s at n x n (median over repeats)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def real_batches(batch_size: int, n_batches: int) -> list[torch.Tensor]:
    """`n_batches` binarized real MNIST minibatches, (batch_size, 784) each. There is no fallback: the MNIST
    files must be in the data directory ($LAE_BENCH_DATA, else the user cache) or downloadable, otherwise
    lae.data.load raises DataError."""
    from lae import data

    ds = data.load("mnist", "static", val_size=1000, train_size=batch_size * n_batches)
    return list(ds.train.x[: batch_size * n_batches].split(batch_size))


class Step:
    """One model + optimizer; calling it runs one training step on the next minibatch."""

    def __init__(self, config: RunConfig, batches: list[torch.Tensor]):
        self.gen = seed_everything(config.seed, torch.device("cpu"))
        self.model = new_model(config, batches[0].shape[1], torch.device("cpu"))
        self.opt = make_optimizer(config, self.model.parameters())
        self.batches, self.i = batches, 0

    def __call__(self) -> None:
        x = self.batches[self.i % len(self.batches)]
        self.i += 1
        loss, _ = self.model.loss(x, self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.model.update()  # LAE: the chains move on (lae.train.fit does the same)

    def flops(self) -> int:
        with FlopCounterMode(display=False) as counter:
            self()
        return counter.get_total_flops()


def time_step(step: Step, repeats: int = 30, warmup: int = 5) -> float:
    """Median seconds per training step."""
    return median_seconds(step, repeats, warmup)


SETTINGS = {  # name: (hidden, batch_size, encoder_depth); decoders mirror the encoder
    "h256-b512": (256, 512, 1),
    "h1024-b100": (1024, 100, 1),
    "seed-h256-b512-d3": (256, 512, 3),  # the seed course project's networks: 3 hidden layers each way
}
MODELS = {  # name: RunConfig overrides
    "vae": dict(model="vae"),
    "lae-T2-mh": dict(model="lae", n_steps=2, n_chains=1, mh=True),
    "lae-T2-nomh": dict(model="lae", n_steps=2, n_chains=1, mh=False),
}


def config_for(setting: str, model: str, **extra) -> RunConfig:
    hidden, batch, depth = SETTINGS[setting]
    overrides = {**MODELS[model], **extra}
    return RunConfig(
        hidden=hidden,
        batch_size=batch,
        latent_dim=16,
        encoder_depth=depth,
        step_size=1e-4,
        dataset="mnist",
        preprocessing="static",
        **overrides,
    )


def measure(configs: dict[str, RunConfig], batches, rounds: int = 3, repeats: int = 10) -> dict[str, dict]:
    """Interleaved timing: `rounds` passes over all configs (and the matmul peak), so machine noise
    hits every entry alike. Returns per config: seconds per step, FLOPs per step, peak FLOP/s."""
    steps = {name: Step(cfg, batches) for name, cfg in configs.items()}
    flops = {name: step.flops() for name, step in steps.items()}
    times = {name: [] for name in steps}
    peaks = []
    for _ in range(rounds):
        peaks.append(matmul_rate(repeats=5))
        for name, step in steps.items():
            times[name].append(time_step(step, repeats=repeats, warmup=2))
    peak = statistics.median(peaks)
    return {
        name: {"seconds": min(times[name]), "flops": flops[name], "peak": peak, "batch": configs[name].batch_size}
        for name in steps
    }


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore", message="LAE feature width")  # b512 > h256 breaks Theorem 1's rank condition
    torch.manual_seed(0)
    print(f"threads {torch.get_num_threads()}")
    print(
        f"{'setting':18} {'model':14} {'img/s':>8} {'ms/step':>8} {'MFLOP/img':>9} {'% peak':>7} "
        f"{'t/t_VAE':>7} {'F/F_VAE':>7}"
    )
    for setting in SETTINGS:
        hidden, batch, _ = SETTINGS[setting]
        configs = {m: config_for(setting, m) for m in MODELS}
        configs.update({f"lae-T2-mh-C{c}": config_for(setting, "lae-T2-mh", n_chains=c) for c in (4,)})
        r = measure(configs, real_batches(batch, 8))
        base = r["vae"]
        for name, m in r.items():
            print(
                f"{setting:18} {name:14} {batch / m['seconds']:8.0f} {m['seconds'] * 1e3:8.2f} "
                f"{m['flops'] / batch / 1e6:9.2f} {m['flops'] / m['seconds'] / m['peak']:7.1%} "
                f"{m['seconds'] / base['seconds']:7.2f} {m['flops'] / base['flops']:7.2f}"
            )
        print(f"{'':18} matmul peak {r['vae']['peak'] / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
