"""Evaluation of class-conditional generators: the pure metrics on hand-made tensors, the Evaluator's
choice of metrics, and the scores of hand-made conditional generators on the grid mixture and on digits."""
import math

import pytest
import torch

from gantrain.eval.metrics import class_accuracy, fid, intra_fid, within_mode_pct, worst_class
from gantrain.nets.base import Generator


# ---- pure metrics ------------------------------------------------------------------------------


def test_class_accuracy_perfect_swapped_and_by_hand():
    target = torch.arange(10).repeat(7)
    overall, per_class = class_accuracy(target.clone(), target, 10)
    assert overall == 1.0 and per_class.tolist() == [1.0] * 10 and worst_class(per_class) == 1.0
    overall, per_class = class_accuracy((target + 1) % 10, target, 10)  # every sample in the next class
    assert overall == 0.0 and per_class.tolist() == [0.0] * 10 and worst_class(per_class) == 0.0
    # class 0: 1 of 1 right; class 1: 2 of 3 right; class 2: never asked for (NaN, left out of the worst class)
    overall, per_class = class_accuracy(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]), 3)
    assert overall == 0.75
    assert per_class[:2].tolist() == pytest.approx([1.0, 2 / 3]) and math.isnan(per_class[2])
    assert worst_class(per_class) == pytest.approx(2 / 3)
    assert math.isnan(worst_class(torch.full((3,), math.nan)))
    with pytest.raises(ValueError):
        class_accuracy(torch.tensor([0]), torch.tensor([3]), 3)  # a target outside the classes


def test_intra_fid_identical_swapped_and_by_hand():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(200)
    feats = torch.randn(600, 4, generator=gen) + 5.0 * torch.nn.functional.one_hot(labels, 4).float()
    mean, per_class = intra_fid(feats, labels, feats, labels, 3)
    assert abs(mean) < 1e-6 and per_class.abs().max() < 1e-6
    # the same features under the wrong labels: every class is compared with another one (means 5 sqrt 2 apart)
    wrong, _ = intra_fid(feats, labels, feats, (labels + 1) % 3, 3)
    assert wrong > 40
    # unconditional FID of the same sets is 0: only the per-class comparison sees the swap
    assert abs(fid(feats, feats)) < 1e-6
    # by hand (1D): class 0 real {0, 2} vs fake {0, 4}: FID 3 (see test_metrics); class 1 identical: 0; class 2
    # has no fake sample (NaN, left out of the mean): mean 1.5
    real = torch.tensor([[0.0], [2.0], [7.0], [9.0], [1.0]])
    fake = torch.tensor([[0.0], [4.0], [7.0], [9.0]])
    mean, per_class = intra_fid(real, torch.tensor([0, 0, 1, 1, 2]), fake, torch.tensor([0, 0, 1, 1]), 3)
    assert per_class[0] == pytest.approx(3.0, abs=1e-12) and per_class[1] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(per_class[2]) and mean == pytest.approx(1.5, abs=1e-12)


