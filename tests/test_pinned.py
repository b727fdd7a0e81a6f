"""The same command and seed give the weights gantrain 0.1.0 gave (tests/fixtures/make_v0_1_0.py made them).

Bit for bit on a machine where the pins are known to reproduce exactly (fixtures/v0_1_0/exact_on.json),
within a tolerance elsewhere (tests/pins.py); the planted changes below show that the tolerance still
catches a real change of the training math.
"""
from pathlib import Path

import pytest
import torch

import gantrain
from gantrain import losses
from gantrain.checkpoint import load_checkpoint
from gantrain.games.gan import GAN

from pins import assert_matches_pin, weight_mismatches

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "v0_1_0"
PINNED = torch.load(FIXTURES / "pinned.pt", weights_only=True)


def named_weights(state: dict) -> dict:
    """A checkpoint's weights under 0.1.0's names (generator, discriminator, generator_ema)."""
    out = {"generator": state["networks"]["generator"], "discriminator": state["networks"]["discriminator"]}
    if "generator" in state["ema"]:
        out["generator_ema"] = state["ema"]["generator"]
    return out


#: what a preset set in 0.1.0 that it sets differently today (the pinned command trains what it trained then)
PRESETS_THEN = {"experiment=grid": ["trainer.ema_decay=0.0",  # 0.5.0's grid keeps an EMA of G
                                    "loss.r1_gamma=0.0"]}  # and 0.6.0's adds R1 to whichever loss is chosen


#: what 0.1.0 did for every run that today's defaults do otherwise
ALWAYS_THEN = ["optimizer.kernel=foreach"]  # 0.7.0 fuses Adam's update on the CPU too


def train_pinned(name: str, run: Path) -> dict:
    """Train the pinned command `name` with today's code; its final weights under 0.1.0's names."""
    pinned = PINNED["configs"][name]
    then = [o for preset in pinned["overrides"] for o in PRESETS_THEN.get(preset, [])] + ALWAYS_THEN
    gantrain.train(gantrain.compose(pinned["overrides"] + then), run)
    return named_weights(load_checkpoint(run / "checkpoints" / "last.pt"))


@pytest.mark.parametrize("name", sorted(PINNED["configs"]))
def test_training_matches_0_1_0(name, tmp_path, default_threads):
    assert_matches_pin(train_pinned(name, tmp_path / "run"), PINNED["configs"][name]["weights"], FIXTURES)


def _g_phase_first(self, batch):
    """Planted: G updates on a fresh sample before D's phase (the order of the updates swapped)."""
    self.generator_phase(self.G(torch.randn(self.batch_size, self.G.latent_dim)))
    self.discriminator_phases(batch)


def _minimax_g_loss(self, fake_logits):
    """Planted: the saturating G loss in place of the non-saturating one (a formula)."""
    return -torch.nn.functional.softplus(fake_logits).mean()


def _penalty_with_a_sign_flipped(discriminator, real, fake):
    """Planted: (||grad|| + 1)^2 in place of (||grad|| - 1)^2 (a sign)."""
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), dtype=real.dtype)
    x_hat = torch.lerp(fake.detach(), real.detach(), alpha).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) + 1.0).square().mean()


PLANTED = {
    "order of updates": ("dcgan_digits_ema", GAN, "step", _g_phase_first),
    "formula": ("dcgan_digits_ema", losses.NonSaturating, "g_loss", _minimax_g_loss),
    "sign": ("mlp_grid_wgan_gp_linear", losses, "gradient_penalty", _penalty_with_a_sign_flipped),
}


@pytest.mark.parametrize("change", sorted(PLANTED))
def test_a_real_change_of_the_training_math_fails_the_pin_even_within_the_tolerance(change, tmp_path, monkeypatch,
                                                                                      default_threads):
    name, owner, attribute, planted = PLANTED[change]
    monkeypatch.setattr(owner, attribute, planted)
    got = train_pinned(name, tmp_path / "run")
    assert weight_mismatches(got, PINNED["configs"][name]["weights"], exact=False), f"{change}: not caught"


def test_the_tolerance_takes_rounding_and_only_rounding():
    """Weights moved by 3e-5 (the most another CPU's rounding moved them) match within the tolerance, not exactly."""
    want = PINNED["configs"]["dcgan_digits_ema"]["weights"]
    signs = {n: {k: torch.randint(0, 2, v.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1 for k, v in ws.items()}
             for n, ws in want.items()}
    rounded = {n: {k: v + 3e-5 * signs[n][k] if v.is_floating_point() else v for k, v in ws.items()} for n, ws in want.items()}
    assert weight_mismatches(rounded, want, exact=False) == []
    assert weight_mismatches(rounded, want, exact=True)
