"""The game's step against hand-written reference steps (same seed, same data, losses written out here).

The optimizer is plain SGD: under Adam a loss scaled by a constant gives the same update, so a wrong
factor in a loss or penalty would go unseen.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

import gantrain
from gantrain.training.build import build

LR = {"wgan_gp": 1e-3}  # SGD learning rate per recipe (the penalty of weight 10 diverges at the default)
DEFAULT_LR = 0.05
RECIPES = {
    "minimax": ["loss=minimax"],
    "nonsaturating": ["loss=nonsaturating"],
    "hinge": ["loss=hinge"],
    "lsgan": ["loss=lsgan"],
    "wasserstein": ["loss=wasserstein"],  # n_critic 5, clipping 0.01
    "wgan_gp": ["loss=wgan_gp"],  # n_critic 5, penalty 10
    "hinge_r1": ["loss=hinge", "loss.r1_gamma=2.0", "discriminator.norm=none"],
    "hinge_2critic": ["loss=hinge", "trainer.n_critic=2"],  # an even n_critic: the last critic batch feeds G
}


def d_loss_of(recipe: str, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    ones, zeros = torch.ones_like(r), torch.zeros_like(f)
    if recipe in ("minimax", "nonsaturating"):
        return F.binary_cross_entropy_with_logits(r, ones) + F.binary_cross_entropy_with_logits(f, zeros)
    if recipe.startswith("hinge"):
        return torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean()
    if recipe == "lsgan":
        return ((r - 1) ** 2).mean() / 2 + (f**2).mean() / 2
    return f.mean() - r.mean()  # wasserstein, wgan_gp


def g_loss_of(recipe: str, f: torch.Tensor) -> torch.Tensor:
    if recipe == "minimax":  # G minimises log(1 - D(G(z)))
        return -F.binary_cross_entropy_with_logits(f, torch.zeros_like(f))
    if recipe == "nonsaturating":
        return F.binary_cross_entropy_with_logits(f, torch.ones_like(f))
    if recipe == "lsgan":
        return ((f - 1) ** 2).mean() / 2
    return -f.mean()


def reference_step(recipe, G, D, opt_g, opt_d, reals, latent_dim):
    """Gulrajani et al.'s Algorithm 1 shape: len(reals) critic updates, then one generator update."""
    for real in reals:
        b = real.shape[0]
        z = torch.randn(b, latent_dim)
        with torch.no_grad() if real is not reals[-1] else torch.enable_grad():
            fake = G(z)
        d_loss = d_loss_of(recipe, D(real), D(fake.detach()))
        total = d_loss
        if recipe == "wgan_gp":
            eps = torch.rand(b, 1, 1, 1)
            x_hat = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
            (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
            total = total + 10.0 * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        if recipe == "hinge_r1":
            x = real.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
            total = total + 2.0 / 2 * (grad.flatten(1) ** 2).sum(1).mean()
        opt_d.zero_grad()
        total.backward()
        opt_d.step()
        if recipe == "wasserstein":
            with torch.no_grad():
                for p in D.parameters():
                    p.clamp_(-0.01, 0.01)
    for p in D.parameters():
        p.requires_grad_(False)
    g_loss = g_loss_of(recipe, D(fake))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    for p in D.parameters():
        p.requires_grad_(True)
    return d_loss.item(), g_loss.item()


def assert_same_weights(a, b, atol):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=atol, msg=name)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_game_step_matches_reference(recipe, tmp_path):
    cfg = gantrain.compose([*RECIPES[recipe], "dataset=digits", "dataset.image_size=16", "trainer.device=cpu",
                            "generator.base_channels=8", "discriminator.base_channels=8", "trainer.batch_size=32",
                            "optimizer=sgd", f"optimizer.lr={LR.get(recipe, DEFAULT_LR)}"])
    loop = build(cfg, tmp_path)
    game = loop.game
    G, D = copy.deepcopy(game.G), copy.deepcopy(game.D)
    opt_g = torch.optim.SGD(G.parameters(), lr=cfg.optimizer.lr)
    opt_d = torch.optim.SGD(D.parameters(), lr=cfg.optimizer.lr)
    n_critic = cfg.trainer.n_critic
    moved = False
    for step in range(3):
        raw = loop.batches.next(n_critic)
        reals = [r.float() / 127.5 - 1 for r in raw]
        loop.stats.reset()
        before = [p.detach().clone() for p in game.G.parameters()]
        torch.manual_seed(100 + step)
        game.step(raw)
        torch.manual_seed(100 + step)
        d_ref, g_ref = reference_step(recipe, G, D, opt_g, opt_d, reals, G.latent_dim)
        moved |= any(not torch.equal(a, b) for a, b in zip(before, game.G.parameters()))
        means = loop.stats.read()
        assert all(map(math.isfinite, means.values())), means
        assert means["loss/g"] == pytest.approx(g_ref, rel=1e-4, abs=1e-6)
        if n_critic == 1:
            assert means["loss/d"] == pytest.approx(d_ref, rel=1e-4, abs=1e-6)
        assert ("loss/penalty" in means) == (recipe in ("wgan_gp", "hinge_r1"))
        assert_same_weights(game.G, G, atol=1e-5)
        assert_same_weights(game.D, D, atol=1e-5)
        for a, b in ((game.G, G), (game.D, D)):  # G's update leaves D's gradients as D's own update made them
            for (name, x), y in zip(a.named_parameters(), b.parameters()):
                torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-5, msg=name)
    assert moved  # the comparison saw real updates


