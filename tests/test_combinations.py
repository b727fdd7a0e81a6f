"""Where two features meet: each step checked against one written out here (issue 24).

pix2pix's step with jitter on (the fake pair is (input, output) like the real (input, target); input and target
get the same crop and flip); the penalties on the augmented images D sees (DiffAugment and ADA); a conditional
penalty with the real images' labels; rollbacks under decaying learning-rate schedules, two in a row;
per-network Adam betas; the CycleGAN history pool's exact content once it is full.
The optimizers of the reference steps are plain SGD: under Adam a loss scaled by a constant gives the same update.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import gantrain
from gantrain.training.build import build
from gantrain.checkpoint import load_checkpoint
from gantrain.data.base import normalize
from gantrain.training.games.translation import ImagePool, Pix2Pix
from gantrain.nets.translation import Translator
from gantrain.training.losses import NonSaturating
from gantrain.training.stats import Stats
from gantrain.nets.translation import PatchDiscriminator, UNetGenerator

from test_divergence import InjectNaN, loop_with, rows


def assert_same_weights(mine: torch.nn.Module, reference: torch.nn.Module, atol: float = 1e-5) -> None:
    for (name, x), y in zip(mine.named_parameters(), reference.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=atol, msg=name)


# ---- pix2pix with jitter on -------------------------------------------------------------------------


def _find_window(big: torch.Tensor, image: torch.Tensor, size: int) -> tuple[int, int, bool]:
    """(top, left, flipped) of the one size x size window of big (H, W) that, flipped left-right when flipped,
    is image pixel for pixel."""
    found = [(top, left, flip) for top in range(big.shape[0] - size + 1) for left in range(big.shape[1] - size + 1)
             for flip in (False, True)
             if torch.equal(_window(big, top, left, flip, size), image)]
    assert len(found) == 1, f"{len(found)} windows of the resized input match what D saw"
    return found[0]


def _window(big: torch.Tensor, top: int, left: int, flip: bool, size: int) -> torch.Tensor:
    w = big[..., top:top + size, left:left + size]
    return w.flip(-1) if flip else w


def test_pix2pix_step_with_jitter_matches_a_hand_computation() -> None:
    """D's real pair is (input, target) and its fake pair (input, output), input and target cropped and flipped
    alike (found pixel for pixel among every window of the resized images); D's and G's losses and SGD updates
    are those of the losses written out here on those pairs."""
    torch.manual_seed(0)
    size, load, n, lr, l1_weight = 32, 36, 6, 0.05, 10.0
    t = Translator(UNetGenerator(1, 1, size, width=4, dropout=False), None, 1, 1, size)
    d = PatchDiscriminator(2, size, width=4)
    grid = torch.zeros(1, 1, size, size)
    game = Pix2Pix(t, d, NonSaturating(), l1_weight=l1_weight, load_size=load, flip=True, grid_a=grid, grid_b=grid,
                   stats=Stats(torch.device("cpu")))
    assert game.grid_columns == 6 and len(game.sample_grid()) == 3  # two whole (input | output | target) per row
    game.optimizers = {k: torch.optim.SGD(v.parameters(), lr=lr) for k, v in game.networks.items()}
    G, D = copy.deepcopy(t.ab), copy.deepcopy(d)
    raw = torch.randint(0, 256, (1, n, 2, size, size), dtype=torch.uint8)
    seen: list[torch.Tensor] = []
    hook = d.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    torch.manual_seed(1)
    game.step(raw)
    hook.remove()
    assert len(seen) == 3  # D on the real pair, on the fake pair, then in G's update
    real_pair, fake_pair, _ = seen

    big = F.interpolate(normalize(raw[0]), size=(load, load), mode="bilinear", align_corners=False)
    windows = [_find_window(big[i, 0], real_pair[i, 0], size) for i in range(n)]
    assert len(set(windows)) > 1 and any(w[2] for w in windows) and not all(w[2] for w in windows)  # it jittered
    a = torch.stack([_window(big[i, :1], *w, size) for i, w in enumerate(windows)])
    b = torch.stack([_window(big[i, 1:], *w, size) for i, w in enumerate(windows)])
    for i in range(n):  # the target got its input's crop and flip
        assert torch.equal(real_pair[i, 1], b[i, 0]), f"pair {i}: target not cropped/flipped as its input {windows[i]}"

    fake = G(a)
    torch.testing.assert_close(fake_pair, torch.cat([a, fake], 1), rtol=1e-5, atol=1e-6,
                               msg="D's fake pair is not (input, output)")
    opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=lr), torch.optim.SGD(D.parameters(), lr=lr)
    real_logits = D(torch.cat([a, b], 1)).flatten()
    fake_logits = D(torch.cat([a, fake.detach()], 1)).flatten()
    d_loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                    + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    D.requires_grad_(False)
    g_logits = D(torch.cat([a, fake], 1)).flatten()
    g_loss = F.binary_cross_entropy_with_logits(g_logits, torch.ones_like(g_logits))
    l1 = (fake - b).abs().mean()
    opt_g.zero_grad()
    (g_loss + l1_weight * l1).backward()
    opt_g.step()

    means = game.stats.read()
    assert means["loss/d"] == pytest.approx(d_loss.item(), rel=1e-5)
    assert means["loss/g"] == pytest.approx(g_loss.item(), rel=1e-5)
    assert means["loss/l1"] == pytest.approx(l1.item(), rel=1e-5)
    assert_same_weights(game.D, D)
    assert_same_weights(game.T.ab, G)


def test_jitter_crops_every_window_of_the_resized_image_and_no_other() -> None:
    """Over many samples every crop offset 0..load-size (rows and columns) and both flips occur, and each
    output is one window of the resized input."""
    from gantrain.training.games.translation import jitter

    torch.manual_seed(0)
    size, load, n = 4, 9, 600
    x = torch.randn(n, 1, size, size)
    out = jitter(x, load, flip=True)
    big = F.interpolate(x, size=(load, load), mode="bilinear", align_corners=False)
    found = [_find_window(big[i, 0], out[i, 0], size) for i in range(n)]
    assert {top for top, _, _ in found} == set(range(load - size + 1))
    assert {left for _, left, _ in found} == set(range(load - size + 1))
    assert {flip for _, _, flip in found} == {False, True}


def test_pix2pix_with_r1_over_two_steps_matches_a_hand_computation() -> None:
    """pix2pix with a penalty (R1 on the real pair's target, through D's per-sample patch mean) over two
    steps: D trains in both (its gradients come back on after G's update), and D's update includes the
    penalty, as written out here."""
    torch.manual_seed(0)
    size, n, lr, l1_weight, gamma = 16, 4, 0.05, 10.0, 5.0
    t = Translator(UNetGenerator(1, 1, size, width=4, dropout=False), None, 1, 1, size)
    d = PatchDiscriminator(2, size, width=4)
    grid = torch.zeros(1, 1, size, size)
    game = Pix2Pix(t, d, NonSaturating(r1_gamma=gamma), l1_weight=l1_weight, load_size=size, flip=False,
                   grid_a=grid, grid_b=grid, stats=Stats(torch.device("cpu")))
    game.optimizers = {k: torch.optim.SGD(v.parameters(), lr=lr) for k, v in game.networks.items()}
    G, D = copy.deepcopy(t.ab), copy.deepcopy(d)
    opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=lr), torch.optim.SGD(D.parameters(), lr=lr)
    before = copy.deepcopy(d)
    for step in range(2):
        raw = torch.randint(0, 256, (1, n, 2, size, size), dtype=torch.uint8)
        after_first = copy.deepcopy(game.D)
        game.step(raw)
        x = normalize(raw[0])
        a, b = x[:, :1], x[:, 1:]
        fake = G(a)
        real_logits = D(torch.cat([a, b], 1)).flatten()
        fake_logits = D(torch.cat([a, fake.detach()], 1)).flatten()
        d_loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                        + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        target = b.clone().requires_grad_(True)
        score = D(torch.cat([a, target], 1)).flatten(1).mean(1)  # one score per pair
        (grad,) = torch.autograd.grad(score.sum(), target, create_graph=True)
        r1 = grad.flatten(1).square().sum(1).mean()
        opt_d.zero_grad()
        (d_loss + 0.5 * gamma * r1).backward()
        opt_d.step()
        D.requires_grad_(False)
        g_logits = D(torch.cat([a, fake], 1)).flatten()
        g_loss = F.binary_cross_entropy_with_logits(g_logits, torch.ones_like(g_logits))
        opt_g.zero_grad()
        (g_loss + l1_weight * (fake - b).abs().mean()).backward()
        opt_g.step()
        D.requires_grad_(True)
        assert game.stats.read()["loss/penalty"] == pytest.approx(0.5 * gamma * r1.item(), rel=1e-4)
        game.stats.reset()
        assert_same_weights(game.D, D)
        assert_same_weights(game.T.ab, G)
        moved = max((p - q).abs().max().item() for p, q in zip(game.D.parameters(), after_first.parameters()))
        assert moved > 0, f"D did not train at step {step}"
    assert any(not torch.equal(p, q) for p, q in zip(game.D.parameters(), before.parameters()))


# ---- penalties on what D sees ---------------------------------------------------------------------

GAN_TINY = ["dataset=digits", "dataset.image_size=16", "trainer.device=cpu", "generator.base_channels=8",
            "discriminator.base_channels=8", "trainer.batch_size=16", "optimizer=sgd", "trainer.n_critic=1"]
AUGMENTED = {
    # DiffAugment (p = 1) with the WGAN-GP penalty on interpolates of the augmented real and generated images
    "diffaugment_gp": ["loss=wgan_gp", "optimizer.lr=1e-3", "augment.policy=[color,translation,cutout]"],
    # ADA (p moving at every observation) with R1 on the augmented real images (a large gamma: R1 is small at the
    # start, and its share of D's update shows in the weights)
    "ada_r1": ["loss=hinge", "loss.r1_gamma=100.0", "discriminator.norm=none", "optimizer.lr=0.02",
               "augment.policy=[translation,cutout]", "augment.ada=true", "augment.ada_interval=1",
               "augment.ada_kimg=0.1"],
}


def _penalty(kind: str, critic, seen_real: torch.Tensor, seen_fake: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """The weighted penalty, written out: WGAN-GP with lambda 10, or R1 with `gamma`."""
    if kind == "gp":
        eps = torch.rand(seen_real.shape[0], 1, 1, 1)
        x = (eps * seen_real + (1 - eps) * seen_fake).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        return 10.0 * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    x = seen_real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return gamma / 2 * (grad.flatten(1) ** 2).sum(1).mean()


@pytest.mark.parametrize("recipe", sorted(AUGMENTED))
def test_penalty_is_taken_on_the_augmented_images_d_sees(recipe: str, tmp_path) -> None:
    cfg = gantrain.compose([*GAN_TINY, *AUGMENTED[recipe]])
    loop = build(cfg, tmp_path)
    game = loop.game
    if recipe == "ada_r1":
        game.augment.p.fill_(0.6)  # ADA starts at p = 0 (nothing augmented); 0.6: some samples each way
    augment = copy.deepcopy(game.augment)
    G, D = copy.deepcopy(game.G), copy.deepcopy(game.D)
    lr = cfg.optimizer.lr
    opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=lr), torch.optim.SGD(D.parameters(), lr=lr)
    d_loss_of = ((lambda r, f: f.mean() - r.mean()) if recipe == "diffaugment_gp"
                 else (lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean()))
    ps = []
    for step in range(2):
        raw = loop.batches.next(1)
        real = raw[0].float() / 127.5 - 1
        loop.stats.reset()
        torch.manual_seed(70 + step)
        game.step(raw)
        torch.manual_seed(70 + step)
        fake = G(torch.randn(16, G.latent_dim))
        seen_real, seen_fake = augment(real), augment(fake.detach())
        assert not torch.equal(seen_real, real)  # the augmentation changed what D sees
        r, f = D(seen_real).flatten(), D(seen_fake).flatten()
        d_loss = d_loss_of(r, f)
        penalty = _penalty("gp" if recipe == "diffaugment_gp" else "r1", D, seen_real, seen_fake, gamma=100.0)
        opt_d.zero_grad()
        (d_loss + penalty).backward()
        opt_d.step()
        augment.observe(r.detach())
        D.requires_grad_(False)
        g_loss = -D(augment(fake)).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        D.requires_grad_(True)
        means = loop.stats.read()
        assert means["loss/penalty"] == pytest.approx(penalty.item(), rel=1e-4, abs=0)  # R1 starts near 1e-4
        assert means["loss/d"] == pytest.approx(d_loss.item(), rel=1e-4, abs=1e-6)
        assert_same_weights(game.D, D)
        assert_same_weights(game.G, G)
        assert float(game.augment.p) == pytest.approx(float(augment.p))
        ps.append(float(game.augment.p))
    if recipe == "ada_r1":  # p moved at each observation, by 16 images / 100 images
        assert ps[0] == pytest.approx(0.6 + 0.16 * math.copysign(1, ps[0] - 0.6))
        assert abs(ps[1] - ps[0]) == pytest.approx(0.16)


CONDITIONAL = ["dataset=digits", "trainer.device=cpu", "generator.base_channels=8", "discriminator.base_channels=8",
               "trainer.batch_size=32", "conditional=true", "condition.discriminator=projection", "optimizer=sgd",
               "trainer.n_critic=1", "discriminator.norm=none"]


@pytest.mark.parametrize("penalty", ["r1", "gp"])
def test_conditional_penalty_uses_the_real_labels(penalty: str, tmp_path) -> None:
    """The penalty differentiates D(x, y) with y the real images' labels (not the generated samples' labels),
    both R1 on the real images and WGAN-GP on interpolates."""
    loss = (["loss=hinge", "loss.r1_gamma=2.0", "optimizer.lr=0.02"] if penalty == "r1"
            else ["loss=wgan_gp", "optimizer.lr=1e-3"])
    cfg = gantrain.compose([*CONDITIONAL, *loss])
    loop = build(cfg, tmp_path)
    game = loop.game
    G, D = copy.deepcopy(game.G), copy.deepcopy(game.D)
    opt_d = torch.optim.SGD(D.parameters(), lr=cfg.optimizer.lr)
    images, labels = loop.batches.next(1)
    real, real_y = images[0].float() / 127.5 - 1, labels[0]
    torch.manual_seed(5)
    game.step((images, labels))
    torch.manual_seed(5)
    z = torch.randn(32, G.latent_dim)
    fake_y = torch.searchsorted(game.label_cdf, torch.rand(32), right=True).clamp(max=9)
    assert not torch.equal(fake_y, real_y)
    with torch.no_grad():
        fake = G(z, fake_y)
    r, f = D(real, real_y).flatten(), D(fake, fake_y).flatten()
    d_loss = (F.relu(1 - r).mean() + F.relu(1 + f).mean()) if penalty == "r1" else f.mean() - r.mean()
    weighted = _penalty(penalty, lambda x: D(x, real_y), real, fake)
    opt_d.zero_grad()
    (d_loss + weighted).backward()
    opt_d.step()
    means = loop.stats.read()
    assert means["loss/penalty"] == pytest.approx(weighted.item(), rel=1e-4, abs=0)
    assert means["loss/d"] == pytest.approx(d_loss.item(), rel=1e-4, abs=1e-6)
    assert_same_weights(game.D, D)


# ---- rollback under decaying schedules ------------------------------------------------------------


class InjectNaNTwice(InjectNaN):
    """G's first weight becomes NaN after step `at`, the first two times the run passes that step."""

    def __call__(self, loop, final=False):
        if loop.step == self.at and self.fired < 2:
            self.fired += 1
            with torch.no_grad():
                next(loop.game.networks["generator"].parameters()).fill_(math.nan)


