"""Training-step speed: images/s, FLOP rate as a share of a matmul measured in the same run, and the time and
FLOP ratios of every family to the VAE. `python benchmarks/speed.py` prints the table; `--json FILE` also writes
it (for tracking across commits).

FLOPs are counted with torch.utils.flop_counter's formulas (`MatmulFlops`) over one real training step (forward,
backward, optimizer), so element-wise work counts as zero: the share of the matmul rate says how close the step is
to what its matrix products alone would cost. Share of peak = FLOPs / median step time / median matmul rate, both
medians taken over the same interleaved rounds (every round times the matmul and then every model, so machine noise
hits them alike). The minibatches are real MNIST (see `real_batches`: no synthetic fallback).

    nice -n -15 python benchmarks/speed.py --json speed.json            # 2 threads; h256-b100-1t runs on one
    OMP_WAIT_POLICY=ACTIVE python benchmarks/speed.py                   # a quiet machine: threads spin between ops
    python benchmarks/speed.py --device cuda --dtype bf16                # a GPU: autocast bf16 (bf16 matmul peak)

OMP_WAIT_POLICY comes from the environment (the table's first line names it): PASSIVE, the suite's default for shared
machines, made 2-thread steps on a quiet machine 1.25-1.6x slower than ACTIVE (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.sweep.provenance import machine
from lae.config import RunConfig
from lae.train import make_optimizer, new_model, seed_everything
from lae.utils import atomic_write_text

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(n: int = 2048, repeats: int = 10, device: str = "cpu", dtype: str = "fp32") -> float:
    """Matmul FLOP/s at n x n in `dtype` (median over repeats)."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
    b = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
    for _ in range(3):
        a @ b
    _sync(dev)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        _sync(dev)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def real_batches(batch_size: int, n_batches: int, preprocessing: str = "static") -> list[torch.Tensor]:
    """`n_batches` real MNIST minibatches (batch_size, 784): binarized (static) or k/255 (8bit). There is no
    fallback: the MNIST files must be in the data directory ($LAE_BENCH_DATA, else the user cache) or downloadable,
    otherwise lae.data.load raises DataError."""
    from lae import data

    ds = data.load("mnist", preprocessing, val_size=1000, train_size=batch_size * n_batches)
    return list(ds.train.x[: batch_size * n_batches].split(batch_size))


class MatmulFlops(TorchDispatchMode):
    """Counts FLOPs of the ops torch.utils.flop_counter has formulas for (matmuls, convolutions, attention):
    FlopCounterMode's arithmetic without its module tracker, whose hooks break autograd.grad on leaf tensors (the
    Langevin-refined VAE's z-gradients)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **(kwargs or {}), out_val=out)
        return out


class Step:
    """One model + optimizer; calling it runs one training step on the next minibatch (as lae.train.fit does:
    loss, zero_grad, backward, optimizer step, update). bf16: the loss under autocast."""

    def __init__(self, config: RunConfig, batches: list[torch.Tensor], dtype: str = "fp32"):
        self.device = torch.device("cpu" if config.device == "auto" else config.device)
        self.gen = seed_everything(config.seed, self.device)
        self.model = new_model(config, batches[0].shape[1], self.device)
        self.opt = make_optimizer(config, self.model.parameters())
        self.batches, self.i = [b.to(self.device) for b in batches], 0
        self.dtype = dtype

    def __call__(self) -> None:
        x = self.batches[self.i % len(self.batches)]
        self.i += 1
        cast = torch.autocast(self.device.type, DTYPES[self.dtype]) if self.dtype != "fp32" else nullcontext()
        with cast:
            loss, _ = self.model.loss(x, self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.model.update()  # LAE: the chains move on (lae.train.fit does the same)
        _sync(self.device)

    def flops(self) -> int:
        with MatmulFlops() as counter:
            self()
        return counter.total


def time_step(step: Step, repeats: int = 30, warmup: int = 5) -> list[float]:
    """Seconds of each of `repeats` training steps after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times


SETTINGS = {  # name: (hidden, batch_size, encoder_depth); decoders mirror the encoder
    "h256-b512": (256, 512, 1),
    "h1024-b100": (1024, 100, 1),
    "h256-b100-1t": (256, 100, 1),  # the sweeps' setting, one thread
}
THREADS = {"h256-b100-1t": 1}  # intra-op threads per setting; the others use --threads (default 2)
EXTRA_SETTINGS = {"tiny": (32, 20, 1)}  # selectable with --settings (the test's end-to-end run), not by default
MODELS = {  # name: RunConfig overrides
    "vae": dict(model="vae"),
    "iwae": dict(model="iwae", k=5),
    "lvae": dict(model="lvae", n_steps=2, mh=True),
    "lae-T2-mh": dict(model="lae", n_steps=2, n_chains=1, mh=True),
    "lae-T2": dict(model="lae", n_steps=2, n_chains=1, mh=False),  # unadjusted: one backward pass per evaluation
}


def config_for(setting: str, model: str, preprocessing: str = "static", device: str = "cpu", **extra) -> RunConfig:
    hidden, batch, depth = {**SETTINGS, **EXTRA_SETTINGS}[setting]
    overrides = {**MODELS[model], **extra}
    return RunConfig(
        hidden=hidden,
        batch_size=batch,
        latent_dim=16,
        encoder_depth=depth,
        step_size=1e-4 if overrides["model"] == "lae" else None,
        dataset="mnist",
        preprocessing=preprocessing,
        device=device,
        **overrides,
    )


