"""The course project's image classifier and its DLVM-augmented training (IE506 2023, experiments (4) and (5);
re-implemented from its description and code, github tarun-bisht/IE506-Project-2023, project/classifier.py).

The network (`CNN`): conv 5x5 1 -> 10 channels, 2x2 max-pool, ReLU; conv 5x5 10 -> 20 channels, channel dropout,
2x2 max-pool, ReLU; fully connected 320 -> 50, ReLU, dropout (p = 0.5); 50 -> 10 logits. Trained with Adam and the
cross-entropy of the logits (the course project's NLL of log-softmax outputs, the same loss).

Augmented training (`train_classifier` with a `sampler`): each minibatch x (B, P) with labels y is extended with
N x B images decoded from a frozen deep latent variable model: N draws z ~ p(z | x) per image from the model's own
posterior sampler (`LatentModel.posterior_samples`: ALD for LAE, q(z | x) for the VAE family), each decoded to the
likelihood's mean image, and labelled with its source image's label. The loss is the mean over all (1 + N) B images.
(The course project's LAE drew z from N(encoder(x), 0.05^2 I) instead of its ALD posterior.)

Shapes: x (N, P) images in [0, 1] with P = 28 * 28 pixels; labels (N,) int64; logits (N, 10). Losses in nats per
image."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from lae import data as data_lib
from lae.models import LatentModel
from lae.utils import model_device

IMAGE_SIDE = 28  # the CNN's input side: 28 x 28 images (MNIST, Fashion-MNIST); 320 = 20 channels x 4 x 4
N_CLASSES = 10

# (x (B, P), n) -> n decoded posterior images per image, (n, B, P) in [0, 1]
Sampler = Callable[[torch.Tensor, int], torch.Tensor]


class ClassifierError(ValueError):
    """An invalid classifier setting; the message is one line naming the field."""


@dataclass(frozen=True)
class ClassifierConfig:
    """One classifier's training: the course project's optimizer (Adam, lr 1e-4, 10 epochs) and batch size (its
    report: 128; its code's default: 32), and N (`n_augment`) decoded posterior images per training image."""

    lr: float = 1e-4
    batch_size: int = 128
    epochs: int = 10
    n_augment: int = 0  # N: 0 trains on the data alone
    seed: int = 0  # parameters, dropout, minibatch order; the DLVM sampler has its own generator

    def validate(self) -> ClassifierConfig:
        """Types and ranges; ClassifierError (one line naming the field) on the first problem. Returns self."""
        for name, least in (("batch_size", 1), ("epochs", 1), ("n_augment", 0), ("seed", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                kind = "a positive" if least else "a non-negative"
                raise ClassifierError(f"{name} must be {kind} integer; got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            raise ClassifierError(f"lr must be a positive finite number; got {self.lr!r}")
        return self


class CNN(nn.Module):
    """The course project's CNN: x (N, 784) in [0, 1] -> logits (N, 10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(F.dropout(x, training=self.training))


def posterior_images(
    model: LatentModel, x: torch.Tensor, n: int, generator: torch.Generator | None, binarize: bool
) -> torch.Tensor:
    """n images per image of x (B, P) decoded from the model's posterior: (n, B, P) in [0, 1], detached.
    binarize: the model was trained on binarized images (Bernoulli likelihood), so its posterior is taken at a
    Bernoulli(x) draw of the batch. The model is used as it is (freeze it first: `requires_grad_(False)`)."""
    if binarize:
        x = torch.bernoulli(x, generator=generator)
    z = model.posterior_samples(x, n, generator).detach()  # (n, B, D)
    with torch.no_grad():
        return model.likelihood.mean(model.decoder(z))


def dlvm_sampler(model: LatentModel, binarize: bool, seed: int) -> Sampler:
    """A Sampler from a frozen model: its own generator (seeded with `seed`, on the model's device) draws the
    binarizations and the posterior noise, so the classifier's randomness does not depend on N."""
    generator = torch.Generator(device=model_device(model)).manual_seed(seed)
    return lambda x, n: posterior_images(model, x, n, generator, binarize)


def augment(x: torch.Tensor, y: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The augmented minibatch: x (B, P) followed by images (N, B, P), labels y (B,) repeated for every draw ->
    ((1 + N) B, P), ((1 + N) B,)."""
    n, b = images.shape[0], x.shape[0]
    if images.shape[1] != b or images.shape[2:] != x.shape[1:]:
        raise ValueError(f"images {tuple(images.shape)} do not match the batch {tuple(x.shape)}")
    return torch.cat([x, images.reshape(n * b, *x.shape[1:])]), y.repeat(n + 1)


@dataclass
class TrainedClassifier:
    net: CNN  # in eval mode
    config: ClassifierConfig
    train_loss: list[float] = field(default_factory=list)  # per epoch: mean over the augmented images, nats
    train_acc: list[float] = field(default_factory=list)  # per epoch: fraction of augmented images labelled right
    images_seen: int = 0  # training images through the network, generated ones included
    seconds: float = 0.0  # wall time of training, the sampler's included


def train_classifier(
    config: ClassifierConfig,
    train: data_lib.Split,
    sampler: Sampler | None = None,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainedClassifier:
    """Train the CNN on `train` (x (N, 784) in [0, 1]) for config.epochs, each minibatch augmented with
    config.n_augment decoded posterior images per image from `sampler` (required when n_augment > 0).
    on_epoch(epoch, mean loss) after each epoch. Deterministic given the seed and the thread count."""
    config.validate()
    if config.n_augment > 0 and sampler is None:
        raise ClassifierError(f"n_augment={config.n_augment} needs a DLVM sampler")
    if train.x.shape[1] != IMAGE_SIDE * IMAGE_SIDE:
        raise ClassifierError(f"the CNN takes {IMAGE_SIDE}x{IMAGE_SIDE} images; got {train.x.shape[1]} pixels")
    torch.manual_seed(config.seed)  # parameters and dropout
    net = CNN().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)
    result = TrainedClassifier(net, config)
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        net.train()
        total, correct, n = 0.0, 0, 0
        for x, y in data_lib.batches(train, config.batch_size, order, dynamic=False):
            x, y = x.to(device), y.to(device)
            if config.n_augment > 0:
                x, y = augment(x, y, sampler(x, config.n_augment))
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            correct += int((logits.argmax(-1) == y).sum())
            n += len(y)
        result.train_loss.append(total / n)
        result.train_acc.append(correct / n)
        result.images_seen += n
        if on_epoch is not None:
            on_epoch(epoch, total / n)
    result.seconds = time.perf_counter() - start
    net.eval()
    return result


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000) -> float:
    """Fraction in [0, 1] of x (N, P) that `net` (in eval mode) labels y (N,)."""
    hits = sum(int((net(xb).argmax(-1) == yb).sum()) for xb, yb in zip(x.split(chunk), y.split(chunk)))
    return hits / len(y)
