"""Generators and discriminators: shapes for every supported size, ranges, and refusals."""
import pytest
import torch

from gantrain.errors import GantrainError
from gantrain.nets.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_plan
from gantrain.nets.mlp import MLPDiscriminator, MLPGenerator


@pytest.mark.parametrize("size", [8, 16, 28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(size, channels):
    g = DCGANGenerator((channels, size, size), latent_dim=16, base_channels=8)
    d = DCGANDiscriminator((channels, size, size), base_channels=8)
    x = g(torch.randn(4, 16))
    assert x.shape == (4, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (4,)
    assert g.sample(3).shape == (3, channels, size, size)


def test_dcgan_plan_and_refusal():
    assert dcgan_plan(28) == (7, 2)
    assert dcgan_plan(64) == (4, 4)
    assert dcgan_plan(8) == (4, 1)
    with pytest.raises(GantrainError, match="dataset.image_size"):
        dcgan_plan(27)
    with pytest.raises(GantrainError, match="square images"):
        DCGANGenerator((2,))


@pytest.mark.parametrize("norm", ["batch", "layer", "instance", "none"])
def test_discriminator_norms_and_spectral_norm(norm):
    d = DCGANDiscriminator((1, 16, 16), base_channels=4, norm=norm, spectral_norm=True)
    assert d(torch.randn(2, 1, 16, 16)).shape == (2,)
    assert any("parametrizations" in name for name, _ in d.named_modules() if name) or any(
        hasattr(m, "parametrizations") for m in d.modules()
    )


def test_mlp_points_and_images():
    g = MLPGenerator((2,), bounded=False, latent_dim=3, hidden=[8])
    d = MLPDiscriminator((2,), hidden=[8])
    pts = g(torch.randn(5, 3))
    assert pts.shape == (5, 2) and d(pts).shape == (5,)
    gi = MLPGenerator((1, 8, 8), bounded=True, latent_dim=3, hidden=[8])
    img = gi(torch.randn(5, 3))
    assert img.shape == (5, 1, 8, 8) and img.abs().max() <= 1
    assert MLPDiscriminator((1, 8, 8), hidden=[8])(img).shape == (5,)


def test_sample_with_private_generator_is_reproducible_and_leaves_global_rng():
    g = MLPGenerator((2,), bounded=False, latent_dim=3, hidden=[8])
    before = torch.get_rng_state()
    a = g.sample(4, generator=torch.Generator().manual_seed(7))
    b = g.sample(4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.equal(before, torch.get_rng_state())
