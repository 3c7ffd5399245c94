"""`python -m bench figures CHECKPOINT [--out DIR] [--seed N]`: pictures of one trained model (a checkpoint written
by `bench train`), as PNG files named for what they show: samples.png (prior samples), reconstructions.png (test
images, each row followed by its reconstructions), interpolation_linear.png and interpolation_slerp.png (between
pairs of test images in the latent space), latent_scatter.png (test codes coloured by label; PCA to 2-D when
D > 2) and, for D = 2, manifold.png (the decoded 30 x 30 grid over [-1, 1]^2). See bench.results.pictures.

The test split is the checkpoint's dataset and preprocessing (binarized for Bernoulli models). Deterministic: the
same checkpoint, data and --seed write the same bytes. Default --out: `figures/` beside the checkpoint."""

from __future__ import annotations

import argparse
import time

from bench.errors import path_arg, ranged
from lae.config import DEVICES, SEEDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", type=path_arg, metavar="CHECKPOINT", help="checkpoint.pt written by `bench train`"
    )
    parser.add_argument(
        "--out",
        type=path_arg,
        default=None,
        help="directory for the PNG files (default: figures/ beside the checkpoint)",
    )
    parser.add_argument(
        "--seed",
        type=ranged(SEEDS),
        default=0,
        help=f"seed of the prior samples and of the test images chosen, {SEEDS.text()} (default: 0)",
    )
    parser.add_argument(
        "--data-dir", default=None, help="dataset directory (default: $LAE_BENCH_DATA, then the user cache)"
    )
    parser.add_argument("--device", default="cpu", choices=DEVICES, help="device (default: cpu)")


def run(args: argparse.Namespace) -> int:
    from bench.checkpoints import load_checked
    from bench.errors import check_output
    from bench.results.pictures import draw_all

    start = time.perf_counter()
    out = args.out if args.out is not None else args.checkpoint.parent / "figures"
    check_output(out, "--out", directory=True)
    model, config, dataset = load_checked(args.checkpoint, args.device, args.data_dir)
    title = f"{config.model}, D = {config.latent_dim}, {config.dataset}"
    written = draw_all(model, dataset.test.x, dataset.test.y, out, args.seed, title)
    for path in written:
        print(path)
    print(f"{len(written)} figures in {out} ({time.perf_counter() - start:.1f} s)", flush=True)
    return 0
