"""DiffAugment and ADA (gantrain.augment): policies, the transforms against hand-built references (whole-pixel
shifts with zero fill, clipped cutout squares, the colour ranges), exact gradients, the per-sample probability,
ADA's steps of p, the state round trip, and the one-line errors."""
from __future__ import annotations

import io
import math

import pytest
import torch

from gantrain.training.augment import POLICIES, Augment, color, cutout, parse_policy, translation
from gantrain.errors import GantrainError


def _one_line_error(call, *words: str) -> None:
    with pytest.raises(GantrainError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """image (C, H, W) moved dy rows down and dx columns right, zeros where nothing moved in (by slicing)."""
    _, h, w = image.shape
    out = torch.zeros_like(image)
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = image[:, max(-dy, 0):h - max(dy, 0),
                                                                        max(-dx, 0):w - max(dx, 0)]
    return out


# ---- policies and settings ------------------------------------------------------------------------------


def test_parse_policy() -> None:
    assert parse_policy(None) == parse_policy("") == parse_policy([]) == ()
    assert parse_policy("color,translation,cutout") == POLICIES
    assert parse_policy(" cutout , color") == ("cutout", "color")  # the order given, spaces dropped
    assert parse_policy(["translation", "color"]) == ("translation", "color")
    assert parse_policy(("cutout",)) == ("cutout",)
    _one_line_error(lambda: parse_policy("color,flip"), "augment.policy", "'flip'", "color, translation, cutout")
    _one_line_error(lambda: parse_policy(["Color"]), "augment.policy", "color, translation, cutout")
    _one_line_error(lambda: parse_policy(3), "augment.policy")


@pytest.mark.parametrize("kwargs,key", [
    ({"p": 1.5}, "augment.p"), ({"p": -0.1}, "augment.p"), ({"p": math.nan}, "augment.p"), ({"p": "1"}, "augment.p"),
    ({"ada_target": 0.0}, "augment.ada_target"), ({"ada_target": 1.0}, "augment.ada_target"),
    ({"ada_target": -2}, "augment.ada_target"),
    ({"ada_interval": 0}, "augment.ada_interval"), ({"ada_interval": 2.5}, "augment.ada_interval"),
    ({"ada_kimg": 0}, "augment.ada_kimg"), ({"ada_kimg": -1.0}, "augment.ada_kimg"),
    ({"ada_kimg": math.inf}, "augment.ada_kimg"), ({"ada_target": 1.5}, "augment.ada_target"),
    ({"batch_size": 0}, "batch_size"), ({"batch_size": True}, "batch_size"), ({"batch_size": 2.0}, "batch_size"),
])
def test_bad_settings_are_one_line_errors(kwargs: dict, key: str) -> None:
    _one_line_error(lambda: Augment("color", **{"ada_target": 0.6, **kwargs}), key)


def test_the_python_defaults_are_the_configs() -> None:
    """Augment() called from Python without settings behaves as a run with the config's defaults."""
    from gantrain.config import AugmentConfig, TrainerConfig

    plain, config = Augment("color"), AugmentConfig()
    assert plain.p.item() == config.p == 1.0 and not plain.adaptive
    ada = Augment("color", p=0.0, ada_target=0.6)
    assert ada.ada_interval == config.ada_interval == 4 and ada.ada_kimg == config.ada_kimg == 100.0
    assert ada.batch_size == TrainerConfig().batch_size == 64
    assert ada.ada_step == pytest.approx(64 * 4 / 100_000)
    assert Augment("color", batch_size=1).batch_size == 1  # one image per step is allowed


def test_settings_kept() -> None:
    fixed = Augment("color,cutout", p=0.3)
    assert fixed.policy == ("color", "cutout") and not fixed.adaptive
    assert fixed.p.shape == (1,) and fixed.p.dtype == torch.float32 and fixed.p.item() == pytest.approx(0.3)
    ada = Augment(["translation"], p=0.0, ada_target=0.6, ada_interval=2, ada_kimg=10.0, batch_size=32)
    assert ada.adaptive and ada.p.item() == 0.0
    assert ada.ada_step == pytest.approx(32 * 2 / 10_000)


# ---- shapes, dtypes, randomness -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_shape_and_dtype_kept(policy: str, dtype: torch.dtype) -> None:
    x = torch.rand(5, 3, 10, 12).to(dtype) * 2 - 1
    for p in (0.0, 0.5, 1.0):
        y = Augment(policy, p=p)(x)
        assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device


def test_empty_policy_returns_the_same_tensor() -> None:
    x = torch.rand(2, 3, 8, 8)
    for policy in (None, "", []):
        assert Augment(policy)(x) is x


def test_non_images_are_refused_in_one_line() -> None:
    _one_line_error(lambda: Augment("color")(torch.rand(8, 2)), "augment.policy", "(8, 2)")
    _one_line_error(lambda: Augment("color")(torch.rand(2, 3, 4, 4, 4)), "augment.policy", "(2, 3, 4, 4, 4)")


def test_the_global_rng_decides_the_draws() -> None:
    """Seeding torch repeats an augmentation exactly (so the trainer's RNG checkpoint makes resume exact)."""
    x = torch.rand(6, 3, 16, 16)
    aug = Augment("color,translation,cutout", p=0.5)
    torch.manual_seed(3)
    first = aug(x)
    torch.manual_seed(3)
    assert torch.equal(aug(x), first)
    assert not torch.equal(aug(x), first)


# ---- the transforms ------------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(16, 16), (16, 24), (7, 9), (24, 20)])  # 24: an odd reach (3); 20 = 10100b
def test_translation_moves_whole_pixels_with_zero_fill_alike_in_every_channel(h: int, w: int) -> None:
    n, c = 300, 2
    x = torch.arange(1.0, n * c * h * w + 1).view(n, c, h, w)  # every value distinct and nonzero
    torch.manual_seed(0)
    y = translation(x)
    sh, sw = h // 8, w // 8  # DiffAugment: at most 1/8 of the size
    seen = set()
    for i in range(n):
        matches = [(dy, dx) for dy in range(-sh, sh + 1) for dx in range(-sw, sw + 1)
                   if torch.equal(y[i], _shifted(x[i], dy, dx))]
        assert len(matches) == 1, f"sample {i} is no whole-pixel shift of at most ({sh}, {sw}) of every channel"
        seen.add(matches[0])
    # every shift in range occurs (300 samples over at most 5 x 7 equally likely shifts)
    assert seen == {(dy, dx) for dy in range(-sh, sh + 1) for dx in range(-sw, sw + 1)}


@pytest.mark.parametrize("h,w", [(12, 16), (10, 10)])
def test_cutout_zeroes_a_clipped_half_size_square_alike_in_every_channel(h: int, w: int) -> None:
    n, c = 400, 3
    x = torch.rand(n, c, h, w) + 0.5  # no zero anywhere
    torch.manual_seed(1)
    y = cutout(x)
    size_h, size_w = h // 2, w // 2  # DiffAugment: half the image size
    tops, lefts = set(), set()
    for i in range(n):
        zero = y[i] == 0
        assert torch.equal(zero, zero[:1].expand_as(zero)), "the same pixels are cut in every channel"
        assert torch.equal(y[i][~zero], x[i][~zero]), "the rest is untouched"
        rows = zero[0].any(1).nonzero().flatten()
        cols = zero[0].any(0).nonzero().flatten()
        r0, r1, c0, c1 = rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()
        box = torch.zeros(h, w, dtype=torch.bool)
        box[r0:r1 + 1, c0:c1 + 1] = True
        assert torch.equal(zero[0], box), "the cut is one rectangle"
        height, width = r1 - r0 + 1, c1 - c0 + 1
        # the full size unless clipped at a border; at least half of it inside the image
        assert height == size_h or (r0 == 0 or r1 == h - 1) and math.ceil(size_h / 2) <= height < size_h
        assert width == size_w or (c0 == 0 or c1 == w - 1) and math.ceil(size_w / 2) <= width < size_w
        tops.add(r0 if r0 > 0 else r1 + 1 - size_h)
        lefts.add(c0 if c0 > 0 else c1 + 1 - size_w)
    # the square's corner takes every position from half out at the top/left to half out at the bottom/right
    assert tops == set(range(-(size_h // 2), h - (size_h + 1) // 2 + 1))
    assert lefts == set(range(-(size_w // 2), w - (size_w + 1) // 2 + 1))


def test_color_is_brightness_then_saturation_then_contrast() -> None:
    """Against the formulas, replaying the draws: U(-0.5, 0.5) added, the deviation from each pixel's channel
    mean scaled by U(0, 2), the deviation from the image mean by U(0.5, 1.5) (the draws in that order)."""
    x = torch.rand(64, 3, 5, 6, dtype=torch.float64) * 2 - 1
    torch.manual_seed(2)
    y = color(x)
    torch.manual_seed(2)
    b, s, c = (torch.rand(64, 1, 1, 1).double() for _ in range(3))
    ref = x + (b - 0.5)
    pixel = ref.mean(1, keepdim=True)
    ref = (ref - pixel) * (2 * s) + pixel
    image = ref.mean((1, 2, 3), keepdim=True)
    ref = (ref - image) * (c + 0.5) + image
    assert torch.allclose(y, ref, rtol=0, atol=1e-6)  # the draws are float32 numbers


def test_color_ranges() -> None:
    """The same ranges seen from outside: a flat image only shifts, by U(-0.5, 0.5); a grey image stays grey
    and its contrast scales by U(0.5, 1.5)."""
    n = 2000
    torch.manual_seed(4)
    flat = torch.full((n, 3, 2, 2), 0.25)
    shift = (color(flat) - flat).flatten(1)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6)
    assert -0.5 <= shift.min() < -0.45 and 0.45 < shift.max() <= 0.5
    grey = torch.tensor([-0.5, 0.5]).repeat(n, 3, 1, 1)  # (n, 3, 1, 2): two grey pixels
    out = color(grey)
    assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-6)
    factor = out[:, 0, 0, 1] - out[:, 0, 0, 0]  # the contrast factor times the difference 1
    assert 0.5 - 1e-6 <= factor.min() < 0.55 and 1.45 < factor.max() <= 1.5 + 1e-6


def _seeded(aug: Augment):
    """aug with its draws fixed by seeding before each call: the same augmentation every time."""
    def f(x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(5)
        return aug(x)
    return f


@pytest.mark.parametrize("policy", POLICIES)
def test_gradients_are_exact(policy: str) -> None:
    """The whole Jacobian (gradcheck, float64) of each transform on one 2-channel 8 x 8 image."""
    x = (torch.rand(1, 2, 8, 8, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    assert torch.autograd.gradcheck(_seeded(Augment(policy, p=1.0)), (x,))


def test_gradients_through_the_per_sample_choice() -> None:
    """p = 0.5 on a batch (some samples augmented, some not): gradcheck's fast mode (random projections of the
    Jacobian, the whole of which would take seconds here)."""
    x = (torch.rand(8, 2, 8, 8, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    aug = _seeded(Augment("color,translation,cutout", p=0.5))
    changed = (aug(x) != x).flatten(1).any(1)
    assert 0 < changed.sum() < len(x), "the seed gives a batch with both kinds"
    assert torch.autograd.gradcheck(aug, (x,), fast_mode=True)


def test_cutout_gradient_is_the_cutout_of_the_output_gradient() -> None:
    """Cutout is a 0/1 mask: the gradient of sum(w * cutout(x)) is cutout(w) (the same draws)."""
    x = torch.rand(8, 3, 8, 8, requires_grad=True)
    w = torch.rand(8, 3, 8, 8) + 0.5
    torch.manual_seed(6)
    (w * cutout(x)).sum().backward()
    torch.manual_seed(6)
    assert torch.equal(x.grad, cutout(w))


# ---- the probability p ---------------------------------------------------------------------------------


def test_p_zero_leaves_every_sample_and_p_one_changes_every_sample() -> None:
    x = torch.rand(64, 3, 8, 8) * 2 - 1
    assert torch.equal(Augment("color,translation,cutout", p=0.0)(x), x)
    changed = (Augment("color", p=1.0)(x) != x).flatten(1).any(1)
    assert changed.all()


def test_p_half_changes_about_half_the_samples() -> None:
    n, p = 4000, 0.5
    x = torch.rand(n, 3, 2, 2) * 2 - 1
    torch.manual_seed(7)
    changed = (Augment("color", p=p)(x) != x).flatten(1).any(1).sum().item()
    # Binomial(n, p): five standard deviations
    assert abs(changed - n * p) <= 5 * math.sqrt(n * p * (1 - p))


def test_each_transform_has_its_own_draw() -> None:
    """With p = 0.5 and two transforms, about a quarter of the samples get both and a quarter neither."""
    n = 4000
    x = torch.rand(n, 1, 8, 8) + 0.5  # positive: a cut shows as zeros
    torch.manual_seed(8)
    y = Augment("color,cutout", p=0.5)(x)
    cut = (y == 0).flatten(1).any(1)
    recoloured = ((y != x) & (y != 0)).flatten(1).any(1)
    both = (cut & recoloured).sum().item()
    neither = (~cut & ~recoloured).sum().item()
    bound = 5 * math.sqrt(n * 0.25 * 0.75)  # each count is Binomial(n, 1/4)
    assert abs(both - n / 4) <= bound and abs(neither - n / 4) <= bound


# ---- ADA -----------------------------------------------------------------------------------------------


def _ada(p: float = 0.0, **kwargs) -> Augment:
    settings = {"ada_target": 0.6, "ada_interval": 4, "ada_kimg": 100.0, "batch_size": 64, **kwargs}
    return Augment("color,translation,cutout", p=p, **settings)


def test_ada_raises_p_when_d_overfits_only_every_interval() -> None:
    aug = _ada()
    step = 64 * 4 / 100_000
    overfit = torch.ones(64, 1)  # every real logit positive: r_t = 1 > 0.6
    for adjustment in (1, 2):
        for _ in range(3):
            aug.observe(overfit)
            assert aug.p.item() == pytest.approx((adjustment - 1) * step, abs=1e-7)
        aug.observe(overfit)
        assert aug.p.item() == pytest.approx(adjustment * step, abs=1e-7)
        assert aug.accumulator.item() == 0 and aug.count.item() == 0


def test_ada_lowers_p_when_d_does_not_overfit() -> None:
    aug = _ada(p=0.5, ada_interval=2, batch_size=32, ada_kimg=10.0)
    for _ in range(2):
        aug.observe(-torch.rand(32) - 0.1)  # every real logit negative: r_t = -1 < 0.6
    assert aug.p.item() == pytest.approx(0.5 - 32 * 2 / 10_000, abs=1e-7)


def test_ada_averages_since_the_last_adjustment() -> None:
    """Three overfitting batches and one very negative one: r_t = (1 + 1 + 1 - 1) / 4 = 0.5 < 0.6, so p falls."""
    aug = _ada(p=0.5)
    for logits in (torch.ones(8), torch.ones(8), torch.ones(8), -torch.ones(8)):
        aug.observe(logits)
    assert aug.p.item() == pytest.approx(0.5 - 64 * 4 / 100_000, abs=1e-7)
    # r_t exactly at the target (sign 0): p stays
    aug = _ada(p=0.5, ada_target=0.5, ada_interval=1)
    aug.observe(torch.tensor([1.0, 1.0, 1.0, -1.0]))
    assert aug.p.item() == 0.5


def test_ada_clamps_p_to_zero_and_one() -> None:
    aug = _ada(p=0.0, ada_interval=1)
    for _ in range(3):
        aug.observe(-torch.ones(4))
    assert aug.p.item() == 0.0
    aug = _ada(p=0.9, ada_interval=1, ada_kimg=0.01)  # a step of 6.4
    aug.observe(torch.ones(4))
    assert aug.p.item() == 1.0
    aug.observe(torch.ones(4))
    assert aug.p.item() == 1.0
    aug.observe(-torch.ones(4))
    assert aug.p.item() == 0.0


def test_observe_without_ada_changes_nothing() -> None:
    aug = Augment("color", p=0.7)
    for _ in range(8):
        aug.observe(torch.ones(4))
    assert aug.p.item() == pytest.approx(0.7) and aug.count.item() == 0


def test_observe_ignores_the_graph_of_the_logits() -> None:
    aug = _ada(ada_interval=1)
    logits = torch.ones(4, requires_grad=True) * 2
    aug.observe(logits)
    assert not aug.p.requires_grad and aug.p.item() > 0


# ---- state and device ------------------------------------------------------------------------------------


def test_state_round_trip_restores_into_the_same_tensors() -> None:
    a = _ada(p=0.2)
    for logits in (torch.ones(4), -torch.ones(4), torch.ones(4), torch.ones(4), torch.ones(4), -torch.ones(4)):
        a.observe(logits)  # one adjustment, then two observations pending
    state = a.state_dict()
    assert set(state) == {"p", "accumulator", "count"}
    assert all(t.device.type == "cpu" for t in state.values())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    b = _ada(p=0.0)
    tensors = (b.p, b.accumulator, b.count)
    b.load_state_dict(state)
    assert all(now is before for now, before in zip((b.p, b.accumulator, b.count), tensors))
    assert b.p.item() == a.p.item() and b.accumulator.item() == a.accumulator.item() == 0.0
    assert b.count.item() == a.count.item() == 2
    for _ in range(2):
        a.observe(torch.ones(4))
        b.observe(torch.ones(4))
    assert b.p.item() == a.p.item() != state["p"].item()
    assert state["count"].item() == 2  # the saved state is a copy


def test_state_dict_is_a_copy() -> None:
    a = _ada(ada_interval=1)
    state = a.state_dict()
    a.observe(torch.ones(4))
    assert state["p"].item() == 0.0 and a.p.item() > 0


def test_to_device_keeps_working() -> None:
    aug = _ada(p=0.5, ada_interval=1)
    assert aug.to("cpu") is aug and aug.to(torch.device("cpu")) is aug
    assert aug.p.device.type == aug.accumulator.device.type == aug.count.device.type == "cpu"
    x = torch.rand(4, 3, 8, 8)
    assert aug(x).shape == x.shape
    aug.observe(torch.ones(4))
    assert aug.p.item() > 0.5
