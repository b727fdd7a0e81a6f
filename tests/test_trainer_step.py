"""The trainer's step against hand-written reference steps (same seed, same data, same losses)."""
import copy

import pytest
import torch
import torch.nn.functional as F

import gantrain
from gantrain.build import build


def reference_dcgan_step(G, D, opt_g, opt_d, real, latent_dim):
    """The pytorch/examples DCGAN step with BCE-with-logits: D on real and G(z).detach(), then G on D(G(z))."""
    b = real.shape[0]
    z = torch.randn(b, latent_dim)
    fake = G(z)
    opt_d.zero_grad()
    real_out, fake_out = D(real), D(fake.detach())
    d_loss = F.binary_cross_entropy_with_logits(real_out, torch.ones(b)) + F.binary_cross_entropy_with_logits(fake_out, torch.zeros(b))
    d_loss.backward()
    opt_d.step()
    opt_g.zero_grad()
    g_loss = F.binary_cross_entropy_with_logits(D(fake), torch.ones(b))
    g_loss.backward()
    opt_g.step()
    return d_loss.item(), g_loss.item()


def reference_wgan_gp_step(G, D, opt_g, opt_d, reals, latent_dim, lam=10.0):
    """Gulrajani et al.'s Algorithm 1: n_critic critic updates with the gradient penalty, then one G update."""
    for real in reals:
        b = real.shape[0]
        z = torch.randn(b, latent_dim)
        with torch.no_grad() if real is not reals[-1] else torch.enable_grad():
            fake = G(z)
        eps = torch.rand(b, 1, 1, 1)
        x_hat = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
        gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        d_loss = D(fake.detach()).mean() - D(real).mean()
        opt_d.zero_grad()
        (d_loss + lam * gp).backward()
        opt_d.step()
    for p in D.parameters():
        p.requires_grad_(False)
    g_loss = -D(fake).mean()
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    for p in D.parameters():
        p.requires_grad_(True)
    return d_loss.item(), g_loss.item()


def assert_same_weights(a, b, atol):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=atol, msg=name)


@pytest.mark.parametrize("recipe", ["nonsaturating", "wgan_gp"])
def test_trainer_step_matches_reference(recipe, tmp_path):
    cfg = gantrain.compose([f"loss={recipe}", "dataset=digits", "dataset.image_size=16", "trainer.device=cpu",
                            "generator.base_channels=8", "discriminator.base_channels=8", "trainer.batch_size=32"])
    trainer = build(cfg, tmp_path)
    G, D = copy.deepcopy(trainer.G), copy.deepcopy(trainer.D)
    betas = tuple(cfg.optimizer.betas)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.optimizer.lr, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.optimizer.lr, betas=betas)
    n_critic = cfg.trainer.n_critic
    for step in range(3):
        raw = trainer.batches.next(n_critic)
        reals = [r.float() / 127.5 - 1 for r in raw]
        trainer.stats.zero_()
        torch.manual_seed(100 + step)
        trainer.train_step(raw)
        torch.manual_seed(100 + step)
        if recipe == "wgan_gp":
            d_ref, g_ref = reference_wgan_gp_step(G, D, opt_g, opt_d, reals, G.latent_dim)
        else:
            d_ref, g_ref = reference_dcgan_step(G, D, opt_g, opt_d, reals[0], G.latent_dim)
        stats = trainer.stats.tolist()
        d_loss = stats[0] / n_critic if recipe != "wgan_gp" else None
        if d_loss is not None:
            assert d_loss == pytest.approx(d_ref, rel=1e-5)
        assert stats[4] == pytest.approx(g_ref, rel=1e-4, abs=1e-6)
        assert_same_weights(trainer.G, G, atol=1e-5)
        assert_same_weights(trainer.D, D, atol=1e-5)
