"""StyleGAN2: its layers against their definitions, the game's regularisers against hand computations and their
intervals, style mixing, w_avg and truncation, exact resume across a lazy regularisation step, the presets
through the real command, conditional sampling and export."""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gantrain
from gantrain.errors import GantrainError
from gantrain.nets.stylegan2 import (EqualConv2d, EqualLinear, ModulatedConv, StyleGAN2Discriminator,
                                     StyleGAN2Generator, ToRGB, blur, minibatch_stddev, modulated_conv2d,
                                     normalize_2nd_moment, upsample2d)
from gantrain.training.games.stylegan2 import StyleGAN2
from gantrain.training.losses import NonSaturating
from gantrain.training.stats import Stats

from conftest import run_gantrain

TINY_NET = ["generator.latent_dim=8", "generator.w_dim=8", "generator.channel_base=64", "generator.channel_max=8",
            "discriminator.channel_base=64", "discriminator.channel_max=8"]


def test_modulated_convolution_is_the_per_sample_convolution_with_scaled_weights():
    g = torch.Generator().manual_seed(0)
    x, weight, styles = torch.randn(3, 5, 6, 6, generator=g), torch.randn(4, 5, 3, 3, generator=g), torch.randn(3, 5, generator=g)
    for demodulate in (True, False):
        expected = []
        for i in range(3):  # written out: scale input channel c of sample i by styles[i, c], then the norm per output
            w = weight * styles[i].view(1, 5, 1, 1)
            if demodulate:
                w = w / w.flatten(1).norm(dim=1).view(4, 1, 1, 1)
            expected.append(F.conv2d(x[i:i + 1], w, padding=1))
        expected = torch.cat(expected)
        for fused in (False, True):
            got = modulated_conv2d(x, weight, styles, demodulate=demodulate, fused=fused)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_demodulated_outputs_have_unit_variance_for_unit_variance_inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 64, 32, 32, generator=g)
    weight, styles = torch.randn(32, 64, 3, 3, generator=g) * 3.0, torch.rand(4, 64, generator=g) * 5 + 0.1
    out = modulated_conv2d(x, weight, styles)
    variance = out.var(dim=(2, 3))  # per sample and output channel, over 1,024 pixels
    assert 0.9 < float(variance.mean()) < 1.1 and float(variance.min()) > 0.75 and float(variance.max()) < 1.3
    plain = modulated_conv2d(x, weight, styles, demodulate=False)
    assert float(plain.var()) > 100  # without demodulation the scale of the weights and styles comes through


def test_equalised_learning_rate_scales_stored_n01_weights_at_run_time():
    torch.manual_seed(2)
    fc = EqualLinear(400, 300)
    assert abs(float(fc.weight.std()) - 1) < 0.02 and abs(float(fc.weight.mean())) < 0.01  # stored N(0, 1)
    x = torch.randn(5, 400)
    torch.testing.assert_close(fc(x), x @ (fc.weight / 20.0).t() + fc.bias)  # 1 / sqrt(400)
    slow = EqualLinear(400, 300, bias_init=0.5, lr_multiplier=0.01)  # the mapping network's layers
    assert abs(float(slow.weight.std()) - 100) < 2  # N(0, 1 / 0.01^2): its steps are 100x smaller in effect
    torch.testing.assert_close(slow(x), x @ (slow.weight * 0.01 / 20.0).t() + torch.full((300,), 0.5))
    with torch.no_grad():
        fc.weight.mul_(2)
    torch.testing.assert_close(fc(x), x @ (fc.weight / 20.0).t() + fc.bias)  # the scale is applied at each call
    conv = EqualConv2d(16, 8, 3)
    assert abs(float(conv.weight.std()) - 1) < 0.1
    image = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(conv(image), F.conv2d(image, conv.weight / 12.0, padding=1))  # sqrt(16 x 9)
    layer = ModulatedConv(16, 8, w_dim=4, resolution=5)
    assert abs(float(layer.weight.std()) - 1) < 0.1 and layer.weight_gain == pytest.approx(1 / 12)


def _lrelu(x):  # leaky ReLU with slope 0.2, times sqrt(2)
    return torch.where(x >= 0, x, 0.2 * x) * math.sqrt(2)


