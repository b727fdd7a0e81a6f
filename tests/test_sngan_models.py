"""SNGAN's ResNet generator and discriminator: shapes per supported size, conditioning, spectral norm, refusals,
gradients, the published network sizes, and the sngan presets (composed, built, trained a few steps)."""
import math

import pytest
import torch
from torch.nn.utils import parametrize

import gantrain
from gantrain.training.build import build
from gantrain.training.components import build_generator
from gantrain.errors import GantrainError
from gantrain.nets.sngan import SNGAN_SIZES, SNGANDiscriminator, SNGANGenerator

SMALL = dict(latent_dim=8, base_channels=8)  # tiny widths: every test here runs in a fraction of a second


def tiny(size: int, channels: int, num_classes: int = 0, conditioning: str = "projection", spectral_norm: bool = True):
    g = SNGANGenerator((channels, size, size), num_classes=num_classes, **SMALL)
    d = SNGANDiscriminator((channels, size, size), base_channels=8, spectral_norm=spectral_norm,
                           num_classes=num_classes, conditioning=conditioning)
    return g, d


def test_supported_sizes_are_the_documented_ones():
    assert SNGAN_SIZES == (28, 32, 64)


@pytest.mark.parametrize("size", SNGAN_SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_unconditional_shapes_and_tanh_bound(size, channels):
    torch.manual_seed(0)
    g, d = tiny(size, channels)
    x = g(torch.randn(4, 8))
    assert x.shape == (4, channels, size, size)
    assert x.abs().max() <= 1 and x.std() > 0  # tanh output, not constant
    assert d(x).shape == (4,) and d(x).dtype == torch.float32
    assert g.sample(3).shape == (3, channels, size, size) and g.sample(0).shape == (0, channels, size, size)
    # the start map and block count of the documented plan: 7x7 and 2 blocks at 28, 4x4 and 3 or 4 at 32 / 64
    assert (g.bottom, len(g.blocks)) == {28: (7, 2), 32: (4, 3), 64: (4, 4)}[size]
    assert len(d.blocks) == {28: 4, 32: 4, 64: 5}[size]


def test_unbounded_generator_has_no_tanh():
    g = SNGANGenerator((1, 28, 28), bounded=False, **SMALL)
    with torch.no_grad():
        g.out.bias.fill_(3.0)  # beyond tanh's range
    assert g(torch.randn(2, 8)).max() > 1


@pytest.mark.parametrize("conditioning", ["projection", "concat", "ac"])
@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_conditional_shapes_and_labels_matter(conditioning, size, channels):
    torch.manual_seed(0)
    g, d = tiny(size, channels, num_classes=10, conditioning=conditioning)
    assert (g.num_classes, d.num_classes, d.conditioning) == (10, 10, conditioning)
    z, y = torch.randn(6, 8), torch.arange(6) % 10
    x = g(z, y)
    assert x.shape == (6, channels, size, size) and x.abs().max() <= 1
    assert g.sample(4, labels=3).shape == (4, channels, size, size)
    # conditional batch norm starts as plain batch norm; once its per-class shifts differ, so do the images
    for module in g.modules():
        if hasattr(module, "shift"):
            torch.nn.init.normal_(module.shift.weight, 0.0, 1.0)
    assert not torch.allclose(g(z, y), g(z, (y + 1) % 10))
    logits = d(x, y)
    assert logits.shape == (6,)
    if conditioning != "ac":  # projection and concat logits depend on the label; ac's only through its classifier
        assert not torch.allclose(logits, d(x, (y + 1) % 10))
    out, classes = d(x, y, classes=True)
    assert out.shape == (6,)
    assert classes.shape == (6, 10) if conditioning == "ac" else classes is None
    if conditioning == "concat":  # one-hot planes beside the image channels
        first = d.blocks[0].conv1
        assert first.in_channels == channels + 10 and d.blocks[0].shortcut.in_channels == channels + 10


def test_shortcuts_are_the_papers_order():
    # the blocks convolve their shortcuts at the small resolution; the function is the papers' (upsample then
    # conv1x1 in G; conv1x1 then avgpool in D's blocks)
    torch.manual_seed(0)
    g, d = tiny(32, 3, spectral_norm=False)
    x = torch.randn(2, 8, 4, 4)
    block = g.blocks[0]
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    assert torch.allclose(block.shortcut(up), torch.nn.functional.interpolate(block.shortcut(x), scale_factor=2),
                          atol=1e-6)
    x = torch.randn(2, 8, 16, 16)
    block = d.blocks[1]
    pool = torch.nn.functional.avg_pool2d
    assert torch.allclose(pool(block.shortcut(x), 2), block.shortcut(pool(x, 2)), atol=1e-6)
    residual = block.conv2(torch.relu(block.conv1(torch.relu(x))))
    assert torch.allclose(block(x), pool(residual, 2) + pool(block.shortcut(x), 2), atol=1e-5)


def test_conditional_models_refuse_missing_labels():
    g, d = tiny(32, 3, num_classes=10)
    with pytest.raises(GantrainError, match=r"conditional: call it as G\(z, labels\)"):
        g(torch.randn(2, 8))
    with pytest.raises(GantrainError, match=r"conditional: call it as D\(x, labels\)"):
        d(torch.randn(2, 3, 32, 32))
    with pytest.raises(GantrainError, match="unconditional"):
        tiny(32, 3)[0].sample(2, labels=1)


def _parametrized(module: torch.nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight")


@pytest.mark.parametrize("conditioning", ["projection", "ac"])
def test_spectral_norm_on_every_weight_of_the_discriminator(conditioning):
    _, d = tiny(32, 3, num_classes=10, conditioning=conditioning)
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding))]
    assert len(layers) >= 12 and all(_parametrized(m) for m in layers)  # head included
    _, plain = tiny(32, 3, spectral_norm=False)
    assert not any(_parametrized(m) for m in plain.modules())
    g, _ = tiny(32, 3)
    assert not any(_parametrized(m) for m in g.modules())  # SNGAN's generator has batch norm, no spectral norm
    # the normalised weights have spectral norm 1 (the linear layer's vector exactly; convolutions as reshaped matrices)
    d.eval()
    assert torch.linalg.matrix_norm(d.linear.weight, 2).item() == pytest.approx(1.0, abs=1e-4)
    for conv in (d.blocks[0].conv1, d.blocks[2].conv2):
        assert torch.linalg.matrix_norm(conv.weight.flatten(1), 2).item() == pytest.approx(1.0, abs=0.05)


