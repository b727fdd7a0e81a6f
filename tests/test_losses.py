"""Each loss against hand-computed values and gradients, extreme logits, and the penalties."""
import math

import pytest
import torch

from gantrain import losses

REAL = torch.tensor([2.0, -1.0, 0.5])
FAKE = torch.tensor([-0.5, 1.5, 0.0])


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def mean(xs):
    return sum(xs) / len(xs)


# (loss, hand-computed D loss, hand-computed G loss, dG/dfake_i as a function of f)
CASES = {
    "minimax": (
        losses.Minimax(),
        mean([-math.log(sig(r)) for r in REAL.tolist()]) + mean([-math.log(1 - sig(f)) for f in FAKE.tolist()]),
        mean([math.log(1 - sig(f)) for f in FAKE.tolist()]),
        lambda f: -sig(f) / 3,
    ),
    "nonsaturating": (
        losses.NonSaturating(),
        mean([-math.log(sig(r)) for r in REAL.tolist()]) + mean([-math.log(1 - sig(f)) for f in FAKE.tolist()]),
        mean([-math.log(sig(f)) for f in FAKE.tolist()]),
        lambda f: -(1 - sig(f)) / 3,
    ),
    "wasserstein": (losses.Wasserstein(), mean(FAKE.tolist()) - mean(REAL.tolist()), -mean(FAKE.tolist()), lambda f: -1 / 3),
    "hinge": (
        losses.Hinge(),
        mean([max(0, 1 - r) for r in REAL.tolist()]) + mean([max(0, 1 + f) for f in FAKE.tolist()]),
        -mean(FAKE.tolist()),
        lambda f: -1 / 3,
    ),
    "lsgan": (
        losses.LeastSquares(),
        0.5 * (mean([(r - 1) ** 2 for r in REAL.tolist()]) + mean([f**2 for f in FAKE.tolist()])),
        0.5 * mean([(f - 1) ** 2 for f in FAKE.tolist()]),
        lambda f: (f - 1) / 3,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_values_and_generator_gradient(name):
    loss, d_expected, g_expected, dg = CASES[name]
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d_expected, rel=1e-6)
    fake = FAKE.clone().requires_grad_(True)
    g = loss.g_loss(fake)
    assert g.item() == pytest.approx(g_expected, rel=1e-6)
    g.backward()
    expected = torch.tensor([dg(f) for f in FAKE.tolist()])
    torch.testing.assert_close(fake.grad, expected, rtol=1e-5, atol=1e-7)


def test_discriminator_gradients_by_hand():
    real = REAL.clone().requires_grad_(True)
    fake = FAKE.clone().requires_grad_(True)
    losses.NonSaturating().d_loss(real, fake).backward()
    # d/dr softplus(-r)/3 = -(1 - sigmoid(r))/3; d/df softplus(f)/3 = sigmoid(f)/3
    torch.testing.assert_close(real.grad, torch.tensor([-(1 - sig(r)) / 3 for r in REAL.tolist()]))
    torch.testing.assert_close(fake.grad, torch.tensor([sig(f) / 3 for f in FAKE.tolist()]))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("magnitude", [1e2, 1e4, 3e38])
def test_extreme_logits_stay_finite(name, magnitude):
    loss = CASES[name][0]
    logits = torch.tensor([magnitude, -magnitude, 0.0]).requires_grad_(True)
    d = loss.d_loss(logits, logits.flip(0))
    g = loss.g_loss(logits)
    if name == "lsgan" and magnitude > 1e19:  # a squared 3e38 overflows float32 in any form
        return
    assert torch.isfinite(d) and torch.isfinite(g)
    (d + g).backward()
    assert torch.isfinite(logits.grad).all()


def test_sigmoid_losses_match_naive_form_where_it_is_exact():
    r, f = torch.tensor([0.3, -2.0]), torch.tensor([1.2, -0.7])
    naive = -(torch.log(torch.sigmoid(r)).mean() + torch.log(1 - torch.sigmoid(f)).mean())
    torch.testing.assert_close(losses.Minimax().d_loss(r, f), naive)
    # where the naive form overflows to inf, the stable one stays exact: softplus(100) = 100
    assert losses.NonSaturating().g_loss(torch.tensor([-100.0])).item() == pytest.approx(100.0)


class Quadratic(torch.nn.Module):
    """D(x) = sum_j w_j * x_j^2, whose input gradient 2 w x is known in closed form."""

    def __init__(self, dim: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(0.5, 1.5, dim))

    def forward(self, x):
        return (self.w * x.square()).sum(1)


def test_gradient_penalty_matches_direct_computation():
    torch.manual_seed(0)
    real, fake = torch.randn(6, 4), torch.randn(6, 4)
    d = Quadratic(4)
    torch.manual_seed(1)
    gp = losses.gradient_penalty(d, real, fake)
    torch.manual_seed(1)
    alpha = torch.rand(6, 1)
    x_hat = alpha * real + (1 - alpha) * fake  # Gulrajani et al., Algorithm 1
    grad = 2 * d.w.detach() * x_hat
    expected = ((grad.norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(gp, expected, rtol=1e-5, atol=1e-6)
    gp.backward()  # differentiable w.r.t. D's weights (double backward)
    assert d.w.grad is not None and torch.isfinite(d.w.grad).all() and d.w.grad.abs().sum() > 0


def test_r1_penalty_matches_direct_computation():
    real = torch.randn(5, 3)
    d = Quadratic(3)
    expected = (2 * d.w.detach() * real).square().sum(1).mean()
    torch.testing.assert_close(losses.r1_penalty(d, real), expected)
    weighted = losses.NonSaturating(r1_gamma=10.0).penalty(d, real, real)
    torch.testing.assert_close(weighted, 5.0 * expected)


def test_bad_loss_settings_are_refused():
    from gantrain.errors import GantrainError

    with pytest.raises(GantrainError, match="clip"):
        losses.Wasserstein(clip=-1.0)
    with pytest.raises(GantrainError, match="gradient_penalty"):
        losses.Wasserstein(gradient_penalty=-1.0)