def test_a_synthesis_layer_and_torgb_are_their_hand_computations_with_each_noise_mode():
    torch.manual_seed(3)
    for up in (False, True):
        layer = ModulatedConv(5, 4, w_dim=6, resolution=8, up=up)
        with torch.no_grad():
            layer.noise_strength.fill_(0.7)
            layer.bias.copy_(torch.randn(4))
        x, w = torch.randn(3, 5, 4 if up else 8, 4 if up else 8), torch.randn(3, 6)
        styles = w @ (layer.affine.weight / math.sqrt(6)).t() + layer.affine.bias
        h = upsample2d(x) if up else x
        weight = layer.weight / math.sqrt(5 * 9)
        conv = torch.cat([F.conv2d(h[i:i + 1], (weight * styles[i].view(1, 5, 1, 1)) / (weight * styles[i].view(
            1, 5, 1, 1)).flatten(1).norm(dim=1).view(4, 1, 1, 1), padding=1) for i in range(3)])
        bias = layer.bias.view(1, 4, 1, 1)
        given = torch.randn(3, 1, 8, 8)
        torch.testing.assert_close(layer(x, w, noise=given), _lrelu(conv + 0.7 * given + bias), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layer(x, w, "const"), _lrelu(conv + 0.7 * layer.noise_const + bias),
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layer(x, w, "none"), _lrelu(conv + bias), rtol=1e-4, atol=1e-5)
        torch.manual_seed(9)
        drawn = layer(x, w, "random")
        torch.manual_seed(9)
        torch.testing.assert_close(drawn, _lrelu(conv + 0.7 * torch.randn(3, 1, 8, 8) + bias), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(drawn, layer(x, w, "random"))  # fresh noise per call
    to_rgb = ToRGB(5, 3, w_dim=6)
    with torch.no_grad():
        to_rgb.bias.copy_(torch.randn(3))
    x, w = torch.randn(2, 5, 4, 4), torch.randn(2, 6)
    styles = (w @ (to_rgb.affine.weight / math.sqrt(6)).t() + to_rgb.affine.bias) / math.sqrt(5)
    expected = torch.cat([F.conv2d(x[i:i + 1], to_rgb.weight * styles[i].view(1, 5, 1, 1)) for i in range(2)])
    torch.testing.assert_close(to_rgb(x, w), expected + to_rgb.bias.view(1, 3, 1, 1), rtol=1e-4, atol=1e-5)


def test_down_sampling_layers_filter_then_take_every_second_pixel():
    torch.manual_seed(5)
    x = torch.randn(2, 3, 8, 8)
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = (torch.outer(k, k) / 64).expand(3, 1, 4, 4)
    filtered = F.conv2d(F.pad(x, (1, 1, 1, 1)), kernel, groups=3)  # 7x7: the [1,3,3,1] filter, one pixel padded
    from gantrain.nets.stylegan2 import downsample2d

    torch.testing.assert_close(downsample2d(x), filtered[:, :, ::2, ::2])
    skip = EqualConv2d(3, 5, 1, bias=False, down=True)
    torch.testing.assert_close(skip(x), F.conv2d(filtered[:, :, ::2, ::2], skip.weight / math.sqrt(3)))
    conv = EqualConv2d(3, 5, 3, down=True)
    wide = F.conv2d(F.pad(x, (2, 2, 2, 2)), kernel, groups=3)  # 9x9: two pixels padded, then a 3x3 stride-2 conv
    torch.testing.assert_close(conv(x), F.conv2d(wide, conv.weight / math.sqrt(27), stride=2) + conv.bias.view(1, 5, 1, 1))
    assert conv(x).shape == (2, 5, 4, 4)


def test_layers_start_from_stylegan2s_initial_biases():
    assert torch.equal(EqualLinear(4, 3).bias, torch.zeros(3))  # fully connected layers: 0
    layer, to_rgb = ModulatedConv(4, 2, w_dim=5, resolution=4), ToRGB(4, 1, w_dim=5)
    assert torch.equal(layer.affine.bias, torch.ones(4)) and torch.equal(to_rgb.affine.bias, torch.ones(4))  # styles: 1
    assert torch.equal(layer.bias, torch.zeros(2)) and float(layer.noise_strength) == 0.0


def test_equalised_layers_with_leaky_relu_and_the_normalised_latent():
    torch.manual_seed(4)
    fc = EqualLinear(6, 5, activation="lrelu")
    conv = EqualConv2d(3, 4, 3, activation="lrelu")
    with torch.no_grad():
        fc.bias.copy_(torch.randn(5))
        conv.bias.copy_(torch.randn(4))
    x, image = torch.randn(7, 6), torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(fc(x), _lrelu(x @ (fc.weight / math.sqrt(6)).t() + fc.bias))
    linear = F.conv2d(image, conv.weight / math.sqrt(27), padding=1) + conv.bias.view(1, 4, 1, 1)
    assert (linear < 0).any() and (linear > 0).any()  # both sides of the activation are checked
    torch.testing.assert_close(conv(image), _lrelu(linear))
    z = torch.randn(4, 9) * torch.tensor([[0.1], [1.0], [10.0], [1000.0]])
    normalised = normalize_2nd_moment(z)
    torch.testing.assert_close(normalised, z / z.square().mean(1, keepdim=True).sqrt())  # each row to unit RMS
    torch.testing.assert_close(normalised.square().mean(1), torch.ones(4))
    assert torch.equal(normalize_2nd_moment(torch.zeros(2, 9)), torch.zeros(2, 9))  # no NaN for a zero row


def test_the_filters_keep_the_mean_and_halve_or_double_the_size():
    x = torch.randn(2, 3, 8, 8)
    up = upsample2d(x)
    assert up.shape == (2, 3, 16, 16)
    zeros = torch.zeros(2, 3, 8, 2, 8, 2)
    zeros[:, :, :, 0, :, 0] = x  # zeros inserted, then [1,3,3,1] x [1,3,3,1] / 64 x 4
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = (torch.outer(k, k) / 16).expand(3, 1, 4, 4)
    torch.testing.assert_close(up, F.conv2d(F.pad(zeros.view(2, 3, 16, 16), (2, 1, 2, 1)), kernel, groups=3))
    flat = torch.full((1, 2, 8, 8), 0.7)
    assert torch.allclose(upsample2d(flat)[:, :, 2:-2, 2:-2], torch.full((1, 2, 12, 12), 0.7))
    assert torch.allclose(blur(flat, (1, 1))[:, :, 1:-1, 1:-1], torch.full((1, 2, 5, 5), 0.7))


def test_minibatch_stddev_adds_the_groups_standard_deviation():
    x = torch.randn(8, 3, 4, 4)
    out = minibatch_stddev(x, 4)
    assert out.shape == (8, 4, 4, 4)
    groups = x.view(4, 2, 3, 4, 4)  # sample i is in subgroup i % 2 (NVlabs' layout)
    expected = (groups.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # one value per subgroup
    for i in range(8):
        assert torch.allclose(out[i, 3], expected[i % 2].expand(4, 4))
    six = torch.randn(6, 3, 4, 4)
    groups = six.view(3, 2, 3, 4, 4)  # 6 samples, group_size 4: groups of 3 (the largest divisor not above 4)
    expected = (groups.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))
    torch.testing.assert_close(minibatch_stddev(six, 4)[:, 3, 0, 0], expected.repeat(3))
    torch.testing.assert_close(minibatch_stddev(six, 3)[:, 3, 0, 0], expected.repeat(3))  # group_size 3: the same
    ten = torch.randn(10, 3, 4, 4)
    torch.testing.assert_close(minibatch_stddev(ten), minibatch_stddev(ten, 4))  # the default group is 4 (here: 2)
    # 5 samples, group_size 4: groups of one, whose deviation is 0 (sqrt of the 1e-8 guard)
    torch.testing.assert_close(minibatch_stddev(torch.randn(5, 3, 4, 4), 4)[:, 3], torch.full((5, 4, 4), 1e-4))


def test_networks_build_for_every_power_of_two_and_refuse_other_sizes():
    for size, channels in ((8, 1), (16, 3), (64, 2)):
        G = StyleGAN2Generator((channels, size, size), latent_dim=8, w_dim=8, channel_base=64, channel_max=8)
        D = StyleGAN2Discriminator((channels, size, size), channel_base=64, channel_max=8)
        assert G.num_ws == 2 * int(math.log2(size)) - 2
        image = G(torch.randn(3, 8))
        assert image.shape == (3, channels, size, size) and D(image).shape == (3,)
    with pytest.raises(GantrainError, match="dataset.image_size=32"):
        StyleGAN2Generator((1, 28, 28))
    with pytest.raises(GantrainError, match="dataset.image_size=32"):
        StyleGAN2Discriminator((1, 28, 28))
    with pytest.raises(GantrainError, match="condition.discriminator=projection"):
        StyleGAN2Discriminator((1, 8, 8), num_classes=10, conditioning="ac")


# ---- the game against hand computations --------------------------------------------------------------


class LinearSynthesis(nn.Module):
    """A stand-in style-based generator whose Jacobian is known: image = scale x ws laid out as pixels;
    mapping(z) = z."""

    latent_dim = w_dim = 8
    num_ws = 2
    num_classes = None
    out_shape = (1, 4, 4)

    def __init__(self, scale: float):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))
        self.unit = nn.Parameter(torch.tensor(1.0))  # w depends on a weight, as a mapping network's does

    def mapping(self, z, y=None):
        return z * self.unit

    def truncate_w(self, w, psi=1.0, cutoff=None):
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def synthesis(self, ws, noise_mode="random"):
        return self.scale * ws.reshape(len(ws), 1, 4, 4)

    def forward(self, z, y=None, noise_mode=None):
        return self.synthesis(self.truncate_w(self.mapping(z)))