def test_ema_follows_the_generator_by_one_minus_decay(tmp_path):
    cfg = gantrain.compose(["dataset=digits", "trainer.device=cpu", "generator.base_channels=8",
                            "discriminator.base_channels=8", "trainer.batch_size=32", "trainer.ema_decay=0.9"])
    game = build(cfg, tmp_path).game
    ema = game.ema["generator"]
    ema_before = [p.detach().clone() for p in ema.parameters()]
    game.step(build(cfg, tmp_path / "b").batches.next(1))
    for old, new, g in zip(ema_before, ema.parameters(), game.G.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * g.detach(), rtol=1e-5, atol=1e-7)
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, ema.parameters()))
    for a, b in zip(ema.buffers(), game.G.buffers()):  # batch-norm statistics are copied, not averaged
        assert torch.equal(a, b)


def test_ema_of_a_generator_without_buffers(tmp_path):
    # the MLP generator of the 2D presets has no batch norm, so no buffers to copy
    cfg = gantrain.compose(["experiment=grid", "trainer.device=cpu", "trainer.ema_decay=0.5", "trainer.batch_size=16"])
    loop = build(cfg, tmp_path)
    game = loop.game
    assert not list(game.G.buffers())
    ema = game.ema["generator"]
    before = [p.detach().clone() for p in ema.parameters()]
    game.step(loop.batches.next(1))
    for old, new, g in zip(before, ema.parameters(), game.G.parameters()):
        torch.testing.assert_close(new, 0.5 * old + 0.5 * g.detach())


def test_report_names_and_the_wasserstein_estimate(tmp_path):
    means = {"loss/d": 0.5, "loss/g": -0.25, "d/real": 2.0, "d/fake": -1.5, "loss/penalty": 0.125, "other": 9.0}
    gp = build(gantrain.compose(["loss=wgan_gp", "dataset=digits", "trainer.device=cpu", "optimizer.lr=3e-4"]),
               tmp_path / "gp").game
    assert gp.report(means) == {"loss/d": 0.5, "loss/g": -0.25, "d/real": 2.0, "d/fake": -1.5, "loss/penalty": 0.125,
                                "loss/wasserstein": 3.5, "lr/d": 3e-4, "lr/g": 3e-4}  # E D(x) - E D(G(z))
    plain = build(gantrain.compose(["loss=hinge", "dataset=digits", "trainer.device=cpu"]), tmp_path / "h").game
    assert plain.report(means) == {"loss/d": 0.5, "loss/g": -0.25, "d/real": 2.0, "d/fake": -1.5,
                                   "lr/d": 2e-4, "lr/g": 2e-4}  # no penalty, no distance estimate
    assert plain.report({"loss/d": 1.0, "loss/class_d": 0.5, "loss/class_g": 0.25}) == {
        "loss/d": 1.0, "loss/class_d": 0.5, "loss/class_g": 0.25, "lr/d": 2e-4, "lr/g": 2e-4}
    assert {"loss/d", "loss/g", "loss/penalty"} <= set(plain.watched)