def _factor(schedule: str, step: int, total: int = 60) -> float:
    """The schedule's factor of the configured rate after `step` steps, written out."""
    if schedule == "linear":
        return 1 - step / total
    hold = total // 2
    return 1.0 if step <= hold else 1 - (step - hold) / (total - hold)


@pytest.mark.parametrize("schedule", ["linear", "constant_linear"])
@pytest.mark.parametrize("scenario", ["twice_in_a_row", "twice_apart"])
def test_rollback_halving_survives_the_schedule(schedule: str, scenario: str, tmp_path) -> None:
    """After each rollback the rates are half those before it, at every later step of a linear or
    constant-then-linear schedule: the next schedule step does not undo the halving. Two in a row go back to the
    same checkpoint (written at the full rate): 1/4 from there on; two apart: 1/2, then 1/4."""
    extra = ["trainer.on_divergence=rollback", f"optimizer.lr_schedule={schedule}"]
    loop = loop_with(tmp_path, 60, extra)
    if scenario == "twice_in_a_row":
        loop.periodic.insert(0, InjectNaNTwice(25))
        scales = {10: 1.0, 20: 1.0, 30: 0.25, 40: 0.25, 50: 0.25, 60: 0.25}
        record = [(30, 20, 0.5), (30, 20, 0.25)]
    else:
        loop.periodic[:0] = [InjectNaN(25), InjectNaN(45)]
        scales = {10: 1.0, 20: 1.0, 30: 0.5, 40: 0.5, 50: 0.25, 60: 0.25}
        record = [(30, 20, 0.5), (50, 40, 0.25)]
    loop.fit()
    logged = rows(tmp_path)
    assert [r["step"] for r in logged] == sorted(scales)
    for r in logged:
        want = 1e-3 * scales[r["step"]] * _factor(schedule, r["step"])
        assert (r["lr/g"], r["lr/d"]) == (pytest.approx(want, abs=1e-12), pytest.approx(want, abs=1e-12)), r["step"]
    state = load_checkpoint(tmp_path / "checkpoints" / "step_00000040.pt")
    rollbacks = state["periodic"]["divergence"]["rollbacks"]
    assert [(x["step"], x["to"], x["lr_scale"]) for x in rollbacks] == record[:len(rollbacks)]
    for who in ("generator", "discriminator"):
        assert state["schedules"][who]["base_lrs"] == [pytest.approx(1e-3 * scales[40])]
        assert state["optimizers"][who]["param_groups"][0]["lr"] == pytest.approx(1e-3 * scales[40] * _factor(schedule, 40))


