"""StyleGAN2's networks as wholes, against hand-unrolled computations: which w each synthesis layer and toRGB reads
(StyleGAN2-ADA's layout), the noise map each layer takes, the mapping network's depth, the widths, truncation beyond
psi 1, the conditional discriminator's projection and the features a text-conditioned D projects onto, the Python
defaults against the configs, and the refusals of shapes and settings. (test_stylegan2.py checks the layers.)"""
from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from gantrain.errors import GantrainError
from gantrain.nets.stylegan2 import (MappingNetwork, StyleGAN2Discriminator, StyleGAN2Generator, _whole, channels_at,
                                     minibatch_stddev, normalize_2nd_moment, upsample2d)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _generator(**kwargs) -> StyleGAN2Generator:
    torch.manual_seed(0)
    g = StyleGAN2Generator((1, 16, 16), **{"latent_dim": 6, "w_dim": 6, "mapping_layers": 3, "channel_base": 64,
                                           "channel_max": 8, **kwargs})
    with torch.no_grad():
        for conv in g.synthesis.convs:
            conv.noise_strength.fill_(0.5)  # noise that shows (it starts at 0)
    return g.eval()


def test_each_layer_reads_its_own_w_and_noise_and_the_skips_sum():
    g = _generator()
    s = g.synthesis
    assert s.num_ws == 6 and len(s.convs) == 5 and len(s.to_rgbs) == 3
    torch.manual_seed(1)
    ws = torch.randn(2, 6, 6)
    noises = [torch.randn(2, 1, r, r) for r in (4, 8, 8, 16, 16)]
    with torch.no_grad():
        got = s(ws, "const", noises)
        x = s.const.unsqueeze(0).expand(2, -1, -1, -1)
        x = s.convs[0](x, ws[:, 0], "const", noises[0])
        image = s.to_rgbs[0](x, ws[:, 1])
        x = s.convs[1](x, ws[:, 1], "const", noises[1])
        x = s.convs[2](x, ws[:, 2], "const", noises[2])
        image = upsample2d(image) + s.to_rgbs[1](x, ws[:, 3])
        x = s.convs[3](x, ws[:, 3], "const", noises[3])
        x = s.convs[4](x, ws[:, 4], "const", noises[4])
        image = upsample2d(image) + s.to_rgbs[2](x, ws[:, 5])
    torch.testing.assert_close(got, image)
    with torch.no_grad():  # every w is read: changing one changes the image
        for i in range(6):
            other = ws.clone()
            other[:, i] += 1.0
            assert not torch.allclose(s(other, "const", noises), got), i
    with pytest.raises(GantrainError) as err:
        s(torch.randn(2, 5, 6), "const")
    assert str(err.value) == "the synthesis network takes ws of shape (N, 6, w_dim), not (2, 5, 6)"
    with pytest.raises(GantrainError, match=r"takes ws of shape \(N, 6, w_dim\), not \(2, 6\)"):
        s(torch.randn(2, 6), "const")
    for shape in ((2, 7, 6), (2, 6, 6, 1)):  # one w too many; a dimension too many
        with pytest.raises(GantrainError, match=r"takes ws of shape \(N, 6, w_dim\)"):
            s(torch.randn(*shape), "const")


def test_the_mapping_network_has_its_depth_and_no_condition_unless_given():
    m = MappingNetwork(6, 5, 0, 3, 0.01, 0.995)
    assert m.embed is None and m.embed_condition is None and len(m.layers) == 3
    assert [(layer.weight.shape[1], layer.weight.shape[0]) for layer in m.layers] == [(6, 5), (5, 5), (5, 5)]
    c = MappingNetwork(6, 5, 4, 2, 0.01, 0.995)
    assert c.layers[0].weight.shape[1] == 6 + 5 and len(c.layers) == 2
    g = _generator(mapping_layers=5)
    assert len(g.mapping.layers) == 5 and all(layer.lr_multiplier == 0.01 for layer in g.mapping.layers)
    z = torch.randn(3, 6)
    with torch.no_grad():
        x = normalize_2nd_moment(z)
        for layer in g.mapping.layers:
            x = layer(x)
        torch.testing.assert_close(g.mapping(z), x)
    t = _generator(condition_dim=4)  # a caption's embedding joins z through its own linear map
    c = torch.randn(3, 4)
    with torch.no_grad():
        x = torch.cat([normalize_2nd_moment(z), normalize_2nd_moment(t.mapping.embed_condition(c))], dim=1)
        for layer in t.mapping.layers:
            x = layer(x)
        torch.testing.assert_close(t.mapping(z, c), x)
    with pytest.raises(GantrainError, match="takes a condition: call it as G"):
        t.mapping(z)