def test_sample_grid_is_the_sampler_on_fixed_noise_in_eval_mode(tmp_path):
    cfg = gantrain.compose(["dataset=digits", "trainer.device=cpu", "generator.base_channels=8", "seed=11",
                            "trainer.num_samples=9", "trainer.ema_decay=0.5"])
    game = build(cfg, tmp_path).game
    expected_z = torch.randn(9, game.G.latent_dim, generator=torch.Generator().manual_seed(12))
    assert torch.equal(game.fixed_z, expected_z) and game.grid_columns is None
    ema = game.ema["generator"]
    with torch.no_grad():  # the EMA copy, not G, draws the grid
        for p in ema.parameters():
            p.add_(0.1)
    game.train()
    grid = game.sample_grid()
    assert ema.training and game.G.training  # training mode is restored
    ema.eval()
    with torch.no_grad():
        torch.testing.assert_close(grid, ema(expected_z))
        assert not torch.allclose(grid, game.G.eval()(expected_z))
    assert torch.equal(game.sample_grid(), game.sample_grid())  # the same noise every time
    assert not game.sample_grid().requires_grad  # drawn without autograd
    no_ema = build(gantrain.compose(["dataset=digits", "trainer.device=cpu", "generator.base_channels=8",
                                     "trainer.ema_decay=0"]), tmp_path / "no_ema").game
    assert no_ema.sampler() is no_ema.G and all(p.requires_grad for p in no_ema.G.parameters())
    assert not no_ema.sample_grid().requires_grad  # G itself draws it, still without autograd


def test_game_state_round_trip_modes_and_schedules(tmp_path):
    from gantrain.errors import GantrainError
    from gantrain.training.games import Game

    common = ["dataset=digits", "trainer.device=cpu", "generator.base_channels=8", "discriminator.base_channels=8",
              "trainer.batch_size=32", "trainer.ema_decay=0.9", "optimizer.lr_schedule=linear", "trainer.steps=4"]
    loop = build(gantrain.compose(common), tmp_path / "a")
    game = loop.game
    game.step(loop.batches.next(1))
    game.step_schedules()
    assert game.learning_rates() == {"lr/d": pytest.approx(2e-4 * 3 / 4), "lr/g": pytest.approx(2e-4 * 3 / 4)}
    state = game.state_dict()
    other = build(gantrain.compose(common), tmp_path / "b").game
    import copy as copy_module

    with_tensor_rate = copy_module.deepcopy(state)  # a rate saved as a tensor (as a captured run holds it)
    for saved in with_tensor_rate["optimizers"].values():
        saved["param_groups"][0]["lr"] = torch.tensor(saved["param_groups"][0]["lr"])
    other.load_state_dict(with_tensor_rate)
    for part in ("networks", "ema"):
        for name, net in getattr(other, part).items():
            for key, value in net.state_dict().items():
                assert torch.equal(value, state[part][name][key]), (part, name, key)
    for name, opt in other.optimizers.items():
        assert isinstance(opt.param_groups[0]["lr"], float) and opt.param_groups[0]["lr"] == pytest.approx(1.5e-4)
        assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], game.optimizers[name].state_dict()["state"][0]["exp_avg"])
    assert other.schedules["generator"].state_dict() == game.schedules["generator"].state_dict()
    other.train(False)
    assert not any(net.training for net in other.networks.values())
    other.train()
    assert all(net.training for net in other.networks.values())
    with pytest.raises(GantrainError, match="no EMA generator"):
        other.load_state_dict({**state, "ema": {}})
    with pytest.raises(GantrainError, match="no learning-rate schedule for"):
        other.load_state_dict({**state, "schedules": {}})
    from gantrain.training.stats import Stats

    assert Game(Stats(torch.device("cpu"))).batches_per_step() == 1
    with pytest.raises(NotImplementedError):  # a game of one's own must say how it is built (a class method)
        Game.build(object())
    bare = Game(Stats(torch.device("cpu")))
    net, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).requires_grad_(False)  # as games keep EMA copies
    bare.set_networks({"generator": net}, ema)  # an EMA copy without a decay: it follows the network exactly
    bare.update_ema()
    assert bare.ema_decay == 0.0 and torch.equal(ema.weight, net.weight) and torch.equal(ema.bias, net.bias)


