"""Does the LAE chain move at the paper study's settings? The share of MH proposals accepted in every 100 minibatches
while training, for the official LAE code (github iShohei220/LAE's model.py, with its two fixes applied on loading,
never committed here) trained as its train.py does with --mh (plain SGD at lr 1e-4, batch 100, T = 2, step 1e-4 on
the minibatch-mean energy, its prior on tau), or for the suite's LAE at sweeps/paper_mnist.toml's settings with a
given SGD momentum (the study's rows used 0.9; the official code has none). Both on the suite's 8-bit MNIST split
(the first 50,000 training images), shuffled each epoch with the seed. results/README.md, "The paper's MNIST study".

    LAE_BENCH_DATA=../shared/data python benchmarks/official_chain.py --official /tmp/LAE --epochs 2
    LAE_BENCH_DATA=../shared/data python benchmarks/official_chain.py --momentum 0.9 --epochs 2
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.sweep import load_spec
from lae.data import load
from lae.train import make_optimizer, new_model, seed_everything

FIXES = (  # the official model.py does not run as published: an undefined name, an argument-count mismatch
    ("self.decoder = Decoder(size, nx, nh, n)", "self.decoder = Decoder(size, nx, nh, nz)"),
    (
        "self.langevin_step(x, h, weight,\n                                           self.mh, True)",
        "self.langevin_step(x, h, weight, True)",
    ),
)


def official_step(checkout: str, n_train: int):
    """-> (step(x) -> (accepted, proposed)): one official training step on a (100, 784) minibatch in [0, 1]."""
    path = Path(checkout) / "model.py"
    if not path.is_file():
        sys.exit(f"error: {path} not found: --official must name a checkout of github iShohei220/LAE")
    source = path.read_text()
    for old, new in FIXES:
        source = source.replace(old, new)
    module = type(sys)("official_lae")
    exec(compile(source, str(path), "exec"), module.__dict__)
    model = module.LAE(28, 1, 1024, 8, 1e-4, 2, True)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    langevin_step, count = model.langevin_step, [0, 0]

    def counted(x, h, weight=None, retain_graph=False):  # a rejected proposal returns the old weight unchanged
        before = weight.detach().clone()
        weight, energy = langevin_step(x, h, weight, retain_graph)
        count[0] += int(not torch.equal(weight, before))
        count[1] += 1
        return weight, energy

    model.langevin_step = counted

    def step(x):
        count[:] = [0, 0]
        tau = model.logit_tau
        loss = model(x.view(-1, 1, 28, 28)).mean() + torch.sum(tau + 2 * F.softplus(-tau)) / n_train
        opt.zero_grad()
        loss.backward()
        opt.step()
        return tuple(count)

    return step


def suite_step(momentum: float, seed: int):
    """-> (step(x) -> (accepted, proposed)): one training step of the study's LAE point with this SGD momentum."""
    spec = load_spec("paper_mnist")
    budget = spec.budget("default")
    point = next(p for p in spec.points(budget) if p.model == "lae")
    config = dataclasses.replace(spec.config(point, budget, seed, "mnist", None, {}), momentum=momentum)
    gen = seed_everything(seed, torch.device("cpu"))
    model = new_model(config, 784, torch.device("cpu"))
    opt = make_optimizer(config, model.parameters())

    def step(x):
        loss, info = model.loss(x, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.update()
        return float(info["accept"]) * config.n_steps, config.n_steps  # mean acceptance over the T proposals

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", help="a checkout of github iShohei220/LAE (default: the suite's LAE)")
    parser.add_argument("--momentum", type=float, default=0.9, help="the suite's SGD momentum (0.9: the study's)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: as the study's trials)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x = load("mnist", "8bit").train.x
    step = official_step(args.official, x.shape[0]) if args.official else suite_step(args.momentum, args.seed)
    who = "official code" if args.official else f"suite, momentum {args.momentum:g}"
    order = torch.Generator().manual_seed(args.seed)
    accepted = proposed = i = 0
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        for idx in torch.randperm(x.shape[0], generator=order).split(100):
            a, p = step(x[idx])
            accepted, proposed, i = accepted + a, proposed + p, i + 1
            if i % 100 == 0:
                print(
                    f"{who}: epoch {epoch}, minibatches {i - 99}-{i}: {accepted / proposed:.3f} of "
                    f"{proposed:g} MH proposals accepted ({time.time() - start:.0f} s)",
                    flush=True,
                )
                accepted = proposed = 0


if __name__ == "__main__":
    main()