def test_refusals_are_one_line_errors():
    cases = [
        (lambda: SNGANGenerator((1, 16, 16)), "generator=sngan works on 28, 32 or 64 px images, not 16x16; "
                                              "set dataset.image_size to 28, 32 or 64"),
        (lambda: SNGANDiscriminator((3, 48, 48)), "discriminator=sngan works on 28, 32 or 64 px images, not 48x48"),
        (lambda: SNGANGenerator((2,)), "generator=sngan needs square images (C, H, W)"),
        (lambda: SNGANDiscriminator((3, 32, 28)), "discriminator=sngan needs square images (C, H, W)"),
        (lambda: SNGANGenerator((1, 28, 28), base_channels=0), "generator.base_channels=0 must be a whole number >= 1"),
        (lambda: SNGANGenerator((1, 28, 28), latent_dim=-2), "generator.latent_dim=-2 must be a whole number >= 1"),
        (lambda: SNGANDiscriminator((1, 28, 28), base_channels=0), "discriminator.base_channels=0 must be"),
        (lambda: SNGANGenerator((1, 28, 28), num_classes=-1), "num_classes=-1 must be a whole number >= 0"),
        (lambda: SNGANDiscriminator((1, 28, 28), num_classes=10, conditioning="mix"), "condition.discriminator='mix'"),
        (lambda: build_generator({"_target_": "gantrain.sngan_models.SNGANGenerator", "norm": "batch"}, (1, 28, 28),
                                 "image"), "unknown key(s) generator.norm for SNGANGenerator"),
    ]
    for make, message in cases:
        with pytest.raises(GantrainError) as info:
            make()
        assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("conditioning", [None, "ac"])
def test_gradients_reach_every_parameter(conditioning):
    torch.manual_seed(0)
    classes = 10 if conditioning else 0
    g, d = tiny(28, 1, num_classes=classes, conditioning=conditioning or "projection")
    z, y = torch.randn(4, 8), torch.arange(4)
    if conditioning:
        logits, class_logits = d(g(z, y), y, classes=True)
        loss = logits.mean() + torch.nn.functional.cross_entropy(class_logits, y)
    else:
        loss = d(g(z)).mean()
    loss.backward()
    for name, p in [*g.named_parameters(), *d.named_parameters()]:
        if name.endswith("scale.weight") or name.endswith("shift.weight"):  # conditional BN: only the rows of y
            assert p.grad is not None and p.grad[y].abs().sum() > 0, name
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_published_networks():
    # Miyato et al. 2018, appendix B, the ResNet networks for CIFAR-10 (Table 4): G z in R^128 -> dense 4x4x256,
    # three up ResBlocks of 256, BN-ReLU-conv3x3-tanh; D two down ResBlocks of 128, two ResBlocks of 128, ReLU,
    # global sum pooling, dense -> 1. The paper prints no count: these are what those layers add up to (4.28M and
    # 1.05M; Mimicry's SNGANGenerator32 / SNGANDiscriminator32 and StudioGAN's resnet are the same networks).
    g, d = SNGANGenerator((3, 32, 32)), SNGANDiscriminator((3, 32, 32))
    g64, d64 = SNGANGenerator((3, 64, 64)), SNGANDiscriminator((3, 64, 64))
    g_cond = SNGANGenerator((3, 32, 32), num_classes=10)
    assert (g.latent_dim, _count(g), _count(d)) == (128, 4_276_739, 1_053_825)
    assert _count(g) == pytest.approx(4.3e6, rel=0.01) and _count(d) == pytest.approx(1.05e6, rel=0.01)
    # 64 px: G 1024 -> 512 -> 256 -> 128 -> 64 channels, D 64 -> 128 -> 256 -> 512 -> 1024 (Mimicry's SNGAN 64)
    assert [b.conv1.out_channels for b in g64.blocks] == [512, 256, 128, 64] and g64.linear.out_features == 16 * 1024
    assert [b.conv2.out_channels for b in d64.blocks] == [64, 128, 256, 512, 1024]
    assert (_count(g64), _count(d64)) == (12_220_675, 10_141_441)
    # conditional batch norm: a scale and shift per class per feature in place of the blocks' affine parameters
    assert _count(g_cond) - _count(g) == 6 * 2 * (10 - 1) * 256  # 3 blocks x 2 norms of 256 features


