"""What gantrain-sample draws, in process, against the same draws made by hand: the seed's noise (truncated in z,
never for a style-based run), random and given labels, interpolation rows, truncation strips, edits along a direction
(from random rows or a projected latent, in z and W), the style-mixing figure's layout, a text run's prompt rows, and
each drawing mode's one-line refusals. Tiny untrained networks; the command line itself is tested elsewhere."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from gantrain.commands.sample import CHUNK, Request, generate, num_classes_of, slerp, truncated_normal
from gantrain.errors import GantrainError
from gantrain.eval.directions import save_directions
from gantrain.nets.control import style_mix, synthesize
from gantrain.nets.dcgan import DCGANGenerator
from gantrain.nets.stylegan2 import StyleGAN2Generator


def _dcgan(classes: int = 0) -> DCGANGenerator:
    torch.manual_seed(0)
    return DCGANGenerator((1, 8, 8), latent_dim=4, base_channels=4, num_classes=classes).eval()


def _style(classes: int = 0) -> StyleGAN2Generator:
    torch.manual_seed(0)
    g = StyleGAN2Generator((1, 8, 8), latent_dim=6, w_dim=6, mapping_layers=2, channel_base=32, channel_max=4,
                           num_classes=classes)
    g.mapping(torch.randn(32, 6), torch.randint(classes, (32,)) if classes else None)  # a w_avg away from zero
    return g.eval()


def _rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_unconditional_samples_are_the_seeds_noise_truncated_in_z():
    g = _dcgan()
    assert num_classes_of(g) is None
    batch = generate(g, Request(n=5, n_given=True, seed=7, truncation=0.5))
    z = truncated_normal((5, 4), 0.5, _rng(7))
    assert torch.equal(batch.z, z) and batch.labels is None and batch.nrow == 3  # 3 + 2
    torch.testing.assert_close(batch.samples, g(z))
    assert not batch.samples.requires_grad  # drawn without autograd
    default = generate(g, Request(seed=3))  # n not given: 64, in rows of 8
    assert default.samples.shape == (64, 1, 8, 8) and default.nrow == 8
    assert torch.equal(default.z, torch.randn(64, 4, generator=_rng(3)))


def test_more_samples_than_one_pass_are_drawn_in_chunks_in_order():
    g = _dcgan()
    n = CHUNK + 3
    batch = generate(g, Request(n=n, n_given=True, seed=1))
    z = torch.randn(n, 4, generator=_rng(1))
    assert batch.samples.shape == (n, 1, 8, 8)
    torch.testing.assert_close(batch.samples, torch.cat([g(z[:CHUNK]), g(z[CHUNK:])]))
    torch.testing.assert_close(batch.samples[-3:], g(z[-3:]))
    c = _dcgan(classes=3)
    labelled = generate(c, Request(n=n, n_given=True, seed=1, labels=2))
    assert labelled.labels.tolist() == [2] * n
    torch.testing.assert_close(labelled.samples[-3:], c(z[-3:], torch.full((3,), 2)))


def test_conditional_samples_draw_their_labels_after_the_noise_or_take_the_given_ones():
    g = _dcgan(classes=3)
    assert num_classes_of(g) == 3
    batch = generate(g, Request(n=6, n_given=True, seed=2))
    rng = _rng(2)
    z = torch.randn(6, 4, generator=rng)
    y = torch.randint(3, (6,), generator=rng)
    assert torch.equal(batch.z, z) and torch.equal(batch.labels, y)
    torch.testing.assert_close(batch.samples, g(z, y))
    given = generate(g, Request(n=4, n_given=True, seed=2, labels=[2, 0, 1, 2]))
    assert given.labels.tolist() == [2, 0, 1, 2] and torch.equal(given.z, torch.randn(4, 4, generator=_rng(2)))
    torch.testing.assert_close(given.samples, g(given.z, given.labels))
    grid = generate(g, Request(n=2, n_given=True, seed=2, per_class=True))
    assert grid.labels.tolist() == [0, 0, 1, 1, 2, 2] and grid.nrow == 2


def test_interpolation_rows_follow_the_great_circle_with_one_label_per_row():
    g = _dcgan(classes=3)
    batch = generate(g, Request(n=2, n_given=True, seed=4, interpolate=5, labels=1))
    ends = torch.randn(2, 2, 4, generator=_rng(4))
    z = slerp(ends[0], ends[1], 5).reshape(10, 4)
    assert torch.equal(batch.z, z) and batch.nrow == 5 and batch.labels.tolist() == [1] * 10
    torch.testing.assert_close(batch.samples, g(z, batch.labels))
    rows = generate(g, Request(n=2, n_given=True, seed=4, interpolate=3))  # random labels: one per row
    rng = _rng(4)
    torch.randn(2, 2, 4, generator=rng)
    y = torch.randint(3, (2,), generator=rng)
    assert rows.labels.tolist() == y.repeat_interleave(3).tolist()
    plain = generate(_dcgan(), Request(seed=4, interpolate=4, truncation=0.7))  # n not given: 8 rows
    ends = truncated_normal((2, 8, 4), 0.7, _rng(4))
    assert torch.equal(plain.z, slerp(ends[0], ends[1], 4).reshape(32, 4)) and plain.labels is None


def test_a_style_based_run_truncates_in_w_not_in_z():
    g = _style()
    batch = generate(g, Request(n=3, n_given=True, seed=5, truncation=0.6))
    z = torch.randn(3, 6, generator=_rng(5))  # z itself is not truncated
    assert torch.equal(batch.z, z)
    torch.testing.assert_close(batch.samples, synthesize(g, z, None, 0.6))
    assert not torch.allclose(batch.samples, synthesize(g, z, None, 1.0))
    average = generate(g, Request(n=2, n_given=True, seed=5, truncation=0.0))  # psi 0: the image of w_avg
    torch.testing.assert_close(average.samples[0], average.samples[1])
    c = _style(classes=3)
    labelled = generate(c, Request(n=3, n_given=True, seed=5, labels=2))
    torch.testing.assert_close(labelled.samples, synthesize(c, labelled.z, torch.tensor([2, 2, 2]), None))


def test_a_strip_draws_rows_then_one_column_per_psi_with_their_labels():
    c = _style(classes=3)
    batch = generate(c, Request(seed=6, strip=(0.0, 1.0, 3)))  # n not given: 8 rows
    rng = _rng(6)
    z = torch.randn(8, 6, generator=rng)
    y = torch.randint(3, (8,), generator=rng)
    assert batch.samples.shape == (24, 1, 8, 8) and batch.nrow == 3
    assert torch.equal(batch.z, z.repeat_interleave(3, dim=0)) and torch.equal(batch.labels, y.repeat_interleave(3))
    grid = batch.samples.view(8, 3, 1, 8, 8)
    for k, psi in enumerate((0.0, 0.5, 1.0)):
        torch.testing.assert_close(grid[:, k], synthesize(c, z, y, psi))
    one_label = generate(c, Request(seed=6, strip=(0.0, 1.0, 2), labels=1))  # n not given: 8 rows of class 1
    assert one_label.labels.tolist() == [1] * 16 and one_label.samples.shape == (16, 1, 8, 8)
    two = generate(c, Request(n=2, n_given=True, seed=6, strip=(0.5, 0.5, 1), labels=[0, 1]))
    assert two.labels.tolist() == [0, 1] and torch.equal(two.z, torch.randn(2, 6, generator=_rng(6)))


def _directions(path, space: str, d: int, count: int = 2, std: float = 2.0):
    directions = torch.eye(count, d)
    save_directions(path, directions, torch.full((count,), std), torch.zeros(d), space, "pca", ["a", "b"][:count])
    return path


def test_an_edit_moves_random_rows_along_the_direction_by_its_spread(tmp_path):
    g = _dcgan(classes=3)
    dirs = _directions(tmp_path / "dirs.npz", "z", 4)
    batch = generate(g, Request(n=2, n_given=True, seed=8, direction=(dirs, 1), strength=(-1.0, 1.0, 3)))
    rng = _rng(8)
    z = torch.randn(2, 4, generator=rng)
    y = torch.randint(3, (2,), generator=rng)
    step = torch.tensor([0.0, 2.0, 0.0, 0.0])  # direction 1 times its std
    assert batch.nrow == 3 and torch.equal(batch.z, z.repeat_interleave(3, dim=0))
    assert torch.equal(batch.labels, y.repeat_interleave(3))
    grid = batch.samples.view(2, 3, 1, 8, 8)
    for k, s in enumerate((-1.0, 0.0, 1.0)):
        torch.testing.assert_close(grid[:, k], g(z + s * step, y))
    rows = generate(g, Request(seed=8, direction=(dirs, 0)))  # n not given: 8 rows, the default 7 strengths
    assert rows.samples.shape == (56, 1, 8, 8) and rows.nrow == 7
    with pytest.raises(GantrainError) as err:
        generate(g, Request(seed=8, direction=(dirs, 2)))
    assert str(err.value) == f"direction={dirs}:2: the file holds directions 0..1"
    wrong = _directions(tmp_path / "w.npz", "w", 4)
    with pytest.raises(GantrainError) as err:
        generate(g, Request(seed=8, direction=(wrong, 0)))
    assert str(err.value) == (f"direction={wrong}:0 is a direction in w of size 4; this run's latents are z of size 4: "
                              f"make the file from this run with gantrain-directions")
    with pytest.raises(GantrainError) as err:
        generate(g, Request(seed=8, direction=(dirs, 7)))
    assert str(err.value) == f"direction={dirs}:7: the file holds directions 0..1"
    with pytest.raises(GantrainError) as err:  # a direction in z for a run whose edits are in W, of the same size
        generate(_style(), Request(seed=8, direction=(_directions(tmp_path / "z6.npz", "z", 6), 0)))
    assert str(err.value).startswith(f"direction={tmp_path / 'z6.npz'}:0 is a direction in z of size 6; this run's "
                                     f"latents are w of size 6")
    three = tmp_path / "three.npz"
    save_directions(three, torch.eye(3, 4), torch.ones(3), torch.zeros(4), "z", "pca", ["a", "b", "c"])
    with pytest.raises(GantrainError) as err:
        generate(g, Request(seed=8, direction=(three, 5)))
    assert str(err.value) == f"direction={three}:5: the file holds directions 0..2"
    wide = _directions(tmp_path / "wide.npz", "z", 5)
    with pytest.raises(GantrainError, match="is a direction in z of size 5; this run's latents are z of size 4"):
        generate(g, Request(seed=8, direction=(wide, 0)))
    small = _directions(tmp_path / "small.npz", "z", 3)
    with pytest.raises(GantrainError, match="is a direction in z of size 3; this run's latents are z of size 4"):
        generate(g, Request(seed=8, direction=(small, 0)))


def test_an_edit_in_w_maps_the_rows_then_moves_them(tmp_path):
    g = _style()
    dirs = _directions(tmp_path / "w.npz", "w", 6, std=1.5)
    batch = generate(g, Request(n=2, n_given=True, seed=9, direction=(dirs, 0), strength=(0.0, 2.0, 2),
                                truncation=0.5))
    z = torch.randn(2, 6, generator=_rng(9))
    w = g.mapping(z, None)
    step = torch.zeros(6)
    step[0] = 1.5
    grid = batch.samples.view(2, 2, 1, 8, 8)
    for k, s in enumerate((0.0, 2.0)):
        torch.testing.assert_close(grid[:, k], g.synthesis(g.truncate_w(w + s * step, 0.5), noise_mode="const"))
    torch.testing.assert_close(batch.z, w.repeat_interleave(2, dim=0))  # w mapped inside and here: the same kernels, compared within rounding
    plain = generate(g, Request(n=2, n_given=True, seed=9, direction=(dirs, 0), strength=(1.0, 1.0, 1)))
    torch.testing.assert_close(plain.samples, g.synthesis(g.truncate_w(w + step, 1.0), noise_mode="const"))


def _latent(path, latent, space: str, label=None):
    arrays = {"latent": np.asarray(latent, np.float32), "space": np.array(space)}
    if label is not None:
        arrays["label"] = np.array(label)
    np.savez(path, **arrays)
    return path


def test_an_edit_of_a_projected_latent_keeps_its_label_and_space(tmp_path):
    g = _dcgan(classes=3)
    z = torch.randn(4, generator=_rng(10))
    dirs = _directions(tmp_path / "dirs.npz", "z", 4)
    batch = generate(g, Request(latent=_latent(tmp_path / "p.npz", z, "z", label=2), direction=(dirs, 0),
                                strength=(0.0, 1.0, 2)))
    assert batch.labels.tolist() == [2, 2] and batch.nrow == 2
    torch.testing.assert_close(batch.samples[1:], g((z + torch.tensor([2.0, 0, 0, 0]))[None], torch.tensor([2])))
    with pytest.raises(GantrainError) as err:  # no label saved: the class must be given
        generate(g, Request(latent=_latent(tmp_path / "q.npz", z, "z")))
    assert str(err.value) == (f"latent={tmp_path / 'q.npz'} was projected without a class and this run is "
                              f"class-conditional; give labels=K")
    alone = generate(g, Request(latent=tmp_path / "q.npz", labels=1))
    assert alone.labels.tolist() == [1] and alone.nrow == 1
    torch.testing.assert_close(alone.samples, g(z[None], torch.tensor([1])))
    with pytest.raises(GantrainError) as err:
        generate(g, Request(latent=tmp_path / "q.npz", labels=3))
    assert str(err.value) == "label 3 is outside this run's classes 0..2; give labels between 0 and 2"
    with pytest.raises(GantrainError) as err:
        generate(g, Request(latent=_latent(tmp_path / "far.npz", z, "z", label=5)))
    assert str(err.value) == (f"latent={tmp_path / 'far.npz'} was projected with class 5, outside this run's classes "
                              f"0..2; give labels=K")
    with pytest.raises(GantrainError) as err:  # a latent of another run's size
        generate(g, Request(latent=_latent(tmp_path / "long.npz", torch.zeros(100), "z", label=1)))
    assert str(err.value) == (f"latent={tmp_path / 'long.npz'} holds a latent of shape (100,) in z; this run's are "
                              f"(4,): project the image again with this run")
    with pytest.raises(GantrainError) as err:
        generate(_dcgan(), Request(latent=tmp_path / "p.npz", labels=1))
    assert str(err.value) == ("labels= given, but this run's generator is unconditional (it was trained without "
                              "classes); leave labels out")
    unlabelled = generate(_dcgan(), Request(latent=tmp_path / "p.npz"))
    assert unlabelled.labels is None
    with pytest.raises(GantrainError) as err:  # a given z is drawn as it is (truncation shapes the drawing of noise)
        generate(_dcgan(), Request(latent=tmp_path / "p.npz", truncation=0.5))
    assert str(err.value) == (f"truncation= draws noise nearer the mean; latent={tmp_path / 'p.npz'} is a given z, "
                              f"drawn as it is: leave truncation out")
    style = _style()  # a style-based run's latent in z with a direction in w: project again in w
    w_dirs = _directions(tmp_path / "wdirs.npz", "w", 6)
    with pytest.raises(GantrainError) as err:
        generate(style, Request(latent=_latent(tmp_path / "sz.npz", torch.zeros(6), "z"), direction=(w_dirs, 0),
                                strength=(0.0, 1.0, 2)))
    assert str(err.value) == (f"direction={w_dirs}:0 is a direction in w; latent={tmp_path / 'sz.npz'} is in z: "
                              f"project the image again with space=w")
    with pytest.raises(GantrainError) as err:
        generate(g, Request(latent=_latent(tmp_path / "w.npz", torch.zeros(6), "w")))
    assert str(err.value) == f"latent={tmp_path / 'w.npz'} is in w, which this run's generator does not have"
    pickled = tmp_path / "pickled.npz"  # an object array is never unpickled: refused like a damaged file
    np.savez(pickled, latent=np.zeros(4, np.float32), space=np.array("z", dtype=object))
    with pytest.raises(GantrainError) as err:
        generate(g, Request(latent=pickled))
    assert str(err.value) == (f"latent={pickled} is not a gantrain-project .npz; give one of the .npz "
                              f"files gantrain-project wrote")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(GantrainError) as err:
        generate(g, Request(latent=tmp_path / "bad.npz"))
    assert str(err.value) == (f"latent={tmp_path / 'bad.npz'} is not a gantrain-project .npz; give one of the .npz "
                              f"files gantrain-project wrote")  # no exception class names
    first = generate(g, Request(latent=_latent(tmp_path / "zero.npz", z, "z", label=0)))
    assert first.labels.tolist() == [0]  # the label saved with the latent, class 0 included
    other = generate(g, Request(latent=tmp_path / "zero.npz", labels=2))  # in z, labels= draws it as another class
    assert other.labels.tolist() == [2]
    torch.testing.assert_close(other.samples, g(z[None], torch.tensor([2])))
    conditional_style = _style(classes=3)
    w_file = _latent(tmp_path / "wc.npz", torch.randn(6, generator=_rng(12)), "w", label=1)
    assert generate(conditional_style, Request(latent=w_file)).labels.tolist() == [1]
    unlabelled_w = _latent(tmp_path / "wu.npz", torch.randn(6, generator=_rng(13)), "w")  # the class is in w
    assert generate(conditional_style, Request(latent=unlabelled_w)).labels is None
    with pytest.raises(GantrainError) as err:  # in w the class is part of the latent
        generate(conditional_style, Request(latent=w_file, labels=2))
    assert str(err.value) == (f"latent={w_file} is in w, which already holds the class it was projected with; leave "
                              f"labels out, or project again with labels=K (or in space=z)")
    s = _style()
    ws = torch.randn(s.num_ws, 6, generator=_rng(11))
    assert s.num_ws != 6  # so that a mix-up of the layer and feature axes shows
    plus = generate(s, Request(latent=_latent(tmp_path / "plus.npz", ws, "w_plus")))  # one w per layer, as given
    torch.testing.assert_close(plus.samples, s.synthesis(ws[None], noise_mode="const"))
    w_dirs = _directions(tmp_path / "w.npz", "w", 6)
    moved = generate(s, Request(latent=tmp_path / "plus.npz", direction=(w_dirs, 1), strength=(1.0, 1.0, 1)))
    step = torch.zeros(6)
    step[1] = 2.0
    torch.testing.assert_close(moved.samples, s.synthesis((ws + step)[None], noise_mode="const"))  # every layer moves
    small = _directions(tmp_path / "w3.npz", "w", 3)
    with pytest.raises(GantrainError) as err:
        generate(s, Request(latent=tmp_path / "plus.npz", direction=(small, 0)))
    assert str(err.value) == (f"direction={small}:0 is a direction in w of size 3; this run's latents are w of size 6: "
                              f"make the file from this run with gantrain-directions")


def test_the_style_mixing_figure_is_laid_out_with_its_sources(tmp_path):
    g = _style(classes=3)
    batch = generate(g, Request(style_mix=True, rows=2, cols=3, layers="0-1", seed=12))
    rng = _rng(12)
    row_z, col_z = torch.randn(2, 6, generator=rng), torch.randn(3, 6, generator=rng)
    row_y, col_y = torch.randint(3, (2,), generator=rng), torch.randint(3, (3,), generator=rng)
    assert batch.samples.shape == ((2 + 1) * (3 + 1), 1, 8, 8) and batch.nrow == 4 and batch.labels is None
    assert torch.equal(batch.z, torch.cat([row_z, col_z]))
    figure = batch.samples.view(3, 4, 1, 8, 8)
    assert torch.equal(figure[0, 0], torch.ones(1, 8, 8))  # the blank corner
    torch.testing.assert_close(figure[0, 1:], synthesize(g, col_z, col_y))
    torch.testing.assert_close(figure[1:, 0], synthesize(g, row_z, row_y))
    torch.testing.assert_close(figure[1:, 1:], style_mix(g, row_z, col_z, [0, 1], None, row_y, col_y))
    one = generate(g, Request(style_mix=True, rows=2, cols=2, labels=1, seed=12, truncation=0.5))
    rng = _rng(12)
    row_z, col_z = torch.randn(2, 6, generator=rng), torch.randn(2, 6, generator=rng)
    torch.testing.assert_close(one.samples.view(3, 3, 1, 8, 8)[1:, 0], synthesize(g, row_z, torch.ones(2, dtype=torch.int64), 0.5))
    for request, message in ((Request(style_mix=True, labels=[1, 2]),
                              "style_mix=true takes one label for every source (labels=3), or none for random ones"),
                             (Request(style_mix=True, labels=3),
                              "label 3 is outside this run's classes 0..2; give labels between 0 and 2"),
                             (Request(style_mix=True, labels=-1),
                              "label -1 is outside this run's classes 0..2; give labels between 0 and 2")):
        with pytest.raises(GantrainError) as err:
            generate(g, request)
        assert str(err.value) == message
    with pytest.raises(GantrainError, match="label 5 is outside this run's classes 0..2"):
        generate(g, Request(style_mix=True, labels=5))
    zero = generate(g, Request(style_mix=True, rows=1, cols=1, labels=0, seed=12))  # the first class is a class
    rng = _rng(12)
    row_z = torch.randn(1, 6, generator=rng)
    torch.testing.assert_close(zero.samples[2:3], synthesize(g, row_z, torch.zeros(1, dtype=torch.int64)))
    with pytest.raises(GantrainError) as err:
        generate(_style(classes=4), Request(style_mix=True, labels=4))
    assert str(err.value) == "label 4 is outside this run's classes 0..3; give labels between 0 and 3"
    with pytest.raises(GantrainError) as err:
        generate(_style(), Request(style_mix=True, labels=1))
    assert str(err.value).startswith("labels= given, but this run's generator is unconditional")


def test_refusals_of_each_drawing_mode():
    g = _dcgan()
    with pytest.raises(GantrainError) as err:
        generate(g, Request(text=["a thick 3"]))
    assert str(err.value) == ("text= needs a text-conditioned run (condition.text_encoder); this run's generator "
                              "takes no caption: leave text out (or use labels= on a class-conditional run)")
    strip = ("a truncation strip needs a style-based run (generator=stylegan2): this run's generator has no W space; "
             "use truncation=PSI (in z) instead")
    mixing = ("style mixing needs a style-based run (generator=stylegan2): this run's generator has no layers of "
              "styles to mix")  # (truncation is no stand-in for mixing)
    for request, message in ((Request(strip=(0.0, 1.0, 3)), strip), (Request(style_mix=True), mixing),
                             (Request(strip=(0.0, 1.0, 3), style_mix=True), strip)):
        with pytest.raises(GantrainError) as err:
            generate(g, request)
        assert str(err.value) == message
    with pytest.raises(GantrainError, match="must be a number > 0"):
        generate(g, Request(truncation=0.0))


def _text_generator():
    from gantrain.nets.text import BagEncoder, TextGenerator

    torch.manual_seed(0)
    net = DCGANGenerator((1, 8, 8), latent_dim=4, base_channels=4, condition_dim=6)
    words = ["<pad>", "<unk>", "red", "blue", "big"]
    g = TextGenerator(net, BagEncoder(len(words), 8), words, 3, True, ["red big", "blue"], [])
    for m in g.net.modules():
        if hasattr(m, "scale") and isinstance(m.scale, torch.nn.Linear):
            torch.nn.init.normal_(m.scale.weight)
    return g.eval()


def test_a_text_run_draws_rows_of_prompts_or_n_samples_of_one():
    g = _text_generator()
    rows = generate(g, Request(seed=13))  # its own prompts, one row each, 8 columns with the same noise down them
    z = torch.randn(8, g.latent_dim, generator=_rng(13))
    assert rows.samples.shape == (16, 1, 8, 8) and rows.nrow == 8 and rows.labels is None
    assert torch.equal(rows.z, z.repeat(2, 1))
    with torch.no_grad():
        torch.testing.assert_close(rows.samples, g(z.repeat(2, 1), g.tokenize(["red big"] * 8 + ["blue"] * 8)))
    given = generate(g, Request(seed=13, n=3, n_given=True, text=["blue", "red"], text_rows=True, truncation=0.8))
    z = truncated_normal((3, g.latent_dim), 0.8, _rng(13))
    assert given.nrow == 3 and torch.equal(given.z, z.repeat(2, 1))
    assert given.texts == ["blue"] * 3 + ["red"] * 3  # each sample's prompt, written into an .npz
    one = generate(g, Request(seed=13, n=5, n_given=True, text=["big blue"]))
    z = torch.randn(5, g.latent_dim, generator=_rng(13))
    assert one.nrow == 3 and torch.equal(one.z, z)  # 3 + 2
    with torch.no_grad():
        torch.testing.assert_close(one.samples, g(z, g.tokenize(["big blue"] * 5)))
    assert generate(g, Request(seed=13, text=["red"])).samples.shape == (64, 1, 8, 8)  # n not given: 64 of one
    assert generate(g, Request(seed=13, n=3, n_given=True, text=["red"])).nrow == 3  # one row of 3
    many = generate(g, Request(seed=13, n=CHUNK + 3, n_given=True, text=["red big", "blue"], text_rows=True))
    z = torch.randn(CHUNK + 3, g.latent_dim, generator=_rng(13))
    assert many.samples.shape == (2 * (CHUNK + 3), 1, 8, 8)
    with torch.no_grad():  # past the first pass of CHUNK samples: the second row's last samples
        torch.testing.assert_close(many.samples[-3:], g(z[-3:], g.tokenize(["blue"] * 3)))
        torch.testing.assert_close(many.samples[CHUNK:CHUNK + 3], g(z[CHUNK:CHUNK + 3], g.tokenize(["red big"] * 3)))
    for request in (Request(labels=1), Request(per_class=True), Request(interpolate=3), Request(strip=(0.0, 1.0, 2)),
                    Request(style_mix=True), Request(direction=("d.npz", 0)), Request(latent="p.npz")):
        with pytest.raises(GantrainError) as err:
            generate(g, request)
        assert str(err.value) == ("this run is conditioned on text: draw with text=\"a thick 3\" or text_file=FILE; "
                                  "labels, per_class, interpolate, style mixing and edits are for other runs")
    with pytest.raises(GantrainError, match="must be a number > 0"):
        generate(g, Request(text=["red"], truncation=0.0))


class _Where(torch.nn.Module):
    """A generator that records the device of what it is given (its weight lives on `device`; it answers on the
    CPU), so that where generate sends the noise shows without a GPU."""

    latent_dim = 3

    def __init__(self, device: str, text: bool = False):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(1, device=device))
        self.seen: list[tuple] = []
        if text:
            self.prompts = ["a", "b"]
            self.tokenize = lambda texts: torch.zeros(len(texts), 2, dtype=torch.int64)

    def forward(self, z, tokens=None):
        self.seen.append((z.device.type, None if tokens is None else tokens.device.type))
        return torch.zeros(len(z), 1, 2, 2)


@pytest.mark.parametrize("text", [False, True])
def test_the_noise_goes_to_the_generators_device_unless_a_device_is_given(text):
    on_meta = _Where("meta", text)
    assert generate(on_meta, Request(n=2, n_given=True, seed=0)).samples.shape[0] == (4 if text else 2)
    assert set(on_meta.seen) == {("meta", "meta" if text else None)}  # no device given: the generator's own
    on_cpu = _Where("cpu", text)
    generate(on_cpu, Request(n=2, n_given=True, seed=0), device=torch.device("meta"))
    assert set(on_cpu.seen) == {("meta", "meta" if text else None)}  # the device asked for


def test_a_projected_latent_with_noise_maps_of_another_generator_is_one_line(tmp_path):
    g = _style()  # 8 px
    maps = {f"noise_{k}": np.zeros((1, 16, 16), np.float32) for k in range(len(g.synthesis.convs))}  # a 16 px run's
    np.savez(tmp_path / "other.npz", latent=np.zeros(6, np.float32), space=np.array("w"), **maps)
    with pytest.raises(GantrainError) as err:
        generate(g, Request(latent=tmp_path / "other.npz"))
    assert str(err.value) == (f"latent={tmp_path / 'other.npz'} holds the noise maps of another generator (of other "
                              f"sizes than this run's 8 px layers): project the image again with this run")
    own = {f"noise_{k}": np.zeros((1, conv.resolution, conv.resolution), np.float32)
           for k, conv in enumerate(g.synthesis.convs)}
    np.savez(tmp_path / "own.npz", latent=np.zeros(6, np.float32), space=np.array("w"), **own)
    drawn = generate(g, Request(latent=tmp_path / "own.npz"))  # zero noise maps: the synthesis without noise
    with torch.no_grad():
        torch.testing.assert_close(drawn.samples, g.synthesis(g.truncate_w(torch.zeros(1, 6)), noise_mode="none"))