class LinearCritic(nn.Module):
    """D(x) = <a, x>: its gradient in x is a, so R1 = |a|^2 for every sample."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.arange(16.0).view(1, 1, 4, 4) / 10)

    def forward(self, x):
        return (x * self.a).sum((1, 2, 3))


def linear_game(**settings):
    args = dict(r1_gamma=0.5, r1_interval=16, pl_weight=2.0, pl_interval=4, pl_decay=0.01, pl_batch_shrink=2,
                mixing_prob=0.0)
    args.update(settings)
    game = StyleGAN2(LinearSynthesis(1.5), LinearCritic(), NonSaturating(), n_critic=1, batch_size=6, num_samples=4,
                     seed=0, stats=Stats(torch.device("cpu")), **args)
    calls = []
    game.update = lambda network, loss, stat=None: calls.append((game.steps_done, network, stat, loss.detach().clone()))
    return game, calls


def test_lazy_r1_is_its_hand_computation_at_steps_0_16_32_with_gamma_times_the_interval():
    game, calls = linear_game()
    real = torch.randint(0, 256, (1, 6, 1, 4, 4), dtype=torch.uint8)
    for _ in range(33):
        game.step(real)
    r1 = [(step, loss) for step, network, stat, loss in calls if stat == "grad/d_reg"]
    assert [step for step, _ in r1] == [0, 16, 32]
    a_squared = float((torch.arange(16.0) / 10).square().sum())  # |grad_x D|^2 of every sample
    for _, loss in r1:
        assert float(loss) == pytest.approx(a_squared * 0.5 / 2 * 16, rel=1e-5)
    mains = [(step, network) for step, network, stat, _ in calls if stat is None]
    assert mains == [(k, who) for k in range(33) for who in ("generator", "discriminator")]  # every step, G then D
    assert game.steps_done == 33
    once, calls_once = linear_game(r1_interval=1)
    once.step(real)
    assert float([loss for *_, stat, loss in calls_once if stat == "grad/d_reg"][0]) == pytest.approx(a_squared * 0.5 / 2)


def test_path_length_penalty_is_its_hand_computation_at_steps_0_4_8():
    game, calls = linear_game()
    real = torch.randint(0, 256, (1, 6, 1, 4, 4), dtype=torch.uint8)
    torch.manual_seed(5)
    game.path_length(torch.device("cpu"))
    torch.manual_seed(5)
    z = torch.randn(3, 8)  # half the batch of 6
    y = torch.randn(3, 1, 4, 4) / 4.0  # noise / sqrt(pixels)
    grad_ws = 1.5 * y.view(3, 2, 8)  # J^T y for image = 1.5 x ws
    lengths = grad_ws.square().sum(2).mean(1).sqrt()
    mean = 0.01 * lengths.mean()  # the running mean from 0, decay 0.01
    expected = (lengths - mean).square().mean() * 2.0 * 4  # weight x interval
    assert z.shape == (3, 8)
    (step, network, stat, loss), = calls
    assert (network, stat) == ("generator", "grad/g_reg")
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(game.pl_mean) == pytest.approx(float(mean), rel=1e-5)
    calls.clear()
    for _ in range(9):
        game.step(real)
    assert [step for step, _, stat, _ in calls if stat == "grad/g_reg"] == [0, 4, 8]


def test_style_mixing_takes_the_second_latent_from_its_cutoff_layer_on():
    torch.manual_seed(0)
    G = StyleGAN2Generator((1, 16, 16), latent_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)
    game = StyleGAN2(G, StyleGAN2Discriminator((1, 16, 16), channel_base=64, channel_max=8), NonSaturating(),
                     n_critic=1, batch_size=4, num_samples=4, seed=0, stats=Stats(torch.device("cpu")), r1_gamma=0.1,
                     mixing_prob=1.0)
    G.eval()  # w_avg fixed
    z = torch.randn(4, 8)
    first = G.mapping(z)
    cutoffs = set()
    for seed in range(40):
        torch.manual_seed(seed)
        ws = game.mapped(z, None)
        assert ws.shape == (4, G.num_ws, 8)
        same = [bool(torch.equal(ws[:, i], first)) for i in range(G.num_ws)]
        cutoff = same.index(False)
        assert 1 <= cutoff < G.num_ws and all(same[:cutoff]) and not any(same[cutoff:])
        assert all(torch.equal(ws[:, i], ws[:, cutoff]) for i in range(cutoff, G.num_ws))  # one second w
        cutoffs.add(cutoff)
    assert cutoffs == set(range(1, G.num_ws))
    game.mixing_prob = 0.0
    assert all(torch.equal(game.mapped(z, None)[:, i], first) for i in range(G.num_ws))
    G.train()  # in training, w_avg follows the first latents only (the second is a mixing partner, as NVIDIA's)
    game.mixing_prob = 1.0
    before = G.mapping.w_avg.clone()
    torch.manual_seed(1)
    game.mapped(z, None)
    expected = G.mapping.layers(normalize_2nd_moment(z)).mean(0).lerp(before, G.mapping.w_avg_beta)
    torch.testing.assert_close(G.mapping.w_avg, expected)


def test_w_avg_follows_its_decay_and_truncation_pulls_toward_it():
    torch.manual_seed(3)
    G = StyleGAN2Generator((1, 8, 8), latent_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8,
                           w_avg_beta=0.9)
    z1, z2 = torch.randn(5, 8), torch.randn(5, 8)
    w1 = G.mapping(z1)
    torch.testing.assert_close(G.mapping.w_avg, 0.1 * w1.mean(0))
    w2 = G.mapping(z2)
    torch.testing.assert_close(G.mapping.w_avg, 0.9 * 0.1 * w1.mean(0) + 0.1 * w2.mean(0))
    G.eval()
    before = G.mapping.w_avg.clone()
    G.mapping(z1)
    assert torch.equal(G.mapping.w_avg, before)  # not in eval mode
    w = G.mapping(z1)
    assert torch.equal(G.truncate_w(w, 1.0), w.unsqueeze(1).expand(-1, G.num_ws, -1))
    assert torch.equal(G.truncate_w(w, 0.0), before.expand(5, G.num_ws, 8))
    half = G.truncate_w(w, 0.5, cutoff=2)
    torch.testing.assert_close(half[:, :2], (before + 0.5 * (w - before)).unsqueeze(1).expand(-1, 2, -1))
    assert torch.equal(half[:, 2:], w.unsqueeze(1).expand(-1, G.num_ws - 2, -1))
    average_image = G.synthesis(before.expand(1, G.num_ws, 8), noise_mode="const")
    for z in (z1, z2):
        torch.testing.assert_close(G(z, psi=0.0, noise_mode="const"), average_image.expand(5, -1, -1, -1))


def test_the_ema_half_life_in_images_ramps_up():
    game, _ = linear_game(ema_kimg=10.0, ema_rampup=0.05)
    assert game.ema_beta(1) == pytest.approx(0.5 ** (6 / (6 * 0.05)))  # at most 5% of the images seen
    assert game.ema_beta(10**6) == pytest.approx(0.5 ** (6 / 10000))  # then 10 thousand images
    fixed, _ = linear_game()
    fixed.ema_decay = 0.999
    assert fixed.ema_beta(7) == 0.999


# ---- through the loop ------------------------------------------------------------------------------------


def tiny(data_root, *extra):
    return ["experiment=stylegan2_mnist", f"dataset.root={data_root}", "dataset.image_size=16", *TINY_NET,
            "trainer.batch_size=4", "trainer.log_every=2", "trainer.sample_every=100", "trainer.eval_every=0",
            "trainer.device=cpu", "trainer.diagnose=false", "trainer.num_samples=4", *extra]


def _state(run: Path) -> dict:
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    return state


def test_a_run_resumed_across_a_lazy_regularisation_step_equals_the_straight_run(tmp_path, data_root):
    common = tiny(data_root, "trainer.steps=19", "trainer.ckpt_every=3", "trainer.keep_last=10",
                  "stylegan2.r1_interval=4", "stylegan2.pl_interval=3", "stylegan2.ema_kimg=0.01")
    straight = tmp_path / "straight"
    gantrain.train(gantrain.compose(common), straight)
    split = tmp_path / "split"
    middle = straight / "checkpoints" / "step_00000015.pt"  # steps 15 (G reg) and 16 (R1) come after it
    gantrain.train(gantrain.compose([*common, f"resume={middle}"]), split)
    a, b = _state(straight), _state(split)
    assert a["step"] == b["step"] == 19
    for group in ("networks", "ema"):
        for name, tensors in a[group].items():
            for key, value in tensors.items():
                assert torch.equal(value, b[group][name][key]), (group, name, key)
    assert a["game_state"]["steps_done"] == b["game_state"]["steps_done"] == 19
    assert torch.equal(a["game_state"]["pl_mean"], b["game_state"]["pl_mean"])
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(v) for row in rows for v in row.values() if isinstance(v, float))
    assert "loss/r1" in rows[0] and "loss/pl" in rows[0]  # step 0 runs both regularisers
    assert any("loss/r1" not in row for row in rows)  # a log interval without R1 leaves it out, not NaN


@pytest.mark.parametrize("preset", ["stylegan2_mnist", "stylegan2_fashion", "stylegan2_cmnist"])
def test_presets_train_through_the_real_command(preset, tmp_path, data_root):
    run = tmp_path / preset
    args = tiny(data_root, "trainer.steps=2")
    args[0] = f"experiment={preset}"
    proc = run_gantrain(*args, f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "samples" / "step_00000002.png").is_file() and (run / "checkpoints" / "last.pt").is_file()


def test_folder_preset_trains_with_ada(tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(12):
        pixels = torch.randint(0, 256, (20, 24, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")
    run = tmp_path / "run"
    proc = run_gantrain("experiment=stylegan2_folder", f"dataset.root={folder}", "dataset.image_size=16", *TINY_NET,
                        "trainer.steps=3", "trainer.batch_size=4", "trainer.log_every=1", "trainer.device=cpu",
                        f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "augment/p" in rows[-1]


def test_conditional_generator_obeys_labels_and_exports(tmp_path, data_root, capfd):
    run = tmp_path / "cond"
    gantrain.train(gantrain.compose([*tiny(data_root, "trainer.steps=2"), "conditional=true"]), run)
    G = gantrain.load_generator(run)
    assert G.num_classes == 10
    rng = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    torch.manual_seed(0)
    threes = G.sample(3, generator=rng(), labels=[3, 3, 3])
    torch.manual_seed(0)
    again = G.sample(3, generator=rng(), labels=[3, 3, 3])
    torch.manual_seed(0)
    fives = G.sample(3, generator=rng(), labels=5)
    assert torch.equal(threes, again) and not torch.allclose(threes, fives)  # the label changes the image
    with pytest.raises(GantrainError, match="outside the generator's classes"):
        G.sample(2, labels=[1, 10])
    from gantrain.commands.export import export

    import onnxruntime

    capfd.readouterr()
    for fmt, name in (("onnx", "g.onnx"), ("torchscript", "g.pt"), ("safetensors", "g.safetensors")):
        export(run, fmt, tmp_path / name)
    said = capfd.readouterr()  # the tracer's own notices (an in-place op on a shape) reached the terminal
    assert "In-place op" not in said.out + said.err, said.err[-500:]
    z, labels = torch.randn(2, 8), torch.tensor([1, 7])
    G.eval()
    expected = G(z, labels, noise_mode="const")
    session = onnxruntime.InferenceSession(str(tmp_path / "g.onnx"))
    got = session.run(None, {"z": z.numpy(), "labels": labels.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)
    scripted = torch.jit.load(str(tmp_path / "g.pt"))
    torch.testing.assert_close(scripted(z, labels), expected, rtol=1e-5, atol=1e-5)
    from gantrain.commands.export import load_exported

    loaded = load_exported(tmp_path / "g.safetensors")  # the same fixed noise: the three exports draw alike
    torch.testing.assert_close(loaded(z, labels), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loaded(z, labels), loaded(z, labels), rtol=0, atol=0)


# ---- what the mutation run of the game found untested ------------------------------------------------------


def test_the_games_settings_from_the_config():
    from types import SimpleNamespace

    cfg = gantrain.compose(["experiment=stylegan2_mnist"])
    setup = SimpleNamespace(cfg=cfg, dataset=SimpleNamespace(shape=(1, 32, 32)),
                            settings=SimpleNamespace(batch_size=64, ema_decay=0.0))
    args = StyleGAN2.own_arguments(setup, None)
    assert args["r1_gamma"] == pytest.approx(0.0002 * 32**2 / 64)  # StyleGAN2-ADA's auto gamma: 0.0032
    assert (args["r1_interval"], args["pl_interval"], args["pl_weight"], args["pl_decay"], args["pl_batch_shrink"],
            args["mixing_prob"], args["ema_kimg"], args["ema_rampup"]) == (16, 4, 2.0, 0.01, 2, 0.9, 20.0, 0.05)
    given = gantrain.compose(["experiment=stylegan2_mnist", "stylegan2.r1_gamma=0.5", "stylegan2.ema_kimg=null"])
    assert StyleGAN2.own_arguments(SimpleNamespace(**{**vars(setup), "cfg": given}), None)["r1_gamma"] == 0.5
    assert StyleGAN2.keeps_ema(setup)  # ema_kimg
    assert not StyleGAN2.keeps_ema(SimpleNamespace(**{**vars(setup), "cfg": given}))
    assert StyleGAN2.keeps_ema(SimpleNamespace(cfg=given, settings=SimpleNamespace(ema_decay=0.999)))
    with pytest.raises(GantrainError, match="trainer.n_critic=1"):
        StyleGAN2(LinearSynthesis(1.0), LinearCritic(), NonSaturating(), n_critic=2, batch_size=6, num_samples=4,
                  seed=0, stats=Stats(torch.device("cpu")), r1_gamma=0.5)


def linear_game_with(loss, scale=1.5, **settings):
    args = dict(r1_gamma=0.5, mixing_prob=0.0, **settings)
    game = StyleGAN2(LinearSynthesis(scale), LinearCritic(), loss, n_critic=1, batch_size=6, num_samples=4, seed=0,
                     stats=Stats(torch.device("cpu")), **args)
    calls = []
    game.update = lambda network, loss, stat=None: calls.append((game.steps_done, network, stat, loss.detach().clone()))
    return game, calls


def test_the_losss_own_penalty_joins_ds_main_update_and_the_statistics_are_ds_readings():
    real = torch.randint(0, 256, (1, 6, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    mains = {}
    for gamma in (0.0, 2.0):
        torch.manual_seed(0)
        game, calls = linear_game_with(NonSaturating(r1_gamma=gamma), scale=0.0)  # G draws zeros: D(fake) = 0
        game.step(real)
        mains[gamma] = [loss for _, network, stat, loss in calls if network == "discriminator" and stat is None][0]
        means = game.stats.read()
    a_squared = float((torch.arange(16.0) / 10).square().sum())
    assert float(mains[2.0] - mains[0.0]) == pytest.approx(0.5 * 2.0 * a_squared, rel=1e-5)  # gamma / 2 |a|^2
    x = real[0].float() / 127.5 - 1
    logits = (x * (torch.arange(16.0).view(1, 1, 4, 4) / 10)).sum((1, 2, 3))
    assert means["d/acc_real"] == pytest.approx(float((logits > 0).float().mean()))
    assert means["d/acc_fake"] == 1.0 and means["d/fake"] == 0.0  # logit 0 counts as judged fake
    assert means["d/real"] == pytest.approx(float(logits.mean()), abs=1e-5)
    assert means["loss/penalty"] == pytest.approx(0.5 * 2.0 * a_squared, rel=1e-5)


def test_regularisers_with_zero_weight_never_run():
    game, calls = linear_game(r1_gamma=0.0, pl_weight=0.0)
    real = torch.randint(0, 256, (1, 6, 1, 4, 4), dtype=torch.uint8)
    for _ in range(17):
        game.step(real)
    assert {stat for *_, stat, _ in calls} == {None}


def test_the_ema_decay_follows_the_images_exactly_and_comes_back_with_the_state():
    game, _ = linear_game(ema_kimg=0.01, ema_rampup=None)  # a half-life of 10 images
    assert game.ema_beta(5) == 0.5 ** (6 / 10.0)
    ramped, _ = linear_game(ema_kimg=0.01, ema_rampup=0.5)
    assert ramped.ema_beta(1) == 0.5 ** (6 / 3.0) and ramped.ema_beta(0) == 0.0  # min(10, 0.5 x images seen)
    game.steps_done, game.pl_mean = 7, torch.tensor(0.25)
    state = game.own_state()
    fresh, _ = linear_game(ema_kimg=0.01, ema_rampup=None)
    fresh.load_own_state(state)
    assert fresh.steps_done == 7 and float(fresh.pl_mean) == 0.25 and fresh.ema_decay == 0.5 ** (6 / 10.0)
    untouched, _ = linear_game()
    untouched.load_own_state({})  # a checkpoint without the game's state: nothing to restore
    assert untouched.steps_done == 0


def test_the_sample_grid_uses_the_fixed_noise():
    torch.manual_seed(0)
    G = StyleGAN2Generator((1, 8, 8), latent_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)
    game = StyleGAN2(G, StyleGAN2Discriminator((1, 8, 8), channel_base=64, channel_max=8), NonSaturating(),
                     n_critic=1, batch_size=4, num_samples=4, seed=0, stats=Stats(torch.device("cpu")), r1_gamma=0.1)
    with torch.no_grad():
        for conv in G.synthesis.convs:
            conv.noise_strength.fill_(1.0)  # noise visible
    first, second = game.sample_grid(), game.sample_grid()
    assert torch.equal(first, second)
    G.eval()
    with torch.no_grad():
        assert torch.equal(first, G(game.fixed_z, noise_mode="const").float())


# ---- what the game's updates backpropagate, its statistics at the threshold, build-time code ----------------


def _backprop_recorder(game):
    """Replaces game.update: each update's loss differentiated in every parameter of its network (what the
    optimizer step would receive), recorded with the step and the phase."""
    seen = []

    def update(network, loss, stat=None):
        net = game.G if network == "generator" else game.D
        names, params = zip(*net.named_parameters())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        seen.append((game.steps_done, network, stat, dict(zip(names, grads))))

    game.update = update
    return seen


class BiasedCritic(LinearCritic):
    """D(x) = <a, x> + b."""

    def __init__(self, a_scale: float, bias: float):
        super().__init__()
        with torch.no_grad():
            self.a.mul_(a_scale)
        self.b = nn.Parameter(torch.tensor(bias))

    def forward(self, x):
        return super().forward(x) + self.b


def test_lazy_r1_update_is_its_second_order_gradient_with_gamma_over_2_times_the_interval():
    game, _ = linear_game(r1_gamma=0.3, r1_interval=16)
    seen = _backprop_recorder(game)
    real = torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    game.r1(real.float() / 127.5 - 1, None)
    (_, network, stat, grads), = seen
    assert (network, stat) == ("discriminator", "grad/d_reg")
    a = game.D.a.detach()
    # R1 = |a|^2 for every sample: d/da = 2a, times gamma / 2 x interval
    torch.testing.assert_close(grads["a"], 2 * a * 0.3 / 2 * 16, rtol=1e-5, atol=1e-7)


def test_path_length_update_is_its_second_order_gradient_times_weight_and_interval():
    game, _ = linear_game(pl_weight=2.0, pl_interval=4)
    seen = _backprop_recorder(game)
    torch.manual_seed(5)
    game.path_length(torch.device("cpu"))
    torch.manual_seed(5)
    torch.randn(3, 8)  # the batch's z (half the batch of 6)
    y = (torch.randn(3, 1, 4, 4) / 4.0).double()  # noise / sqrt(pixels)
    unit_lengths = y.view(3, 2, 8).square().sum(2).mean(1).sqrt()  # |J^T y| / scale for image = scale x ws
    scale = 1.5
    mean = 0.01 * (scale * unit_lengths).mean()  # the running mean after one update from 0 (a constant)
    expected = (2 * (scale * unit_lengths - mean) * unit_lengths).mean() * 2.0 * 4
    (_, network, stat, grads), = seen
    assert (network, stat) == ("generator", "grad/g_reg")
    torch.testing.assert_close(grads["scale"].double(), expected, rtol=1e-5, atol=1e-8)
    assert grads["unit"] is None or float(grads["unit"]) == 0.0  # the Jacobian in w does not depend on the mapping


def test_a_whole_step_backpropagates_ds_loss_into_d_after_gs_update():
    game = StyleGAN2(LinearSynthesis(0.0), LinearCritic(), NonSaturating(), n_critic=1, batch_size=6, num_samples=4,
                     seed=0, stats=Stats(torch.device("cpu")), r1_gamma=0.0, pl_weight=0.0, mixing_prob=0.0)
    seen = _backprop_recorder(game)
    real = torch.randint(0, 256, (1, 6, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    game.step(real)
    assert [(network, stat) for _, network, stat, _ in seen] == [("generator", None), ("discriminator", None)]
    x = real[0].double() / 127.5 - 1
    a = game.D.a.detach().double()
    logits = (x * a).sum((1, 2, 3))
    # non-saturating D loss: softplus(-D(x)) on real, softplus(D(G(z))) on fake; G draws zeros, so only the real
    # term moves a: d/da = mean_i -sigmoid(-D(x_i)) x_i
    expected = (-torch.sigmoid(-logits).view(6, 1, 1, 1) * x).mean(0, keepdim=True)
    torch.testing.assert_close(seen[1][3]["a"].double(), expected, rtol=1e-5, atol=1e-7)
    assert all(p.requires_grad for p in game.D.parameters())  # D frozen for G's update only


@pytest.mark.parametrize("bias, accuracies", [(0.0, (0.0, 1.0)), (-1.0, (0.0, 1.0)), (1.0, (1.0, 0.0))])
def test_d_accuracy_statistics_count_a_logit_at_the_threshold_as_fake(bias, accuracies):
    game = StyleGAN2(LinearSynthesis(1.5), BiasedCritic(0.0, bias), NonSaturating(), n_critic=1, batch_size=6,
                     num_samples=4, seed=0, stats=Stats(torch.device("cpu")), r1_gamma=0.0, pl_weight=0.0,
                     mixing_prob=0.0)
    game.update = lambda network, loss, stat=None: None
    game.step(torch.randint(0, 256, (1, 6, 1, 4, 4), dtype=torch.uint8))
    means = game.stats.read()
    assert (means["d/acc_real"], means["d/acc_fake"]) == accuracies  # every logit equals the bias


def test_the_path_length_batch_is_at_least_one_sample():
    for batch, shrink, expected in ((2, 2, 1), (3, 4, 1), (8, 2, 4), (7, 1, 7), (9, 4, 2)):
        game = StyleGAN2(LinearSynthesis(1.0), LinearCritic(), NonSaturating(), n_critic=1, batch_size=batch,
                         num_samples=4, seed=0, stats=Stats(torch.device("cpu")), r1_gamma=0.1,
                         pl_batch_shrink=shrink)
        assert game.pl_batch == expected, (batch, shrink)


def test_a_path_length_weight_below_one_still_runs():
    game, calls = linear_game(pl_weight=0.5, r1_gamma=0.0)
    game.step(torch.randint(0, 256, (1, 6, 1, 4, 4), dtype=torch.uint8))
    assert [stat for _, _, stat, _ in calls] == [None, "grad/g_reg", None]


def test_the_games_python_defaults_are_the_configs():
    import inspect

    from gantrain.config import stylegan2_settings

    s = stylegan2_settings(gantrain.compose(["generator=stylegan2", "discriminator=stylegan2", "game=stylegan2"]))
    defaults = {k: p.default for k, p in inspect.signature(StyleGAN2.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert defaults == {k: getattr(s, k) for k in defaults}
    assert set(defaults) == {"r1_interval", "pl_weight", "pl_interval", "pl_decay", "pl_batch_shrink", "mixing_prob",
                             "ema_kimg", "ema_rampup"}


def test_build_refuses_a_generator_that_is_not_style_based_and_names_it():
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from gantrain.training.games.stylegan2 import ConditionalStyleGAN2

    assert StyleGAN2.variants() == (StyleGAN2, ConditionalStyleGAN2)
    for node, shown in (({"_target_": "gantrain.nets.dcgan.DCGANGenerator"}, "gantrain.nets.dcgan.DCGANGenerator"),
                        ({}, "unset")):
        with pytest.raises(GantrainError) as err:
            StyleGAN2.build(SimpleNamespace(cfg=OmegaConf.create({"generator": node})))
        assert str(err.value) == ("game=stylegan2 trains a style-based generator; add generator=stylegan2 "
                                  f"discriminator=stylegan2 (the generator is {shown})")


def test_a_conditional_games_grid_shows_its_fixed_labels_with_the_fixed_noise():
    from gantrain.training.games.stylegan2 import ConditionalStyleGAN2

    torch.manual_seed(0)
    G = StyleGAN2Generator((1, 8, 8), latent_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8,
                           num_classes=3)
    D = StyleGAN2Discriminator((1, 8, 8), channel_base=64, channel_max=8, num_classes=3)
    game = ConditionalStyleGAN2(G, D, NonSaturating(), n_critic=1, batch_size=4, num_samples=6, seed=0,
                                stats=Stats(torch.device("cpu")), r1_gamma=0.1, num_classes=3)
    with torch.no_grad():
        for conv in G.synthesis.convs:
            conv.noise_strength.fill_(1.0)
    assert game.fixed_labels is not None and sorted(set(game.fixed_labels.tolist())) == [0, 1, 2]
    grid = game.sample_grid()
    G.eval()
    with torch.no_grad():
        torch.testing.assert_close(grid, G(game.fixed_z, game.fixed_labels, noise_mode="const").float())
        assert not torch.allclose(grid, G(game.fixed_z, (game.fixed_labels + 1) % 3, noise_mode="const").float())


@pytest.mark.parametrize("setting, message", [
    ("stylegan2.mixing_prob=1.5", "stylegan2.mixing_prob=1.5 must be in [0, 1]"),  # pl_decay's default not named
    ("stylegan2.pl_decay=-0.5", "stylegan2.pl_decay=-0.5 must be in [0, 1]"),
    ("stylegan2.ema_kimg=-1", "stylegan2.ema_kimg=-1.0 must be above 0 or null"),  # nor ema_rampup's
    ("stylegan2.ema_rampup=0", "stylegan2.ema_rampup=0.0 must be above 0 or null"),
    ("stylegan2.ema_kimg=nan", "stylegan2.ema_kimg=nan must be above 0 or null"),  # it trained a NaN EMA generator
])
def test_a_bad_stylegan2_setting_is_named_alone(setting, message):
    import gantrain
    from gantrain.config import stylegan2_settings
    from gantrain.errors import GantrainError

    with pytest.raises(GantrainError) as err:
        stylegan2_settings(gantrain.compose(["experiment=stylegan2_mnist", setting]))
    assert str(err.value) == message