# ---- per-network optimizer settings -----------------------------------------------------------------


@pytest.mark.parametrize("overrides, want_g, want_d", [
    (["optimizer.betas=[0.3,0.7]", "optimizer.generator.betas=[0.0,0.9]"], (0.0, 0.9), (0.3, 0.7)),
    (["optimizer.discriminator.betas=[0.1,0.99]"], (0.5, 0.999), (0.1, 0.99)),
    (["optimizer.betas=[0.2,0.8]", "optimizer.generator.betas=[0.0,0.99]", "optimizer.discriminator.betas=[0.9,0.95]",
      "optimizer.generator.lr=1e-4", "optimizer.discriminator.lr=4e-4"], (0.0, 0.99), (0.9, 0.95)),
])
def test_each_network_gets_its_own_betas_before_the_shared_ones(overrides, want_g, want_d, tmp_path) -> None:
    cfg = gantrain.compose(["dataset=ring", "generator=mlp", "discriminator=mlp", "trainer.device=cpu", *overrides])
    optimizers = build(cfg, tmp_path).game.optimizers
    assert optimizers["generator"].param_groups[0]["betas"] == want_g
    assert optimizers["discriminator"].param_groups[0]["betas"] == want_d
    lr_g = 1e-4 if "optimizer.generator.lr=1e-4" in overrides else cfg.optimizer.lr
    lr_d = 4e-4 if "optimizer.discriminator.lr=4e-4" in overrides else cfg.optimizer.lr
    assert (float(optimizers["generator"].param_groups[0]["lr"]), float(optimizers["discriminator"].param_groups[0]["lr"])) == (
        pytest.approx(lr_g), pytest.approx(lr_d))


