"""Each loss against hand-computed values and gradients, extreme logits, and the penalties."""
import math

import pytest
import torch

from gantrain.training import losses

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


def _loss_and_grad(loss, magnitude: float, dtype: torch.dtype):
    """D loss, G loss and d(D loss + G loss)/d logits at logits (m, -m, 0) (D's fake logits are them reversed)."""
    logits = torch.tensor([magnitude, -magnitude, 0.0], dtype=dtype).requires_grad_(True)
    d = loss.d_loss(logits, logits.flip(0))
    g = loss.g_loss(logits)
    (d + g).backward()
    return d.detach(), g.detach(), logits.grad


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("magnitude", [1e2, 1e4, 1e19, 3e38])
def test_extreme_logits_stay_finite(name, magnitude):
    loss = CASES[name][0]
    d, g, grad = _loss_and_grad(loss, magnitude, torch.float32)
    assert not torch.isnan(d) and not torch.isnan(g) and not torch.isnan(grad).any()
    if name == "lsgan" and magnitude > 1.8e19:
        # A squared logit above sqrt(float32 max) = 1.84e19 overflows in any form. What must hold: the losses
        # overflow to +inf (never NaN, never -inf) and the gradient keeps the sign of (logit - target).
        assert d.item() == math.inf and g.item() == math.inf
        assert grad[0].item() == math.inf and grad[1].item() == -math.inf
        # the logit 0 keeps its exact gradient: (0 - 1)/3 as D's real logit, 0 as D's fake one, (0 - 1)/3 from G
        assert grad[2].item() == pytest.approx(-2 / 3)
        return
    assert torch.isfinite(d) and torch.isfinite(g) and torch.isfinite(grad).all()
    # float32 at the extremes gives the float64 answer: no overflow, no cancellation
    d64, g64, grad64 = _loss_and_grad(loss, magnitude, torch.float64)
    assert d.item() == pytest.approx(d64.item(), rel=1e-6)
    assert g.item() == pytest.approx(g64.item(), rel=1e-6)
    torch.testing.assert_close(grad.double(), grad64, rtol=1e-6, atol=1e-7)


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


class QuadraticImage(torch.nn.Module):
    """D(x) = sum over pixels of w_c * x^2 (w per channel) on (N, C, H, W) images: input gradient 2 w_c x."""

    def __init__(self, channels: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(0.5, 1.5, channels))

    def forward(self, x):
        return (self.w.view(1, -1, 1, 1) * x.square()).sum((1, 2, 3))


def test_gradient_penalty_on_image_batches_draws_one_weight_per_sample():
    torch.manual_seed(0)
    real, fake = torch.randn(5, 3, 4, 2), torch.randn(5, 3, 4, 2)  # N differs from C, H and W
    d = QuadraticImage(3)
    torch.manual_seed(2)
    gp = losses.gradient_penalty(d, real, fake)
    torch.manual_seed(2)
    alpha = torch.rand(5).view(5, 1, 1, 1)  # one interpolation weight per sample, shared by its pixels
    x_hat = alpha * real + (1 - alpha) * fake
    grad = 2 * d.w.detach().view(1, 3, 1, 1) * x_hat
    expected = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(gp, expected, rtol=1e-5, atol=1e-6)


def test_r1_penalty_matches_direct_computation():
    real = torch.randn(5, 3)
    d = Quadratic(3)
    expected = (2 * d.w.detach() * real).square().sum(1).mean()
    torch.testing.assert_close(losses.r1_penalty(d, real), expected)
    weighted = losses.NonSaturating(r1_gamma=10.0).penalty(d, real, real)
    torch.testing.assert_close(weighted, 5.0 * expected)
    # differentiable w.r.t. D's weights: R1 = mean_n sum_j 4 w_j^2 x_nj^2, so dR1/dw_j = mean_n 8 w_j x_nj^2
    losses.r1_penalty(d, real).backward()
    torch.testing.assert_close(d.w.grad, (8 * d.w.detach() * real.square()).mean(0))


class Counting(Quadratic):
    """Quadratic D that counts its forward calls (each penalty costs a forward and a double backward)."""

    def __init__(self, dim: int):
        super().__init__(dim)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


def test_penalty_weights_each_enabled_term_and_runs_only_those():
    torch.manual_seed(0)
    real, fake = torch.randn(6, 4), torch.randn(6, 4)
    d = Counting(4)
    torch.manual_seed(3)
    gp = losses.gradient_penalty(d, real, fake).detach()
    r1 = losses.r1_penalty(d, real).detach()
    assert gp > 0 and r1 > 0
    for gp_weight, r1_gamma, expected, calls in [
        (10.0, 0.0, 10.0 * gp, 1),
        (0.5, 0.0, 0.5 * gp, 1),
        (0.0, 0.5, 0.25 * r1, 1),
        (0.0, 4.0, 2.0 * r1, 1),
        (2.0, 3.0, 2.0 * gp + 1.5 * r1, 2),
    ]:
        loss = losses.Wasserstein(gradient_penalty=gp_weight, r1_gamma=r1_gamma)
        assert loss.has_penalty is True
        d.calls = 0
        torch.manual_seed(3)  # the same interpolation weights as gp above
        total = loss.penalty(d, real, fake)
        assert d.calls == calls, (gp_weight, r1_gamma)
        assert total.dtype == torch.float32 and total.shape == ()
        torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)
    assert losses.Wasserstein().has_penalty is False
    assert losses.Hinge(clip=0.01).has_penalty is False


def test_only_the_wasserstein_critic_estimates_a_distance():
    assert losses.Wasserstein.estimates_distance is True
    assert not any(cls.estimates_distance for cls in (losses.Minimax, losses.NonSaturating, losses.Hinge, losses.LeastSquares))