def test_widths_follow_channel_base_over_the_resolution_within_the_maximum():
    assert [channels_at(r, 64, 8) for r in (4, 8, 16, 32, 128)] == [8, 8, 4, 2, 1]
    assert channels_at(1024, 32768, 512) == 32 and channels_at(64, 32768, 512) == 512
    g = _generator()
    assert [c.weight.shape[0] for c in g.synthesis.convs] == [8, 8, 8, 4, 4]
    d = StyleGAN2Discriminator((1, 16, 16), channel_base=64, channel_max=8)
    assert d.from_rgb.weight.shape[0] == 4 and d.feature_dim == 8 == d.fc.weight.shape[0] != d.fc.weight.shape[1]


def test_truncation_beyond_one_moves_away_from_the_average():
    g = _generator()
    g.mapping.w_avg.copy_(torch.linspace(-1, 1, 6))
    w = torch.randn(2, 6)
    avg = g.mapping.w_avg
    for psi in (1.5, 2.0, 0.5, -0.5):
        torch.testing.assert_close(g.truncate_w(w, psi), (avg + psi * (w - avg)).unsqueeze(1).expand(-1, 6, -1))


def test_sample_truncates_in_w_by_psi_as_the_sample_command_does():
    # g.sample(n, psi=...) on a style-based generator: w toward w_avg (0: every sample the average image);
    # truncation= stays z's threshold, as for every generator
    g = _generator().eval()
    g.noise_mode = "const"
    g.mapping.w_avg.copy_(torch.linspace(-1, 1, 6))
    average = g.sample(3, torch.Generator().manual_seed(0), psi=0.0)
    assert torch.equal(average[0], average[1]) and torch.equal(average[1], average[2])
    z = torch.randn(3, g.latent_dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(g.sample(3, torch.Generator().manual_seed(0), psi=0.5), g(z, psi=0.5))
    from gantrain.nets.base import truncate

    rng = torch.Generator().manual_seed(0)
    in_z = truncate(torch.randn(3, g.latent_dim, generator=rng), 0.5, rng)
    torch.testing.assert_close(g.sample(3, torch.Generator().manual_seed(0), truncation=0.5), g(in_z))
    for bad in (-0.1, 10.5, float("nan"), True):
        with pytest.raises(GantrainError, match="must be a number from 0 to 10"):
            g.sample(2, psi=bad)
    with pytest.raises(GantrainError, match="noise_mode='bogus' must be one of random, const, none"):
        g.noise_mode = "bogus"
    assert g.noise_mode == "const"


def test_the_conditional_discriminator_projects_onto_the_mapped_label():
    torch.manual_seed(2)
    d = StyleGAN2Discriminator((1, 8, 8), channel_base=32, channel_max=8, num_classes=3, mapping_layers=2, cmap_dim=5)
    assert d.cmap_dim == 5 and len(d.mapping) == 2 and all(m.lr_multiplier == 0.01 for m in d.mapping)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        h = d.features(x)
        e = normalize_2nd_moment(d.embed(F.one_hot(y, 3).float()))
        for layer in d.mapping:
            e = layer(e)
        expected = (h * e).sum(1) / math.sqrt(5)
        torch.testing.assert_close(d(x, y), expected)
        logit, none = d(x, y, classes=True)
        torch.testing.assert_close(logit, expected)
        assert none is None and h.shape == (4, 5)
    no_mapping = StyleGAN2Discriminator((1, 8, 8), channel_base=32, channel_max=8, num_classes=3, mapping_layers=0)
    assert len(no_mapping.mapping) == 0
    with pytest.raises(GantrainError, match="condition.discriminator=concat is for dcgan/sngan/mlp"):
        StyleGAN2Discriminator((1, 8, 8), channel_base=32, channel_max=8, num_classes=3, conditioning="concat")


def test_a_text_conditioned_d_reads_the_unconditional_logit_and_the_features_before_it():
    torch.manual_seed(3)
    d = StyleGAN2Discriminator((1, 8, 8), channel_base=32, channel_max=8)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        logit, h = d.text_features(x)
        torch.testing.assert_close(logit, d(x))
        assert h.shape == (4, d.feature_dim) and d.out.weight.shape == (1, d.feature_dim)
        torch.testing.assert_close(d.out(h)[:, 0], logit)


def test_the_python_defaults_are_the_configs():
    for cls, name in ((StyleGAN2Generator, "generator"), (StyleGAN2Discriminator, "discriminator")):
        config = yaml.safe_load((CONFIGS / name / "stylegan2.yaml").read_text())
        defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        shared = {k: v for k, v in config.items() if not k.startswith("_") and k in defaults}
        assert shared and all(defaults[k] == v for k, v in shared.items()), (name, shared, defaults)
        assert set(config) - {"_target_"} <= set(defaults), name


def test_shapes_and_settings_are_refused_in_one_line():
    for shape in ((1, 8, 16), (2,), (1, 12, 12)):
        with pytest.raises(GantrainError, match="generator"):
            StyleGAN2Generator(shape, latent_dim=4, w_dim=4, channel_base=32, channel_max=4)
        with pytest.raises(GantrainError, match="discriminator"):
            StyleGAN2Discriminator(shape, channel_base=32, channel_max=4)
    for beta in (-0.5, 1.5):
        with pytest.raises(GantrainError) as err:
            _generator(w_avg_beta=beta)
        assert str(err.value) == f"generator.w_avg_beta={beta!r} must be a number in [0, 1] (the paper: 0.995)"
    for beta in (0.0, 1.0):  # both ends: w_avg follows the last batch, or stays
        assert _generator(w_avg_beta=beta).mapping.w_avg_beta == beta


def test_the_discriminator_is_its_residual_blocks_then_the_minibatch_layer_and_the_head():
    torch.manual_seed(4)
    d = StyleGAN2Discriminator((1, 16, 16), channel_base=64, channel_max=8, mbstd_group=2)
    assert d.from_rgb.weight.shape == (4, 1, 1, 1) and len(d.blocks) == 2
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        h = d.from_rgb(x)
        for block in d.blocks:
            h = (block.skip(h) + block.conv1(block.conv0(h))) * math.sqrt(0.5)
        assert h.shape == (4, 8, 4, 4)
        h = d.conv(minibatch_stddev(h, 2))
        logit = d.out(d.fc(h.flatten(1))).flatten()
        torch.testing.assert_close(d(x), logit)
    c = StyleGAN2Discriminator((1, 8, 8), channel_base=32, channel_max=8, num_classes=3)
    with pytest.raises(GantrainError) as err:
        c(torch.randn(2, 1, 8, 8))
    assert str(err.value) == "this discriminator is conditional: call it as D(x, labels)"


def test_mapping_rates_and_decays_outside_their_ranges_are_refused():
    for lr in (0.0, 1.5, -0.01, True):
        with pytest.raises(GantrainError) as err:
            _generator(mapping_lr=lr)
        assert str(err.value) == f"generator.mapping_lr={lr!r} must be a number in (0, 1] (the paper: 0.01)"
    assert _generator(mapping_lr=1.0).mapping.layers[0].lr_multiplier == 1.0
    with pytest.raises(GantrainError, match="w_avg_beta=True must be a number"):
        _generator(w_avg_beta=True)


def test_the_generator_is_mapping_then_synthesis_and_a_text_generator_keeps_its_condition():
    g = _generator()
    z = torch.randn(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(g(z, noise_mode="const"), g.synthesis(g.truncate_w(g.mapping(z), 1.0), "const"))
        torch.testing.assert_close(g(z, torch.tensor([1, 2]), noise_mode="const"), g(z, noise_mode="const"))  # no classes
    t = _generator(condition_dim=4)
    assert t.condition_dim == 4 and t.num_classes is None and t.mapping.embed_condition is not None
    c = torch.randn(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(t(z, c, noise_mode="const"), t.synthesis(t.truncate_w(t.mapping(z, c), 1.0), "const"))
    cond = _generator(num_classes=3)
    with pytest.raises(GantrainError) as err:
        cond.mapping(z)
    assert str(err.value) == "this generator is conditional: call it as G(z, labels)"
    with pytest.raises(GantrainError) as err:
        _generator(condition_dim=-1)
    assert str(err.value) == "generator.condition_dim=-1 must be a whole number >= 0"
    with pytest.raises(GantrainError, match="class labels or a text condition, not both"):
        _generator(num_classes=3, condition_dim=4)


def test_whole_numbers_start_at_their_lowest_value():
    assert _whole(1, "generator.w_dim") == 1 and _whole(0, "discriminator.mapping_layers", 0) == 0
    for value, low in ((0, 1), (-1, 0), (True, 1), (2.0, 1)):
        with pytest.raises(GantrainError) as err:
            _whole(value, "k", low)
        assert str(err.value) == f"k={value!r} must be a whole number >= {low}"
    with pytest.raises(GantrainError, match="discriminator.mapping_layers=-1 must be a whole number >= 0"):
        StyleGAN2Discriminator((1, 8, 8), channel_base=32, channel_max=8, num_classes=3, mapping_layers=-1)
    with pytest.raises(GantrainError, match="discriminator.mbstd_group=0 must be a whole number >= 1"):
        StyleGAN2Discriminator((1, 8, 8), channel_base=32, channel_max=8, mbstd_group=0)


def test_other_image_sizes_are_refused_with_the_nearest_one():
    for shape in ((1, 8, 8, 1), (8, 8), (1, 16, 8)):
        with pytest.raises(GantrainError) as err:
            StyleGAN2Generator(shape, latent_dim=4, w_dim=4, channel_base=32, channel_max=4)
        assert str(err.value) == (f"generator=stylegan2 needs square images (C, H, W) but the dataset gives shape "
                                  f"{tuple(shape)}; use generator=mlp for 2D data")
    for size, nearest in ((20, 16), (28, 32), (12, 8), (2000, 1024), (4, 8)):
        with pytest.raises(GantrainError) as err:
            StyleGAN2Discriminator((1, size, size), channel_base=32, channel_max=4)
        assert str(err.value) == (f"discriminator=stylegan2 works on images of 8, 16, 32 ... 1024 px, not {size}x{size}; "
                                  f"set dataset.image_size={nearest} (MNIST's 28 px digits are resized to it)")


def test_the_discriminators_layers_have_the_papers_kernels_and_odd_widths_fit():
    d = StyleGAN2Discriminator((1, 16, 16), channel_base=64, channel_max=5)
    for block in d.blocks:
        assert block.conv0.weight.shape[-2:] == block.conv1.weight.shape[-2:] == (3, 3)
        assert block.skip.weight.shape[-2:] == (1, 1) and block.skip.bias is None
    assert d.conv.weight.shape[:2] == (5, 6)  # the width at 4x4 plus the minibatch channel
    assert d(torch.randn(4, 1, 16, 16)).shape == (4,)
    size = int("512")  # sizes above 256 computed at run time are distinct int objects: compared by value
    large = StyleGAN2Discriminator((1, size, int("512")), channel_base=32, channel_max=2)
    assert len(large.blocks) == 7
    built = "".join(["pro", "jection"])  # as read from a config: not the literal object
    assert StyleGAN2Discriminator((1, 8, 8), channel_base=32, channel_max=4, num_classes=3,
                                  conditioning=built).num_classes == 3