def test_presets_carry_the_recipe():
    hinge = gantrain.compose(["loss=hinge"])
    assert hinge.trainer.n_critic == 1  # what the loss sets; the presets come later and override it
    dcgan = gantrain.compose(["experiment=dcgan_mnist"])
    for name, dataset, steps in (("sngan_cifar10", "CIFAR10", 100_000), ("sngan_mnist", "MNIST", dcgan.trainer.steps)):
        cfg = gantrain.compose([f"experiment={name}"])
        assert cfg.dataset._target_ == f"gantrain.data.images.{dataset}" and cfg.loss._target_ == "gantrain.training.losses.Hinge"
        assert cfg.generator._target_ == "gantrain.nets.sngan.SNGANGenerator"
        assert cfg.discriminator._target_ == "gantrain.nets.sngan.SNGANDiscriminator"
        assert cfg.discriminator.spectral_norm is True
        assert (cfg.optimizer.name, cfg.optimizer.lr, list(cfg.optimizer.betas)) == ("adam", 2e-4, [0.0, 0.9])
        assert cfg.optimizer.generator.lr is None and cfg.optimizer.discriminator.betas is None  # the same for both
        assert (cfg.optimizer.lr_schedule, cfg.trainer.n_critic, cfg.trainer.batch_size) == ("linear", 5, 64)
        assert cfg.trainer.steps == steps and 0 < cfg.trainer.eval_every <= steps and cfg.trainer.best_metric
    cifar = gantrain.compose(["experiment=sngan_cifar10"])
    assert (cifar.generator.base_channels, cifar.discriminator.base_channels) == (256, 128)  # the paper's widths
    assert cifar.generator.latent_dim == 128
    assert (cifar.trainer.ema_decay, cifar.dataset.image_size) == (0.9999, 32)
    assert gantrain.compose(["experiment=sngan_mnist"]).dataset.image_size == 28


def test_sngan_mnist_preset_builds_and_trains(data_root, tmp_path):
    # the preset as composed, with a smaller batch and 3 steps (so the linear schedule reaches 0) to stay fast
    cfg = gantrain.compose(["experiment=sngan_mnist", f"dataset.root={data_root}", "trainer.device=cpu",
                            "trainer.batch_size=16", "trainer.steps=3"])
    loop = build(cfg, tmp_path)
    game = loop.game
    assert isinstance(game.G, SNGANGenerator) and isinstance(game.D, SNGANDiscriminator)
    assert (game.n_critic, game.G.out_shape, type(game.loss).__name__) == (5, (1, 28, 28), "Hinge")
    assert "generator" in game.ema and game.ema_decay == 0.999
    before = [p.detach().clone() for p in game.G.parameters()]
    for _ in range(3):
        loop.run_step()
    assert all(math.isfinite(v) for v in loop.stats.read().values())
    assert all(not torch.equal(a, b) for a, b in zip(before, game.G.parameters()) if a.dim() > 1)
    assert game.optimizers["generator"].param_groups[0]["lr"] == 0.0  # linear decay to 0 at trainer.steps
    images = game.ema["generator"].sample(4)
    assert images.shape == (4, 1, 28, 28) and images.abs().max() <= 1


def test_conditional_sngan_builds_and_steps(data_root, tmp_path):
    cfg = gantrain.compose(["experiment=sngan_mnist", f"dataset.root={data_root}", "trainer.device=cpu",
                            "conditional=true", "condition.discriminator=ac", "generator.base_channels=8",
                            "discriminator.base_channels=8", "trainer.batch_size=8", "trainer.n_critic=1"])
    loop = build(cfg, tmp_path)
    assert (loop.game.G.num_classes, loop.game.D.num_classes, loop.game.D.conditioning) == (10, 10, "ac")
    loop.game.step(loop.batches.next(1))
    assert all(math.isfinite(v) for v in loop.stats.read().values())