@pytest.mark.parametrize("name, kind, settings", [
    ("adam", torch.optim.Adam, {"betas": (0.5, 0.999), "eps": 1e-7, "weight_decay": 0.001}),
    ("adamw", torch.optim.AdamW, {"betas": (0.5, 0.999), "eps": 1e-7, "weight_decay": 0.001}),
    ("rmsprop", torch.optim.RMSprop, {"alpha": 0.9, "eps": 1e-7, "momentum": 0.3, "weight_decay": 0.001}),
    ("sgd", torch.optim.SGD, {"momentum": 0.3, "weight_decay": 0.001}),
])
def test_each_optimizer_name_gives_its_optimizer_with_the_settings(name, kind, settings, tmp_path) -> None:
    cfg = gantrain.compose(["dataset=ring", "generator=mlp", "discriminator=mlp", "trainer.device=cpu",
                            f"optimizer={name}", "optimizer.eps=1e-7", "optimizer.weight_decay=0.001",
                            "optimizer.momentum=0.3", "optimizer.alpha=0.9", "optimizer.generator.lr=3e-4"])
    optimizers = build(cfg, tmp_path).game.optimizers
    for who, lr in (("generator", 3e-4), ("discriminator", cfg.optimizer.lr)):
        optimizer = optimizers[who]
        assert type(optimizer) is kind, who
        group = optimizer.param_groups[0]
        assert float(group["lr"]) == pytest.approx(lr)
        assert {k: group[k] for k in settings} == pytest.approx(settings), who