def measure(
    configs: dict[str, RunConfig], batches, rounds: int = 5, repeats: int = 10, dtype: str = "fp32"
) -> dict[str, dict]:
    """Interleaved timing: `rounds` passes over the matmul peak and all configs, so machine noise hits every
    entry alike. Returns per config: median seconds per step (over all rounds' steps), FLOPs per step, the median
    matmul FLOP/s, the batch size and the load average before and after."""
    load_before = os.getloadavg()
    device = next(iter(configs.values())).device
    device = "cpu" if device == "auto" else device
    steps = {name: Step(cfg, batches, dtype) for name, cfg in configs.items()}
    flops = {name: step.flops() for name, step in steps.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    peaks = []
    for _ in range(rounds):
        peaks.append(matmul_rate(repeats=5, device=device, dtype=dtype))
        for name, step in steps.items():
            times[name] += time_step(step, repeats=repeats, warmup=2)
    peak, load = statistics.median(peaks), [load_before[0], os.getloadavg()[0]]
    return {
        name: {
            "seconds": statistics.median(times[name]),
            "flops": flops[name],
            "peak": peak,
            "peak_min": min(peaks),
            "peak_max": max(peaks),
            "batch": configs[name].batch_size,
            "loadavg": load,
        }
        for name in steps
    }


def rows_for(setting: str, r: dict[str, dict], threads: int) -> list[dict]:
    """The table's rows for one setting (ratios to the setting's VAE)."""
    base = r.get("vae")
    hidden, batch, _ = {**SETTINGS, **EXTRA_SETTINGS}[setting]
    out = []
    for name, m in r.items():
        out.append(
            dict(
                setting=setting,
                model=name,
                hidden=hidden,
                batch=batch,
                threads=threads,
                images_per_s=batch / m["seconds"],
                ms_per_step=m["seconds"] * 1e3,
                mflop_per_image=m["flops"] / batch / 1e6,
                share_of_peak=m["flops"] / m["seconds"] / m["peak"],
                peak_gflops=m["peak"] / 1e9,
                peak_gflops_range=[m["peak_min"] / 1e9, m["peak_max"] / 1e9],
                time_ratio_vae=m["seconds"] / base["seconds"] if base else None,
                flop_ratio_vae=m["flops"] / base["flops"] if base else None,
                loadavg=m["loadavg"],
            )
        )
    return out


def print_rows(rows: list[dict]) -> None:
    for row in rows:
        ratios = (
            f"{row['time_ratio_vae']:7.2f} {row['flop_ratio_vae']:7.2f}"
            if row["time_ratio_vae"] is not None
            else f"{'':7} {'':7}"
        )
        print(
            f"{row['setting']:14} {row['model']:10} {row['threads']:2d} {row['images_per_s']:8.0f} "
            f"{row['ms_per_step']:8.2f} {row['mflop_per_image']:9.2f} {row['share_of_peak']:7.1%} {ratios} "
            f"{row['peak_gflops']:6.0f}  {row['loadavg'][0]:.2f}/{row['loadavg'][1]:.2f}",
            flush=True,
        )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="FILE", help="also write the table as JSON to FILE (atomically)")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}, tiny")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (each: the matmul, then every model)")
    p.add_argument("--repeats", type=int, default=10, help="timed steps per model per round")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (settings in THREADS override it)")
    p.add_argument("--preprocessing", default="static", choices=("static", "8bit"), help="Bernoulli or logistic")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--dtype", default="fp32", choices=tuple(DTYPES), help="bf16: autocast, bf16 matmul peak")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import warnings

    args = parse_args(argv)
    known = {**SETTINGS, **EXTRA_SETTINGS}
    settings, models = args.settings.split(","), args.models.split(",")
    bad = [s for s in settings if s not in known] + [m for m in models if m not in MODELS]
    problem = f"unknown setting or model {bad[0]!r}" if bad else None
    if args.rounds < 1 or args.repeats < 1:
        problem = "--rounds and --repeats must be at least 1"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", message="LAE feature width")  # b512 > h256 breaks Theorem 1's rank condition
    torch.manual_seed(0)
    print(
        f"{'setting':14} {'model':10} {'th':>2} {'img/s':>8} {'ms/step':>8} {'MFLOP/img':>9} {'% peak':>7} "
        f"{'t/t_VAE':>7} {'F/F_VAE':>7} {'GFLOP/s':>6}  load",
        flush=True,
    )
    print(f"# OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset: spin, then sleep)')}", flush=True)
    rows = []
    for setting in settings:
        threads = THREADS.get(setting, args.threads)
        torch.set_num_threads(threads)
        batch = known[setting][1]
        configs = {m: config_for(setting, m, args.preprocessing, args.device) for m in models}
        r = measure(configs, real_batches(batch, 8, args.preprocessing), args.rounds, args.repeats, args.dtype)
        rows += rows_for(setting, r, threads)
        print_rows(rows[-len(r) :])
    if args.json:
        table = dict(
            rows=rows,
            device=args.device,
            dtype=args.dtype,
            preprocessing=args.preprocessing,
            rounds=args.rounds,
            repeats=args.repeats,
            torch=torch.__version__,
            machine=machine(),
            omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
        )
        atomic_write_text(args.json, json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
