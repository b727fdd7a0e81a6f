"""PacGAN packing in the MLP discriminator (discriminator.pack) and the tuned 2D presets."""
import pytest
import torch
from torch import nn

import gantrain
from gantrain.training.components import instantiate_component
from gantrain.errors import GantrainError
from gantrain.training.losses import Wasserstein, gradient_penalty, r1_penalty
from gantrain.nets.mlp import MLPDiscriminator


def first_linear(d: MLPDiscriminator) -> nn.Linear:
    return next(m for m in d.net if isinstance(m, nn.Linear))


def test_pack_groups_exactly_m_consecutive_samples():
    torch.manual_seed(0)
    d = MLPDiscriminator((2,), hidden=[16, 16], pack=4)
    x = torch.randn(12, 2)
    # row i of the packed input is samples 4i..4i+3, concatenated in order
    assert torch.equal(d.packed(x), torch.stack([torch.cat(list(x[4 * i:4 * i + 4])) for i in range(3)]))
    base = d(x)
    for sample in range(12):  # moving one sample changes the logit of its own pack only
        moved = x.clone()
        moved[sample] += 1.0
        changed = (d(moved) != base).nonzero().flatten().tolist()
        assert changed == [sample // 4], sample
    # a D that reads only the third sample of each pack: moving sample 4k+2 changes logit k, nothing else does
    with torch.no_grad():
        first_linear(d).weight[:, :4] = 0
        first_linear(d).weight[:, 6:] = 0
    base = d(x)
    for sample in range(12):
        moved = x.clone()
        moved[sample] += 1.0
        changed = (d(moved) != base).nonzero().flatten().tolist()
        assert changed == ([sample // 4] if sample % 4 == 2 else []), sample


@pytest.mark.parametrize("pack", [1, 2, 4])
def test_packed_shapes(pack):
    d = MLPDiscriminator((2,), hidden=[8], pack=pack)
    assert first_linear(d).in_features == 2 * pack
    assert d(torch.randn(8, 2)).shape == (8 // pack,)
    images = MLPDiscriminator((1, 8, 8), hidden=[8], pack=pack)
    assert first_linear(images).in_features == 64 * pack
    assert images(torch.randn(8, 1, 8, 8)).shape == (8 // pack,)


def test_pack_1_is_todays_network():
    torch.manual_seed(3)
    old = MLPDiscriminator((2,), hidden=[16, 16])
    torch.manual_seed(3)
    new = MLPDiscriminator((2,), hidden=[16, 16], pack=1)
    assert new.pack == 1
    assert {k: v.shape for k, v in old.state_dict().items()} == {k: v.shape for k, v in new.state_dict().items()}
    assert all(torch.equal(old.state_dict()[k], v) for k, v in new.state_dict().items())
    x = torch.randn(7, 2)  # any batch size
    assert torch.equal(new(x), new.net(x.flatten(1)).flatten())


def test_batch_not_divisible_by_pack_is_refused_in_one_line():
    d = MLPDiscriminator((2,), hidden=[8], pack=3)
    with pytest.raises(GantrainError) as info:
        d(torch.randn(10, 2))
    message = str(info.value)
    assert "\n" not in message
    assert "trainer.batch_size" in message and "discriminator.pack=3" in message


def test_batch_not_divisible_by_pack_is_refused_before_training(tmp_path):
    cfg = gantrain.compose(["experiment=grid", "discriminator.pack=3", "trainer.device=cpu", "trainer.steps=1",
                            "trainer.eval_every=0"])
    with pytest.raises(GantrainError) as info:
        gantrain.train(cfg, tmp_path / "run")
    message = str(info.value)
    assert "\n" not in message and "trainer.batch_size" in message and "discriminator.pack" in message


def test_packing_a_conditional_discriminator_is_refused_in_one_line():
    with pytest.raises(GantrainError) as info:
        MLPDiscriminator((2,), hidden=[8], num_classes=5, pack=2)
    message = str(info.value)
    assert "\n" not in message and "discriminator.pack" in message and "conditional" in message
    assert MLPDiscriminator((2,), hidden=[8], num_classes=5, pack=1)(torch.randn(4, 2), torch.arange(4)).shape == (4,)


@pytest.mark.parametrize("bad", [0, -2, True, 2.5, "2"])
def test_bad_pack_values_are_refused(bad):
    with pytest.raises(GantrainError, match="discriminator.pack"):
        MLPDiscriminator((2,), hidden=[8], pack=bad)


def test_gradient_penalties_work_with_packing():
    torch.manual_seed(0)
    d = MLPDiscriminator((2,), hidden=[16, 16], pack=4)
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    loss = Wasserstein(gradient_penalty=10.0, r1_gamma=1.0)  # the wgan_gp path, with R1 as well
    penalty = loss.penalty(d, real, fake)
    assert penalty.dim() == 0 and torch.isfinite(penalty) and penalty > 0
    penalty.backward()
    # every weight shapes grad_x D (the last bias does not, so it gets no gradient)
    weights = [m.weight for m in d.net if isinstance(m, nn.Linear)]
    assert all(w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0 for w in weights)
    # the per-sample gradient is the slice of the packed input's gradient: a linear critic w.x has
    # gradient w[4k:4k+4 samples] -> each sample sees its own 2 weights
    linear = MLPDiscriminator((2,), hidden=[], pack=4)
    with torch.no_grad():
        first_linear(linear).weight.copy_(torch.tensor([[0.6, 0.8, 0.0, 1.0, 3.0, 4.0, 1.0, 0.0]]))
    expected = torch.tensor([1.0, 1.0, 5.0, 1.0]).repeat(4)  # per-sample gradient norms
    gp = gradient_penalty(linear, real, fake)
    assert torch.allclose(gp, (expected - 1).square().mean())
    assert torch.allclose(r1_penalty(linear, real), expected.square().mean())


def test_pack_trains_end_to_end_with_wgan_gp(tmp_path):
    cfg = gantrain.compose(["experiment=grid", "loss=wgan_gp", "discriminator.pack=4", "discriminator.hidden=[16]",
                            "generator.hidden=[16]", "trainer.device=cpu", "trainer.steps=2", "trainer.batch_size=16",
                            "trainer.eval_every=0", "trainer.ema_decay=0"])
    run = gantrain.train(cfg, tmp_path / "run")
    assert (run / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize("name, steps, pack, schedule", [("ring", 12000, 2, "linear"),
                                                         ("grid", 20000, 1, "constant_linear")])
def test_tuned_presets_compose(name, steps, pack, schedule):
    cfg = gantrain.compose([f"experiment={name}"])
    assert cfg.dataset._target_ == f"gantrain.data.mixtures.{name.capitalize()}"
    assert cfg.loss._target_ == "gantrain.training.losses.NonSaturating" and cfg.loss.r1_gamma == 0.1
    assert cfg.discriminator.pack == pack
    assert cfg.optimizer.lr == 1.0e-3 and cfg.optimizer.lr_schedule == schedule
    assert cfg.trainer.steps == steps and cfg.trainer.batch_size == 256 and cfg.trainer.ema_decay == 0.99
    assert cfg.trainer.eval_every and cfg.trainer.steps % cfg.trainer.eval_every == 0  # the final G is evaluated
    assert cfg.trainer.batch_size % cfg.discriminator.pack == 0
    d = instantiate_component(cfg.discriminator, "discriminator", in_shape=(2,))
    assert isinstance(d, MLPDiscriminator) and d.pack == cfg.discriminator.pack
    # packing composes with the presets from the command line
    packed = gantrain.compose([f"experiment={name}", "discriminator.pack=4"])
    assert instantiate_component(packed.discriminator, "discriminator", in_shape=(2,)).pack == 4
