"""The conv architecture (lae.conv, RunConfig.architecture = "conv"): the trunk and decoder have the documented
shapes on 28 x 28 and 8 x 8 images, every model family trains with it on a tiny real MNIST subset (its conv weights
move, its losses stay finite), and a checkpoint round trip gives back the same model."""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from lae import conv, data
from lae.config import RunConfig, model_config
from lae.families import FAMILIES, build_model
from lae.train import fit, load_checkpoint, new_model, save_checkpoint, seed_everything

pytestmark = pytest.mark.usefixtures("one_thread")
NEEDS_MNIST = pytest.mark.skipif(not os.environ.get("LAE_BENCH_DATA"), reason="LAE_BENCH_DATA not set (real MNIST)")


@pytest.mark.parametrize("n_pixels", [784, 64])
def test_shapes(n_pixels):
    side = math.isqrt(n_pixels)
    flat = 64 * (side // 4) ** 2
    assert conv.flat_features(n_pixels) == flat and conv.activations(n_pixels) == 32 * (side // 2) ** 2 + flat
    x = torch.rand(5, n_pixels)
    for depth, width in ((1, 48), (2, 48), (0, flat)):
        trunk, h = conv.conv_trunk(n_pixels, 48, depth)
        assert h == width and trunk(x).shape == (5, width)
        decoder = conv.ConvDecoder(3, 48, depth, n_pixels)
        assert decoder(torch.randn(2, 5, 3)).shape == (2, 5, n_pixels)  # (chains, images, D) -> (..., P)
        assert decoder.net[-1].bias.shape == (n_pixels,)  # the checkpoint loader reads P here
    for model in FAMILIES:
        m = build_model(model_config(RunConfig(model=model, architecture="conv", hidden=48, latent_dim=3), n_pixels))
        assert m.representation(x).shape == (5, 3) and m.generate(4, None).shape == (4, n_pixels)
        assert any(isinstance(layer, nn.Conv2d) for layer in m.modules())
    with pytest.raises(ValueError, match="side divisible by 4"):
        conv.conv_trunk(100, 48, 1)  # 10 x 10


def test_config_accepts_conv_and_estimates_its_memory():
    mlp, cnn = RunConfig(), RunConfig(architecture="conv")
    assert cnn.validate() is cnn
    # the dense layers meet 3,136 conv features instead of 784 pixels, and the conv activations add up
    assert cnn.memory_bytes() > 3 * mlp.memory_bytes()
    with pytest.raises(ValueError, match="architecture must be one of mlp, layernorm, conv"):
        RunConfig(architecture="resnet").validate()


@NEEDS_MNIST
@pytest.mark.filterwarnings("ignore::lae.train.ChainHealthWarning")  # one epoch: not what is tested
@pytest.mark.parametrize("model", sorted(FAMILIES))
def test_every_family_trains_with_conv_and_round_trips(model, tmp_path):
    ds = data.load("mnist", "dynamic", train_size=200, val_size=100, test_size=100)
    config = RunConfig(
        model=model, architecture="conv", dataset="mnist", hidden=64, latent_dim=4, batch_size=50, epochs=1, seed=0
    )
    config.target_accept = 0.5 if model == "lae" else None
    seed_everything(config.seed, torch.device("cpu"))  # as fit() does: `before` is fit's initial model
    before = {k: v.clone() for k, v in new_model(config, ds.n_pixels, torch.device("cpu")).state_dict().items()}
    result = fit(config, ds)
    state = result.model.state_dict()
    assert all(math.isfinite(v) for v in result.val_loss + result.train_loss)
    convs = [f"{n}.weight" for n, m in result.model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 4  # two conv layers in the trunk, two transposed ones in the decoder: every one trained
    for name in convs:
        assert state[name].shape == before[name].shape and not torch.equal(state[name], before[name]), name
    path = save_checkpoint(result, tmp_path / "checkpoint.pt")
    loaded, loaded_config = load_checkpoint(path)
    assert loaded_config.architecture == "conv"
    assert state.keys() == loaded.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in state.items())
    x, z = ds.test.x[:10], torch.randn(10, 4)
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.representation(x), result.model.representation(x))
        assert torch.equal(loaded.decoder(z), result.model.decoder(z))