def test_each_optimizer_name_takes_its_kernel_for_the_device_and_the_cuda_graph() -> None:
    """The update kernel make_optimizer asks torch for, by name, optimizer.kernel, device and capture: fused Adam and
    AdamW (CPU and CUDA) unless kernel=foreach, fused SGD on CUDA only, capturable foreach for a CUDA graph (SGD:
    never captured). Only the choice is read here, so the CUDA rows run on any machine: nothing is stepped."""
    from gantrain.config import OptimizerConfig
    from gantrain.training.optim import make_optimizer

    fused, foreach, capturable = {"fused": True}, {"foreach": True}, {"capturable": True, "foreach": True}
    table = {  # (name, kernel, device, capture) -> the flags set
        **{(name, kernel, device, False): fused for name in ("adam", "adamw") for kernel in ("auto", "fused")
           for device in ("cpu", "cuda")},
        **{(name, "foreach", device, False): foreach for name in ("adam", "adamw") for device in ("cpu", "cuda")},
        **{(name, kernel, "cuda", True): capturable for name in ("adam", "adamw", "rmsprop")
           for kernel in ("auto", "fused", "foreach") if (name, kernel) != ("rmsprop", "fused")},
        **{("rmsprop", kernel, device, False): foreach for kernel in ("auto", "foreach") for device in ("cpu", "cuda")},
        ("sgd", "auto", "cpu", False): foreach, ("sgd", "foreach", "cpu", False): foreach,
        ("sgd", "auto", "cuda", False): fused, ("sgd", "foreach", "cuda", False): foreach,
        ("sgd", "auto", "cuda", True): foreach,
    }
    for (name, kernel, device, capture), flags in table.items():
        w = torch.nn.Parameter(torch.ones(3))
        config = OptimizerConfig(name="".join(list(name)), kernel="".join(list(kernel)))  # new strings, as a config file gives
        o = make_optimizer([w], config, "generator", torch.device(device), capture)
        chosen = {k: o.defaults.get(k) for k in ("fused", "foreach", "capturable") if o.defaults.get(k)}
        assert chosen == flags, (name, kernel, device, capture)


# ---- the CycleGAN history pool ----------------------------------------------------------------------


def test_the_full_pool_swaps_new_images_in_exactly() -> None:
    """Once full, each image draws a slot and a coin (in that order): heads (< 1/2) returns the stored image of
    that slot and stores the new one there; tails returns the new image and leaves the pool. Replayed here from
    the same seed, image by image: the returned batch and the pool's content after every swap."""
    pool = ImagePool(4, (1, 1, 1))
    pool(torch.arange(4.0).view(4, 1, 1, 1))
    stored = [0.0, 1.0, 2.0, 3.0]
    new = torch.arange(100.0, 112.0).view(12, 1, 1, 1)
    torch.manual_seed(3)
    out = pool(new)
    torch.manual_seed(3)
    want = []
    for value in new.flatten().tolist():
        slot, coin = int(torch.randint(0, 4, ())), float(torch.rand(()))
        if coin < 0.5:
            want.append(stored[slot])
            stored[slot] = value
        else:
            want.append(value)
    assert 0 < sum(w < 100 for w in want) < 12  # some swapped, some not
    assert out.flatten().tolist() == want
    assert pool.images.flatten().tolist() == stored
    assert int(pool.count) == 4
