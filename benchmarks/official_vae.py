"""Train the official LAE code's VAE (github iShohei220/LAE, baseline/VAE/model.py, used unmodified and never
committed here) the way its train.py does (SGD at lr 1e-4, batch 100, loss.mean() + the logistic prior on tau / N),
on the suite's split of 8-bit MNIST (the first 50,000 training images), and print its test-protocol -ELBO on the
10,000 validation images after every epoch. It answers whether the official code at its published defaults reaches
the paper's numbers (results/README.md, "The paper's MNIST study").

    git clone https://github.com/iShohei220/LAE /tmp/LAE   # or any copy of the repository
    LAE_BENCH_DATA=../shared/data python benchmarks/official_vae.py --official /tmp/LAE --epochs 50 --seed 0
"""

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lae.data import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="a checkout of github iShohei220/LAE")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = Path(args.official) / "baseline" / "VAE" / "model.py"
    if not path.is_file():
        sys.exit(f"error: {path} not found: --official must name a checkout of github iShohei220/LAE")
    spec = importlib.util.spec_from_file_location("official_vae", path)
    official = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(official)
    torch.manual_seed(args.seed)
    data = load("mnist", "8bit")
    x_train, x_val = data.train.x, data.val.x
    model = official.VAE(28, 1, 1024, 8)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    n = x_train.shape[0]
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        model.train()
        for idx in torch.randperm(n).split(100):
            opt.zero_grad()
            tau = model.logit_tau
            loss = model(x_train[idx].view(-1, 1, 28, 28)).mean() + torch.sum(tau + 2 * F.softplus(-tau)) / n
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = torch.cat([model(xb.view(-1, 1, 28, 28)) for xb in x_val.split(1000)]).mean().item()
        bpd = val / (784 * math.log(2))
        print(f"epoch {epoch}: validation -ELBO {val:.2f} nats ({bpd:.4f} bits/dim), {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
