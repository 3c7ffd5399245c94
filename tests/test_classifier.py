"""The augmented classifier's parts on real MNIST (lae.classifier, bench.metrics.robustness, the DLVM cache of
bench.sweep.classifier): the CNN learns, the augmentation adds exactly N x B images with the batch's labels, the
attacks stay in their ball and lower the accuracy, and a DLVM is trained once and then loaded from the cache."""

from __future__ import annotations

import json

import pytest
import torch

from bench.metrics.adversarial import attack
from bench.metrics.robustness import classifier_metrics
from bench.metrics.settings import MetricSettings
from bench.sweep.classifier import cached_dlvm, dlvm_hash, dlvm_path
from lae import data as data_lib
from lae.classifier import ClassifierConfig, ClassifierError, accuracy, augment, dlvm_sampler, train_classifier
from lae.config import RunConfig
from lae.train import load_data, new_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist():
    """2,000 grayscale MNIST training images (8bit: k / 255, the CNN's input) and the test split."""
    return data_lib.load("mnist", "8bit", val_size=500, train_size=2000)


@pytest.fixture(scope="module")
def trained(mnist):
    """The CNN after 3 epochs at lr 1e-3, batch 64 on the 2,000 images (about 2 s)."""
    return train_classifier(ClassifierConfig(lr=1e-3, batch_size=64, epochs=3), mnist.train)


def test_cnn_learns_a_tiny_mnist_subset_far_above_chance(trained, mnist):
    """Chance is 10%; 90 minibatches of a 2,000-image subset reach about 85% on the test split. The training loss
    falls every epoch."""
    acc = accuracy(trained.net, mnist.test.x, mnist.test.y)
    assert acc > 0.6, acc
    assert trained.train_loss == sorted(trained.train_loss, reverse=True)
    assert trained.images_seen == 3 * 2000 and not trained.net.training


def test_attacks_stay_in_their_ball_and_lower_the_accuracy(trained, mnist):
    """FGSM, PGD and APGD-CE at eps 0.1 move no pixel further than eps, stay in [0, 1], and the accuracy falls with
    eps: at eps 0.3 PGD leaves almost nothing; APGD (100 steps) is at least as strong as PGD within 5 points, and
    leaves the network in eval mode."""
    net, x, y = trained.net, mnist.test.x[:100], mnist.test.y[:100]
    for kind in ("fgsm", "pgd", "apgd"):
        adv = attack(net, x, y, kind, 0.1, seed=1)
        assert adv.shape == x.shape and (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        assert not net.training
        assert torch.equal(adv, attack(net, x, y, kind, 0.1, seed=1))  # seeded: the same images again
    test = data_lib.Split(mnist.test.x[:1000], mnist.test.y[:1000])
    m = classifier_metrics(net, test, MetricSettings(adv_subset=100, adv_eps=(0.1, 0.3)))
    assert m["clf_acc_clean"] > m["clf_acc_pgd_0.1"] > m["clf_acc_pgd_0.3"]
    assert m["clf_acc_pgd_0.3"] < 0.1 and m["clf_acc_fgsm_0.1"] >= m["clf_acc_pgd_0.1"] - 0.02
    assert m["clf_acc_apgd_0.1"] <= m["clf_acc_pgd_0.1"] + 0.05 and m["clf_acc_apgd_0.3"] <= m["clf_acc_apgd_0.1"]


@pytest.mark.parametrize("family", ["lae", "vae"])
def test_augmentation_adds_n_decoded_posterior_images_per_image_with_its_label(family, mnist):
    """A real (untrained) DLVM: N = 3 draws per image of a batch of 32, decoded to images in [0, 1] that differ from
    draw to draw; the augmented batch is the batch followed by the 3 x 32 images, each labelled with its source."""
    torch.manual_seed(0)
    model = new_model(RunConfig(model=family, latent_dim=2, hidden=64, batch_size=32), 784, torch.device("cpu"))
    model.eval().requires_grad_(False)
    x, y = mnist.train.x[:32], mnist.train.y[:32]
    images = dlvm_sampler(model, binarize=True, seed=0)(x, 3)
    assert images.shape == (3, 32, 784) and images.min() >= 0 and images.max() <= 1
    assert (images[0] - images[1]).abs().max() > 1e-4  # posterior draws, not one reconstruction
    xa, ya = augment(x, y, images)
    assert xa.shape == (4 * 32, 784) and torch.equal(xa[:32], x)
    assert torch.equal(xa[32:].reshape(3, 32, 784), images) and torch.equal(ya, y.repeat(4))
    with pytest.raises(ValueError):
        augment(x[:31], y[:31], images)


def test_training_sees_one_plus_n_images_per_training_image(mnist):
    """N = 2 on 300 images for 2 epochs: (1 + 2) x 300 x 2 images through the CNN; N > 0 without a DLVM refused."""
    torch.manual_seed(0)
    model = new_model(RunConfig(model="vae", latent_dim=2, hidden=32), 784, torch.device("cpu")).requires_grad_(False)
    train = data_lib.Split(mnist.train.x[:300], mnist.train.y[:300])
    result = train_classifier(ClassifierConfig(epochs=2, n_augment=2), train, dlvm_sampler(model, True, 0))
    assert result.images_seen == 3 * 300 * 2 and len(result.train_loss) == 2
    with pytest.raises(ClassifierError, match="needs a DLVM sampler"):
        train_classifier(ClassifierConfig(n_augment=2), train)
    with pytest.raises(ClassifierError, match="n_augment must be a non-negative integer"):
        ClassifierConfig(n_augment=-1).validate()


def test_dlvm_cache_trains_once_then_loads_the_same_model(tmp_path):
    """The first call trains and saves (checkpoint and summary), the second loads: the same tensors, no second file;
    another seed is another DLVM."""
    config = RunConfig(model="lae", dataset="digits", epochs=1, hidden=64, latent_dim=2, batch_size=50, seed=3)
    dataset = load_data(config)
    first, info, source = cached_dlvm(config, dataset, tmp_path)
    again, info_again, source_again = cached_dlvm(config, dataset, tmp_path)
    assert (source, source_again) == ("trained", "cache") and info == info_again
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert not any(p.requires_grad for p in again.parameters())
    path = dlvm_path(tmp_path, config)
    assert path.name == f"lae-{dlvm_hash(config)}.pt" and json.loads(path.with_suffix(".json").read_text())["val_loss"]
    assert sorted(p.suffix for p in path.parent.iterdir()) == [".flock", ".json", ".pt"]
    other = RunConfig(**{**config.to_dict(), "seed": 4})
    assert dlvm_hash(other) != dlvm_hash(config)
    assert dlvm_hash(RunConfig(**{**config.to_dict(), "data_dir": "/elsewhere"})) == dlvm_hash(config)