def test_within_mode_pct_by_hand_and_on_gaussians():
    means, std = torch.tensor([[0.0, 0.0], [10.0, 0.0]]), 1.0
    samples = torch.tensor([[2.9, 0.0], [3.1, 0.0], [10.0, 3.0], [0.0, 0.0], [float("nan"), 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 0])
    # in: 2.9 from mode 0, exactly 3 from mode 1 (the edge counts); out: 3.1, 10 from the requested mode, NaN
    assert within_mode_pct(samples, labels, means, std) == pytest.approx(40.0)
    assert within_mode_pct(samples, labels, means, std, radius=4.0) == pytest.approx(60.0)
    # isotropic 2D Gaussians: the mass within 3 std is 1 - exp(-9/2)
    gen = torch.Generator().manual_seed(0)
    which = torch.randint(2, (20000,), generator=gen)
    points = means[which] + std * torch.randn(20000, 2, generator=gen)
    assert within_mode_pct(points, which, means, std) == pytest.approx(100 * (1 - math.exp(-4.5)), abs=0.3)
    assert within_mode_pct(points, 1 - which, means, std) == 0.0
    from gantrain.eval.metrics import within_mode_pct_per_class

    per_mode = within_mode_pct_per_class(samples, labels, means, std)  # mode 0: 1 of 3 in; mode 1: 1 of 2 in
    assert per_mode.tolist() == pytest.approx([100 / 3, 50.0])
    assert torch.isnan(within_mode_pct_per_class(samples[:2], labels[:2], means, std)[1])  # nobody asked for 1


# ---- the Evaluator's choice of metrics ---------------------------------------------------------


def test_conditional_metric_choice():
    from gantrain.data.images import Digits
    from gantrain.data.mixtures import Grid
    from gantrain.eval.evaluator import DOMAIN_METRICS, HIGHER_IS_BETTER, MIXTURE_METRICS, Evaluator, MetricChoiceError

    grid, digits = Grid(), Digits(image_size=8)
    assert Evaluator(grid, "auto").names == list(MIXTURE_METRICS)  # unconditional auto is unchanged
    assert Evaluator(digits, "auto").names == list(DOMAIN_METRICS)
    assert Evaluator(grid, "auto", conditional=True).names == [*MIXTURE_METRICS, "cond_mode_pct", "cond_mode_pct_min"]
    assert Evaluator(digits, "auto", conditional=True).names == [*DOMAIN_METRICS, "cond_accuracy", "cond_accuracy_min",
                                                                  "intra_fid"]
    assert {k: HIGHER_IS_BETTER[k] for k in ("cond_mode_pct", "cond_accuracy", "cond_accuracy_min", "intra_fid")} == {
        "cond_mode_pct": True, "cond_accuracy": True, "cond_accuracy_min": True, "intra_fid": False}
    with pytest.raises(MetricChoiceError) as info:
        Evaluator(digits, ["fid_classifier", "cond_accuracy"])
    assert "conditional=true" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(MetricChoiceError, match="2D mixtures"):
        Evaluator(digits, ["cond_mode_pct"], conditional=True)
    with pytest.raises(MetricChoiceError, match="2D data"):
        Evaluator(grid, ["intra_fid"], conditional=True)
    with pytest.raises(MetricChoiceError, match="labelled dataset"):
        Evaluator(digits.split(train=True), ["cond_accuracy"], conditional=True)  # images without split()


# ---- hand-made conditional generators ----------------------------------------------------------


class HandMade(Generator):
    """A conditional 'generator' whose output is a given function of (z, y)."""

    def __init__(self, num_classes, out_shape, fn, latent_dim=2):
        super().__init__()
        self.num_classes, self.out_shape, self.latent_dim, self.fn = num_classes, tuple(out_shape), latent_dim, fn
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.asked: list[torch.Tensor] = []

    def forward(self, z, y):
        self.asked.append(y.cpu())
        return self.fn(z, y)


def test_grid_cond_mode_pct_of_right_and_wrong_generators():
    from gantrain.data.mixtures import Grid
    from gantrain.eval.evaluator import MIXTURE_METRICS, Evaluator, MetricChoiceError, generate_conditional

    grid = Grid()
    means, std, k = grid.means, grid.std, len(grid.means)
    evaluator = Evaluator(grid, "auto", conditional=True)
    right = HandMade(k, (2,), lambda z, y: means[y] + std * z[:, :2])
    wrong = HandMade(k, (2,), lambda z, y: means[(y + 1) % k] + std * z[:, :2])  # ignores the label's mode
    torch.manual_seed(7)
    before = torch.get_rng_state()
    good, bad = evaluator(right), evaluator(wrong)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is not touched
    floor = evaluator.floor["cond_mode_pct"]
    assert floor == pytest.approx(100 * (1 - math.exp(-4.5)), abs=1.0)  # labelled samples of the mixture itself
    assert good["cond_mode_pct"] == pytest.approx(floor, abs=1.5)
    assert bad["cond_mode_pct"] < 1.0
    assert evaluator.floor["cond_mode_pct_min"] < floor and good["cond_mode_pct_min"] <= good["cond_mode_pct"]
    assert good["cond_mode_pct_min"] > 90 and bad["cond_mode_pct_min"] < 5
    assert min(evaluator.details["cond_mode_pct_per_class"]) == bad["cond_mode_pct_min"]
    # both cover every mode equally: only the conditional score tells them apart
    assert good["modes"] == bad["modes"] == k and good["high_quality_pct"] == pytest.approx(bad["high_quality_pct"], abs=1.5)
    # balanced labels 0..K-1 repeating, in batches of 500
    asked = torch.cat(right.asked[:5])
    assert [len(a) for a in right.asked[:5]] == [500] * 5
    assert torch.equal(asked, torch.arange(2500) % k)
    # the same seed gives the same samples; another seed other ones
    labels = torch.arange(1000) % k
    assert torch.equal(generate_conditional(right, labels, seed=3), generate_conditional(right, labels, seed=3))
    assert not torch.equal(generate_conditional(right, labels, seed=3), generate_conditional(right, labels, seed=4))
    # an unconditional generator cannot be scored by conditional metrics, nor one with other classes
    from gantrain.nets.mlp import MLPGenerator

    with pytest.raises(MetricChoiceError, match="unconditional"):
        evaluator(MLPGenerator((2,)))
    with pytest.raises(MetricChoiceError, match="classes"):
        evaluator(HandMade(k - 1, (2,), lambda z, y: means[y]))
    # a conditional evaluator asked only for unconditional metrics still scores an unconditional generator,
    # with the same numbers as the unconditional evaluator
    plain = MLPGenerator((2,))
    only = Evaluator(grid, list(MIXTURE_METRICS), conditional=True)(plain)
    assert only == Evaluator(grid, "auto")(plain)


def test_generation_through_sample_labels_or_forward():
    """generate_conditional uses sample(labels=) where the generator takes labels, else G(z, y) with z from the
    same private CPU generator: the two give the same samples."""
    from gantrain.eval.evaluator import generate_conditional

    means = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    with_labels = HandMade(5, (2,), lambda z, y: means[y] + 0.1 * z[:, :2])

    class ForwardOnly(torch.nn.Module):  # an older-style generator: its sample() knows no labels
        latent_dim, num_classes = 2, 5

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def sample(self, n, generator=None):
            raise AssertionError("sample() without labels must not be used for conditional generation")

        def forward(self, z, y):
            return means[y] + 0.1 * z[:, :2]

    labels = torch.arange(1234) % 5
    a, b = generate_conditional(with_labels, labels, seed=2), generate_conditional(ForwardOnly(), labels, seed=2)
    assert a.shape == (1234, 2) and torch.equal(a, b)
    assert [len(y) for y in with_labels.asked] == [500, 500, 234]


@pytest.mark.slow
def test_digits_cond_accuracy_and_intra_fid():
    from gantrain.data.images import Digits
    from gantrain.eval.evaluator import Evaluator

    digits = Digits(image_size=8)
    test = digits.split(train=False)
    images, labels = test.tensor().float() / 127.5 - 1, test.labels()
    by_class = [images[labels == c] for c in range(10)]

    def replay(shift):
        """Real test images of class (y + shift) % 10, picked by the noise z (a different one per sample)."""
        def fn(z, y):
            out = []
            for zi, yi in zip(z, y.tolist()):
                pool = by_class[(yi + shift) % 10]
                out.append(pool[int(zi[0].abs() * 1000) % len(pool)])
            return torch.stack(out)
        return HandMade(10, (1, 8, 8), fn)

    evaluator = Evaluator(digits, "auto", num_samples=1000, conditional=True)
    right = evaluator(replay(0))
    right_details = evaluator.details  # replaced at every call
    wrong = evaluator(replay(1))
    wrong_details = evaluator.details
    assert right_details is not wrong_details
    floor = evaluator.floor
    assert 0.8 < floor["cond_accuracy"] <= 1.0 and floor["cond_accuracy_min"] <= floor["cond_accuracy"]
    assert right["cond_accuracy"] == pytest.approx(floor["cond_accuracy"], abs=0.05)
    assert right["cond_accuracy_min"] >= floor["cond_accuracy_min"] - 0.15
    assert wrong["cond_accuracy"] < 0.1 and wrong["cond_accuracy_min"] < 0.1
    assert right["intra_fid"] < 0.2 * wrong["intra_fid"]
    assert floor["intra_fid"] < 0.2 * wrong["intra_fid"]
    # the unconditional scores barely tell the two apart: both produce every class in equal numbers
    assert right["classes"] == wrong["classes"] == 10
    assert wrong["fid_classifier"] < 0.5 * wrong["intra_fid"]
    # per-class values of the latest call and of the floors
    assert len(right_details["cond_accuracy_per_class"]) == 10 and len(wrong_details["intra_fid_per_class"]) == 10
    assert min(right_details["cond_accuracy_per_class"]) == pytest.approx(right["cond_accuracy_min"])
    assert max(wrong_details["cond_accuracy_per_class"]) < 0.2
    conditional = evaluator.provenance["conditional"]
    assert len(conditional["floor_cond_accuracy_per_class"]) == 10
    assert min(conditional["floor_cond_accuracy_per_class"]) == pytest.approx(floor["cond_accuracy_min"])
    assert sum(conditional["floor_intra_fid_per_class"]) / 10 == pytest.approx(floor["intra_fid"])
    assert conditional["num_generated"] == 1000


@pytest.mark.slow
def test_gantrain_eval_of_a_conditional_run(tmp_path, capsys):
    """gantrain-eval (eval_main, in process) reads conditional=true from the run's config."""
    import json

    import gantrain
    from gantrain.commands.evaluate import eval_main

    run = tmp_path / "run"
    cfg = gantrain.compose(["experiment=cgan_digits", "trainer.steps=10", "trainer.device=cpu", "trainer.log_every=5",
                            "trainer.sample_every=10", "trainer.ckpt_every=10", "trainer.eval_every=0"])
    gantrain.train(cfg, str(run))
    capsys.readouterr()
    eval_main([str(run), "num_samples=500", "device=cpu"])
    printed = capsys.readouterr().out
    report = json.loads((run / "eval.json").read_text())
    conditional = {"cond_accuracy", "cond_accuracy_min", "intra_fid"}
    assert conditional <= set(report["metrics"]) and conditional <= set(report["real_vs_real_floor"])
    assert report["real_vs_real_floor"]["cond_accuracy"] > 0.8
    assert len(report["per_class"]["cond_accuracy_per_class"]) == 10
    assert report["provenance"]["conditional"]["num_generated"] == 500
    assert "cond_accuracy_min" in printed and "cond_accuracy_per_class: 0:" in printed