def test_bad_loss_settings_are_refused():
    from gantrain.errors import GantrainError

    with pytest.raises(GantrainError, match="clip"):
        losses.Wasserstein(clip=-1.0)
    with pytest.raises(GantrainError, match="clip=0.0 must be positive"):
        losses.Wasserstein(clip=0.0)
    with pytest.raises(GantrainError, match="clip"):
        losses.Wasserstein(clip=-0.5)
    with pytest.raises(GantrainError, match="gradient_penalty"):
        losses.Wasserstein(gradient_penalty=-1.0)
    with pytest.raises(GantrainError, match="r1_gamma"):
        losses.NonSaturating(r1_gamma=-0.1)
    nan, inf = float("nan"), float("inf")  # not numbers a weight can be: refused, never read as "off"
    for value in (nan, inf):
        with pytest.raises(GantrainError, match=f"loss.clip={value} must be positive"):
            losses.Wasserstein(clip=value)
        for key in ("gradient_penalty", "r1_gamma", "matching_penalty"):
            with pytest.raises(GantrainError, match="must be 0 \\(off\\) or positive"):
                losses.Hinge(**{key: value})
        with pytest.raises(GantrainError, match=f"loss.matching_power={value} must be 1 or more"):
            losses.Hinge(matching_power=value)
    ok = losses.Wasserstein(clip=0.01, gradient_penalty=0.0, r1_gamma=0.0)
    assert (ok.clip, ok.gp_weight, ok.r1_gamma) == (0.01, 0.0, 0.0)
    assert losses.Wasserstein().clip is None


#: a logit's cost in D's loss as a real sample and as a generated one (d_loss = mean of the first over real
#: logits + mean of the second over generated ones)
COSTS = {
    losses.Minimax: (lambda t: sp(-t), lambda t: sp(t)),
    losses.NonSaturating: (lambda t: sp(-t), lambda t: sp(t)),
    losses.Hinge: (lambda t: max(0.0, 1 - t), lambda t: max(0.0, 1 + t)),
    losses.LeastSquares: (lambda t: 0.5 * (t - 1) ** 2, lambda t: 0.5 * t**2),
}


@pytest.mark.parametrize("cls", list(COSTS), ids=lambda c: c.__name__)
def test_the_accuracy_threshold_is_where_a_logit_costs_as_much_as_real_as_as_fake(cls):
    # D calls a sample real above the loss's threshold (d/acc_real, d/acc_fake): the logit whose cost as a real
    # sample equals its cost as a generated one (0 for the sigmoid and hinge losses, 0.5 for LSGAN's 0/1 targets)
    as_real, as_fake = COSTS[cls]
    loss = cls()
    for r, f in ((0.3, -0.7), (1.6, 0.2)):  # the costs are the loss's
        assert float(loss.d_loss(torch.tensor([r]), torch.tensor([f]))) == pytest.approx(as_real(r) + as_fake(f))
    t = loss.threshold
    assert as_real(t) == pytest.approx(as_fake(t))
    assert as_real(t + 0.25) < as_fake(t + 0.25) and as_real(t - 0.25) > as_fake(t - 0.25)
    assert losses.Wasserstein.threshold is None  # a critic's values have no such point


def test_the_matching_aware_penalty_defaults_to_dfgans_power_and_trains_d():
    import inspect

    import yaml

    w, v = torch.randn(12, requires_grad=True), torch.randn(3, requires_grad=True)

    def judge(x, e):  # linear: grad_x = w, grad_e = v for every sample
        return x.flatten(1) @ w + e @ v

    x, e = torch.randn(4, 3, 2, 2), torch.randn(4, 3)  # images and embeddings of different widths
    penalty = losses.matching_gradient_penalty(judge, x, e)
    norm = (w.detach().square().sum() + v.detach().square().sum()).sqrt()
    torch.testing.assert_close(penalty.detach(), norm**6)  # DF-GAN's p = 6 by default
    penalty.backward()  # the penalty trains D: d/dw ||(w, v)||^6 = 6 ||(w, v)||^4 w
    torch.testing.assert_close(w.grad, 6 * norm**4 * w.detach())
    torch.testing.assert_close(v.grad, 6 * norm**4 * v.detach())
    # the same default in the function, in the losses and in every loss config
    assert inspect.signature(losses.matching_gradient_penalty).parameters["power"].default == 6.0
    assert (losses.Hinge().matching_power, losses.Hinge().matching_weight) == (6.0, 0.0)
    from conftest import REPO

    for path in sorted((REPO / "configs" / "loss").glob("*.yaml")):
        node = yaml.safe_load(path.read_text())["loss"]
        if "matching_power" in node:
            assert (node["matching_power"], node["matching_penalty"]) == (6.0, 0.0), path.name


def test_matching_penalty_settings_are_checked():
    from gantrain.errors import GantrainError

    with pytest.raises(GantrainError, match="matching_penalty"):
        losses.Hinge(matching_penalty=-0.5)
    with pytest.raises(GantrainError, match=r"matching_power=0.5 must be 1 or more"):
        losses.Hinge(matching_power=0.5)
    assert losses.Hinge(matching_power=1.0).matching_power == 1.0  # 1 is allowed
    on = losses.Hinge(matching_penalty=0.5)
    assert on.has_penalty is True and on.matching_weight == 0.5  # the matching penalty alone counts
    # GANLoss.penalty holds the loss's own terms only: the text game adds the matching one
    assert float(on.penalty(lambda x: x.sum(1), torch.randn(2, 3), torch.randn(2, 3))) == 0.0
