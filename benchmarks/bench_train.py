"""Training speed (pytest-benchmark): images/s per training step, the step's FLOP rate as a share of a
float32 matmul measured in the same run, and the LAE/VAE and chain-count time ratios against what
their FLOP counts predict. The model, step and timing code is benchmarks/speed.py."""

import pytest
from conftest import REPORT
from speed import MODELS, SETTINGS, Step, config_for, matmul_rate, measure, real_batches


@pytest.fixture(scope="session")
def peak():
    return max(matmul_rate() for _ in range(3))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("setting", SETTINGS)
def test_train_step(benchmark, setting, model, peak):
    hidden, batch, depth = SETTINGS[setting]
    step = Step(config_for(setting, model), real_batches(batch, 8))
    flops = step.flops()
    benchmark.pedantic(step, rounds=30, warmup_rounds=5, iterations=1)
    t = benchmark.stats.stats.median
    info = dict(
        images_per_s=batch / t,
        mflop_per_image=flops / batch / 1e6,
        share_of_matmul=flops / t / peak,
        matmul_gflops=peak / 1e9,
    )
    benchmark.extra_info.update(info)
    REPORT.append(
        f"{setting:18} {model:12} {info['images_per_s']:8.0f} img/s  {info['mflop_per_image']:6.2f} MFLOP/img"
        f"  {info['share_of_matmul']:6.1%} of {peak / 1e9:.0f} GFLOP/s matmul"
    )


@pytest.mark.parametrize("setting", SETTINGS)
def test_time_ratios_vs_flop_ratios(benchmark, setting):
    """Interleaved timing of VAE, LAE (MH on/off) and LAE with 2 and 4 chains: measured time ratio
    over the FLOP-count ratio (1.0 = costs exactly what its FLOPs predict)."""
    hidden, batch, depth = SETTINGS[setting]
    configs = {m: config_for(setting, m) for m in MODELS}
    configs.update({f"lae-T2-mh-C{c}": config_for(setting, "lae-T2-mh", n_chains=c) for c in (2, 4)})
    r = benchmark.pedantic(measure, args=(configs, real_batches(batch, 8)), rounds=1, iterations=1)
    pairs = [("vae", m) for m in configs if m != "vae"] + [("lae-T2-mh", "lae-T2-mh-C2"), ("lae-T2-mh", "lae-T2-mh-C4")]
    for base, other in pairs:
        t_ratio = r[other]["seconds"] / r[base]["seconds"]
        f_ratio = r[other]["flops"] / r[base]["flops"]
        benchmark.extra_info[f"{other}/{base}"] = {"time_ratio": t_ratio, "flop_ratio": f_ratio}
        REPORT.append(
            f"{setting:18} {other + ' / ' + base:26} time x{t_ratio:5.2f}  FLOPs x{f_ratio:5.2f}  "
            f"-> {t_ratio / f_ratio:4.2f} of the FLOP prediction"
        )
