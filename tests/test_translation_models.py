"""Image-to-image translation networks: shapes for every size, depths, dropout, skips, patch maps, refusals."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gantrain.errors import GantrainError
from gantrain.nets.translation import (PatchDiscriminator, ResidualBlock, ResnetGenerator, UNetGenerator, init_weights, patch_map_size)

SIZES = [32, 64, 128, 256]
CHANNELS = [(1, 3), (3, 1), (3, 3)]


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def _images(channels, size, n=2):
    return torch.rand(n, channels, size, size) * 2 - 1


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("cin,cout", CHANNELS)
@pytest.mark.parametrize("net", [UNetGenerator, ResnetGenerator])
def test_generators_keep_the_image_shape_and_range(net, size, cin, cout):
    g = net(cin, cout, size, width=4)
    assert (g.in_channels, g.out_channels, g.image_size) == (cin, cout, size)
    with torch.no_grad():
        y = g(_images(cin, size))
    assert y.shape == (2, cout, size, size)
    assert y.min() >= -1 and y.max() <= 1
    assert torch.isfinite(y).all() and y.std() > 0


@pytest.mark.parametrize("size,depth", [(16, 4), (32, 5), (64, 6), (128, 7), (256, 8), (1024, 10)])
def test_unet_depth_is_log2_of_the_size(size, depth):
    g = UNetGenerator(3, 3, size, width=2)
    assert g.depth == depth
    assert sum(isinstance(m, nn.Conv2d) for m in g.modules()) == depth
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in g.modules()) == depth
    assert g.describe().startswith(f"U-Net {size} px, {depth} levels, 3->3 channels")


def test_unet_widths_double_up_to_eight_times_the_width():
    g = UNetGenerator(3, 2, 256, width=4)
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16, 32, 32, 32, 32, 32]
    assert convs[0].in_channels == 3
    ups = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]  # outermost first
    assert [u.in_channels for u in ups] == [8, 16, 32, 64, 64, 64, 64, 32]
    assert [u.out_channels for u in ups] == [2, 4, 8, 16, 32, 32, 32, 32]
    # batch norm: no bias where a norm follows, a bias on the outermost (tanh) layer
    assert ups[0].bias is not None and all(u.bias is None for u in ups[1:])


@pytest.mark.parametrize("size", [28, 8, 300, 2048, 0, -32, 32.0])
def test_unet_refuses_sizes_that_are_not_powers_of_two_from_16(size):
    with pytest.raises(GantrainError, match=r"power of two.*dataset.image_size=32") as info:
        UNetGenerator(3, 3, size, width=4)
    assert "\n" not in str(info.value)


def test_unet_refuses_inputs_of_another_size_or_channel_count():
    g = UNetGenerator(3, 3, 32, width=4)
    with pytest.raises(GantrainError, match="32x32"):
        g(_images(3, 64))
    with pytest.raises(GantrainError, match=r"\(N, 3, H, W\)"):
        g(_images(1, 32))


@pytest.mark.parametrize("size,levels", [(16, []), (32, [4]), (64, [4, 5]), (128, [4, 5, 6]), (256, [5, 6, 7])])
def test_unet_dropout_sits_on_the_three_innermost_wide_decoder_levels(size, levels):
    g = UNetGenerator(3, 3, size, width=2)
    assert g.dropout_levels == levels
    assert sum(isinstance(m, nn.Dropout) for m in g.modules()) == len(levels)
    for k in levels:
        assert isinstance(g.up[k][-1], nn.Dropout) and g.up[k][1].out_channels == 16
    assert not any(isinstance(m, nn.Dropout) for m in UNetGenerator(3, 3, size, width=2, dropout=False).modules())


def test_unet_dropout_is_noise_in_training_only():
    x = _images(3, 32)
    g = UNetGenerator(3, 3, 32, width=8).train()
    with torch.no_grad():
        a, b = g(x), g(x)
        assert (a - b).abs().max() > 1e-4
        g.eval()
        assert torch.equal(g(x), g(x))
    plain = UNetGenerator(3, 3, 32, width=8, dropout=False).train()
    with torch.no_grad():
        assert torch.equal(plain(x), plain(x))


def test_unet_outermost_skip_carries_the_input_layout():
    g = UNetGenerator(1, 1, 32, width=4, dropout=False).eval()
    outer = g.up[0][1]  # takes [skip of level 0 (4 channels), decoder path (4 channels)]
    assert outer.in_channels == 8
    with torch.no_grad():
        outer.weight[4:] = 0  # cut the whole path through the bottleneck: only the skip is left
    x = _images(1, 32, n=1).requires_grad_(True)
    g(x)[0, 0, 10, 20].backward()
    grad = x.grad[0, 0]
    assert grad[10, 20] != 0  # the same pixel reaches the output through the skip alone
    assert grad[:, :16].abs().sum() == 0  # and nothing far away does: the skip is local
    assert grad[:5].abs().sum() == 0 and grad[16:].abs().sum() == 0


def test_unet_bottleneck_alone_reaches_everywhere():
    # the control of the test above: without the skip, the output still sees the input, but only globally
    g = UNetGenerator(1, 1, 32, width=4, dropout=False).eval()
    with torch.no_grad():
        g.up[0][1].weight[:4] = 0
    x = _images(1, 32, n=1).requires_grad_(True)
    g(x)[0, 0, 10, 20].backward()
    assert x.grad[0, 0, :, :16].abs().sum() > 0


@pytest.mark.parametrize("size,blocks", [(16, 6), (32, 6), (64, 6), (128, 6), (252, 6), (256, 9), (512, 9)])
def test_resnet_default_blocks(size, blocks):
    g = ResnetGenerator(3, 3, size, width=2)
    assert g.n_blocks == blocks
    assert sum(isinstance(m, ResidualBlock) for m in g.modules()) == blocks
    assert f"{blocks} blocks" in g.describe()


def test_resnet_blocks_given_and_layout():
    g = ResnetGenerator(3, 1, 64, width=4, n_blocks=2, dropout=True)
    assert sum(isinstance(m, ResidualBlock) for m in g.modules()) == 2
    assert sum(isinstance(m, nn.Dropout) for m in g.modules()) == 2
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16] + [16] * 4 + [1]
    assert [c.kernel_size[0] for c in convs] == [7, 3, 3] + [3] * 4 + [7]
    assert [c.stride[0] for c in convs] == [1, 2, 2] + [1] * 4 + [1]
    assert [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)] == [8, 4]
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 3 + 2 * 2 + 2 and not any(n.affine or n.track_running_stats for n in norms)
    assert all(c.bias is not None for c in convs)  # instance norm: biases kept


def test_residual_block_adds_its_input():
    g = ResnetGenerator(3, 3, 32, width=4, n_blocks=1)
    block = next(m for m in g.modules() if isinstance(m, ResidualBlock))
    x = torch.randn(2, 16, 8, 8)
    assert not torch.allclose(block(x), x)
    last = block.body[-2]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        assert torch.equal(block(x), x)  # a zero branch leaves the identity


@pytest.mark.parametrize("size", [12, 30, 33, 0])
def test_resnet_refuses_bad_sizes(size):
    with pytest.raises(GantrainError, match=r"divisible by 4 and >= 16.*dataset.image_size") as info:
        ResnetGenerator(3, 3, size, width=4)
    assert "\n" not in str(info.value)


def test_resnet_refuses_bad_inputs_and_runs_at_other_sizes():
    g = ResnetGenerator(3, 3, 32, width=4, n_blocks=1)
    with torch.no_grad():
        assert g(torch.zeros(1, 3, 48, 64)).shape == (1, 3, 48, 64)
    with pytest.raises(GantrainError, match="divisible by 4"):
        g(torch.zeros(1, 3, 30, 32))
    with pytest.raises(GantrainError, match=r"\(N, 3, H, W\)"):
        g(torch.zeros(1, 1, 32, 32))


@pytest.mark.parametrize("size,layers,side", [(16, 1, 6), (32, 1, 14), (64, 2, 14), (128, 3, 14), (256, 3, 30)])
def test_patchgan_map_shape_and_defaults(size, layers, side):
    d = PatchDiscriminator(6, size, width=4)
    assert d.n_layers == layers
    assert d.patch_shape == (side, side) == (patch_map_size(size, layers),) * 2
    with torch.no_grad():
        out = d(_images(6, size))
    assert out.shape == (2, 1, side, side)
    assert out.std() > 0  # raw logits, one per patch
    assert sum(isinstance(m, nn.Conv2d) for m in d.modules()) == layers + 2


def test_patchgan_receptive_field_and_widths():
    d = PatchDiscriminator(3, 256, width=4, n_layers=5)
    assert [m.out_channels for m in d.modules() if isinstance(m, nn.Conv2d)] == [4, 8, 16, 32, 32, 32, 1]
    assert d.patch_shape == (6, 6)
    assert PatchDiscriminator(3, 256, width=4).receptive_field == 70
    assert PatchDiscriminator(3, 64, width=4).receptive_field == 34
    assert PatchDiscriminator(3, 32, width=4).receptive_field == 16
    assert "70x70 patches, 30x30 logits" in PatchDiscriminator(3, 256, width=4).describe()


@pytest.mark.parametrize("size,layers,most", [(32, 4, 3), (64, 5, 4), (16, 3, 2), (256, 7, 6)])
def test_patchgan_refuses_a_map_under_2x2(size, layers, most):
    assert PatchDiscriminator(3, size, width=2, n_layers=most).patch_shape == (2, 2)  # the deepest that fits
    with pytest.raises(GantrainError, match=f"n_layers <= {most}") as info:
        PatchDiscriminator(3, size, width=2, n_layers=layers)
    assert "\n" not in str(info.value)


def test_patchgan_map_floor_is_2x2():
    assert patch_map_size(32, 3) == 2
    assert patch_map_size(32, 4) == 0
    with pytest.raises(GantrainError, match="0x0 logit map at 32 px"):
        PatchDiscriminator(3, 32, width=4, n_layers=4)


def test_patchgan_spectral_norm_wraps_every_conv():
    d = PatchDiscriminator(3, 64, width=4, norm="none", spectral_norm=True)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(parametrize.is_parametrized(c, "weight") for c in convs)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in d.modules())
    assert all(c.bias is not None for c in convs)
    d.train()
    for _ in range(5):  # power iterations: every conv's largest singular value near 1
        d(_images(3, 64, n=1))
    for c in convs:
        sigma = torch.linalg.matrix_norm(c.weight.detach().flatten(1), ord=2)
        assert abs(float(sigma) - 1) < 0.05
    plain = PatchDiscriminator(3, 64, width=4)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())


@pytest.mark.parametrize("make", [
    lambda norm: UNetGenerator(3, 3, 32, width=4, norm=norm),
    lambda norm: ResnetGenerator(3, 3, 32, width=4, norm=norm),
    lambda norm: PatchDiscriminator(3, 32, width=4, norm=norm),
])
def test_norm_options(make):
    with pytest.raises(GantrainError, match="norm='group' is not one of batch, instance, none"):
        make("group")
    batch, inst, none = make("batch"), make("instance"), make("none")
    assert any(isinstance(m, nn.BatchNorm2d) and m.affine for m in batch.modules())
    norms = [m for m in inst.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and not any(n.affine or n.track_running_stats for n in norms)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in none.modules())
    # biases only where no batch norm follows
    assert sum(m.bias is None for m in batch.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))) > 0
    for net in (inst, none):
        assert all(m.bias is not None for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    x = _images(3, 32)
    for net in (batch, inst, none):
        assert torch.isfinite(net(x)).all()


@torch.no_grad()
def test_init_weights_draws_normal_weights():
    g = UNetGenerator(3, 3, 32, width=64)
    wide = g.down[3][0]  # 256 -> 512 channels, 4x4: two million weights
    assert wide.weight.numel() > 2_000_000
    assert abs(float(wide.weight.std()) - 0.02) < 0.0005
    assert abs(float(wide.weight.mean())) < 0.0005
    bn = g.down[2][1]
    assert isinstance(bn, nn.BatchNorm2d)
    assert abs(float(bn.weight.mean()) - 1) < 0.01 and 0.01 < float(bn.weight.std()) < 0.03
    assert float(bn.bias.abs().max()) == 0
    layer = nn.Sequential(nn.Conv2d(64, 128, 5), nn.Linear(300, 300), nn.BatchNorm2d(8))
    assert init_weights(layer, gain=0.1) is layer
    assert abs(float(layer[0].weight.std()) - 0.1) < 0.003 and float(layer[0].bias.abs().max()) == 0
    assert abs(float(layer[1].weight.std()) - 0.1) < 0.003 and float(layer[1].bias.abs().max()) == 0
    assert float(layer[2].bias.abs().max()) == 0


def test_init_weights_reaches_spectrally_normalised_layers():
    d = PatchDiscriminator(3, 32, width=4, norm="none", spectral_norm=True)
    conv = d.net[0]
    init_weights(d, gain=0.5)
    assert abs(float(conv.parametrizations.weight.original.detach().std()) - 0.5) < 0.15


def test_describe_counts_parameters():
    assert UNetGenerator(3, 3, 32, width=64).describe() == "U-Net 32 px, 5 levels, 3->3 channels, 16.7 M params"
    d = PatchDiscriminator(6, 32, width=4)
    n = sum(p.numel() for p in d.parameters())
    assert 1000 < n < 1_000_000
    assert d.describe() == f"PatchGAN 32 px, 1 layer, 16x16 patches, 14x14 logits, 6 channels, {n / 1e3:.1f} k params"
    assert ResnetGenerator(1, 1, 16, width=2, n_blocks=1).describe().startswith("ResNet generator 16 px, 1 blocks, 1->1")


@pytest.mark.parametrize("make,match", [
    (lambda: UNetGenerator(0, 3, 32), "in_channels=0"),
    (lambda: UNetGenerator(3, 3, 32, width=0), "generator.width=0"),
    (lambda: ResnetGenerator(3, 3, 32, n_blocks=0), "generator.n_blocks=0"),
    (lambda: PatchDiscriminator(3, 64, n_layers=0), "discriminator.n_layers=0"),
    (lambda: PatchDiscriminator(3, 64, n_layers=2.5), "discriminator.n_layers=2.5"),
])
def test_bad_numbers_are_refused(make, match):
    with pytest.raises(GantrainError, match=match):
        make()


def test_patchgan_trains_its_patches_against_a_target_map():
    d = PatchDiscriminator(6, 32, width=4)
    x = _images(6, 32)
    logits = d(x)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