def test_augment_state_is_shared_saved_and_restored_with_the_game(tmp_path):
    """ADA's p is the game's one tensor kept in step across processes, and its own state in a checkpoint."""
    from gantrain.errors import GantrainError

    common = ["dataset=digits", "trainer.device=cpu", "generator.base_channels=8", "discriminator.base_channels=8",
              "trainer.batch_size=32"]
    ada = common + ["augment.policy=[translation]", "augment.ada=true", "augment.ada_interval=1"]
    loop = build(gantrain.compose(ada), tmp_path / "a")
    game = loop.game
    for _ in range(2):
        game.step(loop.batches.next(1))
    shared = game.shared_tensors()
    assert len(shared) == 1 and shared[0] is game.augment.p  # the tensor itself, which a sync check reads
    state = game.own_state()
    assert set(state) == {"augment"} and torch.equal(state["augment"]["p"], game.augment.p)
    assert game.augment.p.item() != 0.0  # two adjustments moved it off its start
    other = build(gantrain.compose(ada), tmp_path / "b").game
    assert other.augment.p.item() == 0.0
    other.load_own_state(state)
    for name in ("p", "accumulator", "count"):
        assert torch.equal(getattr(other.augment, name), getattr(game.augment, name)), name
    with pytest.raises(GantrainError, match="trained without augmentation; resume with augment.policy=null"):
        other.load_own_state({})
    plain = build(gantrain.compose(common), tmp_path / "c").game
    assert plain.augment is None and plain.shared_tensors() == [] and plain.own_state() == {}
    plain.load_own_state({})  # nothing to restore, nothing refused
    saved = game.state_dict()  # the checkpoint keeps the game's own state under game_state, only when it has one
    assert torch.equal(saved["game_state"]["augment"]["p"], game.augment.p)
    assert "game_state" not in plain.state_dict()


def test_update_logs_the_two_norm_of_the_gradient_under_its_name(tmp_path):
    from gantrain.training.stats import Stats

    cfg = gantrain.compose(["dataset=digits", "trainer.device=cpu", "generator.base_channels=8",
                            "discriminator.base_channels=8", "trainer.batch_size=8"])
    game = build(cfg, tmp_path).game
    game.stats = Stats(torch.device("cpu"))
    assert float(game.gradient_norm("discriminator")) == 0.0  # no gradient yet: zero, not an error
    z = torch.randn(4, game.G.latent_dim)
    loss = game.D(game.G(z).detach()).square().mean()
    game.update("discriminator", loss)
    grads = [p.grad for p in game.D.parameters()]
    assert all(g is not None for g in grads)
    expected = torch.sqrt(sum(g.double().square().sum() for g in grads)).item()
    assert expected > 0
    assert game.stats.read()["grad/d"] == pytest.approx(expected, rel=1e-5)
    game.update("discriminator", game.D(game.G(z).detach()).mean(), stat="grad/d_extra")  # a named phase
    means = game.stats.read()
    assert set(means) == {"grad/d", "grad/d_extra"}
    norm = torch.sqrt(sum(p.grad.double().square().sum() for p in game.D.parameters())).item()
    assert means["grad/d_extra"] == pytest.approx(norm, rel=1e-5)


@pytest.mark.parametrize("loss", ["hinge", "lsgan"])
def test_ds_accuracies_count_a_logit_at_the_threshold_as_fake(loss, tmp_path):
    game = build(gantrain.compose([f"loss={loss}", "dataset=digits", "trainer.device=cpu"]), tmp_path / loss).game
    t = game.loss.threshold  # 0 for hinge, 0.5 for LSGAN
    real = torch.tensor([-1.0, 0.0, 0.5, 2.0, 3.0]) + t  # 3 of 5 above the threshold: called real
    fake = torch.tensor([-2.0, 0.0, 0.5, 1.0, 3.0]) + t  # 2 of 5 at or below it: called fake
    game.stats.read()  # empty the accumulators
    game.discriminator_statistics(torch.tensor(0.25), real, fake, None)
    got = game.stats.read()
    assert got["d/acc_real"] == pytest.approx(3 / 5) and got["d/acc_fake"] == pytest.approx(2 / 5)
    assert got["d/real"] == pytest.approx(float(real.mean())) and "loss/penalty" not in got
