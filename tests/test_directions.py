"""Latent directions: PCA and label boundaries on planted data, the direction file's round trip, edits along a
direction (strength 0 is the sample itself) and the commands through their console scripts."""

import pytest
import torch
from PIL import Image

import gantrain
from gantrain.commands.sample import Request, generate
from gantrain.errors import GantrainError
from gantrain.eval.directions import (label_directions, linear_boundary, load_directions, pca_directions,
                                     sample_latents, save_directions)
from gantrain.nets.stylegan2 import StyleGAN2Generator
from conftest import run_command


def test_pca_finds_the_axes_of_a_stretched_cloud_in_order():
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    spreads = torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    latents = (torch.randn(20000, 6, generator=g) * spreads) @ basis.t() + 2.0
    directions, std, mean = pca_directions(latents, 3)
    assert directions.shape == (3, 6)
    torch.testing.assert_close(directions @ directions.t(), torch.eye(3), atol=1e-5, rtol=0)
    for k in range(3):  # the k-th axis, up to sign, with its spread
        assert abs(float(directions[k] @ basis[:, k])) > 0.99
        assert float(std[k]) == pytest.approx(float(spreads[k]), rel=0.03)
    assert torch.allclose(mean, torch.full((6,), 2.0), atol=0.1)


def test_pca_spreads_are_the_sample_deviations_and_k_stops_at_the_rank():
    g = torch.Generator().manual_seed(3)
    latents = torch.randn(8, 4, generator=g).double() * torch.tensor([4.0, 2.0, 1.0, 0.5]).double() + 1.5
    directions, std, mean = pca_directions(latents, 2)
    centred = latents - latents.mean(0)
    for k in range(2):  # the spread along each direction is the sample standard deviation (n - 1) of the projections
        assert float(std[k]) == pytest.approx(float((centred @ directions[k].double()).std()), rel=1e-5)
    torch.testing.assert_close(mean, latents.mean(0).float())
    wide = torch.randn(3, 8, generator=g)  # fewer latents than dimensions: at most 3 directions
    directions, std, _ = pca_directions(wide, 6)
    assert directions.shape == (3, 8) and std.shape == (3,)


def test_sampled_latents_are_z_or_its_w_in_chunks_with_labels_for_a_conditional_generator():
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    plain = torch.nn.Linear(4, 4)
    plain.latent_dim = 4
    latents, labels, space = sample_latents(plain, 5)  # the default seed is 0
    assert space == "z" and labels is None and torch.equal(latents, z)
    torch.manual_seed(0)
    G = StyleGAN2Generator((1, 8, 8), latent_dim=4, w_dim=6, mapping_layers=2, channel_base=16, channel_max=4).eval()
    latents, labels, space = sample_latents(G, 5, chunk=2)
    assert space == "w" and labels is None and latents.shape == (5, 6)
    with torch.no_grad():
        torch.testing.assert_close(latents, G.mapping(z))
    C = StyleGAN2Generator((1, 8, 8), latent_dim=4, w_dim=6, mapping_layers=2, channel_base=16, channel_max=4,
                           num_classes=3).eval()
    latents, labels, space = sample_latents(C, 5, seed=2, chunk=2)
    rng = torch.Generator().manual_seed(2)
    z2 = torch.randn(5, 4, generator=rng)
    y2 = torch.randint(3, (5,), generator=rng)
    assert torch.equal(labels, y2)
    with torch.no_grad():
        torch.testing.assert_close(latents, C.mapping(z2, y2))


class _Pixels(torch.nn.Module):
    """A stand-in generator: a 1x4x4 image whose first two pixels are z[0] and z[1]."""

    latent_dim = 3

    def forward(self, z):
        return torch.nn.functional.pad(z[:, :2], (0, 14)).view(-1, 1, 4, 4)


def _read_pixels(images):
    """The stand-in classifier's logits: class 2 when the second pixel is above 1, class 3 (rare) below -2.6, else
    class 1 when the first pixel is positive and class 0 when not."""
    first, second = images[:, 0, 0, 0], images[:, 0, 0, 1]
    read = torch.where(second > 1.0, 2, torch.where(second < -2.6, 3, (first > 0).long()))
    return torch.nn.functional.one_hot(read, 5).float()


def test_label_directions_point_from_one_class_to_the_other_along_what_the_classifier_reads():
    latents, _, _ = sample_latents(_Pixels(), 2000, seed=4)
    read = _read_pixels(_Pixels()(latents)).argmax(1)
    assert 1 <= int((read == 3).sum()) < 10 and int((read == 2).sum()) > 200  # a rare class and a common one
    directions, std, mean, names = label_directions(_Pixels(), _read_pixels, n=2000, classes=(0, 1), seed=4)
    assert names == ["0->1"] and directions.shape == (1, 3)
    assert float(directions[0, 0]) > 0.99  # from class 0 toward class 1: +z[0] ...
    assert abs(float(directions[0, 1])) < 0.1  # ... fitted on those two classes only (class 2 sits at z[1] > 1)
    assert float(std[0]) == pytest.approx(float(((latents - latents.mean(0)) @ directions[0]).std()), rel=1e-5)
    torch.testing.assert_close(mean, latents.mean(0))
    backwards, *_ = label_directions(_Pixels(), _read_pixels, n=2000, classes=(1, 0), seed=4)
    assert float(backwards[0, 0]) < -0.99
    each, _, _, names = label_directions(_Pixels(), _read_pixels, n=2000, seed=4)
    assert names == ["rest->0", "rest->1", "rest->2"]  # class 3 is read fewer than 10 times, class 4 never
    assert float(each[2, 1]) > 0.9  # toward class 2: +z[1]
    for classes in ((1, 3), (3, 1), (1, 4)):
        a, b = classes
        count = {c: int((read == c).sum()) for c in classes}
        with pytest.raises(GantrainError) as error:
            label_directions(_Pixels(), _read_pixels, n=2000, classes=classes, seed=4)
        assert str(error.value) == (f"of 2000 samples the classifier reads {count[a]} as class {a} and {count[b]} as "
                                    f"class {b}; at least 10 of each are needed: raise n=")


class _LabelledPixels(_Pixels):
    """A conditional stand-in: the label is drawn as the third pixel (read by no class, but the images need it)."""

    num_classes = 3

    def forward(self, z, labels):
        images = super().forward(z)
        images[:, 0, 0, 2] = labels.float()
        return images


def test_label_directions_of_a_conditional_generator_draw_each_latent_with_its_own_label():
    latents, labels, space = sample_latents(_LabelledPixels(), 1200, seed=5)
    assert space == "z" and labels.shape == (1200,) and set(labels.tolist()) == {0, 1, 2}
    seen = []
    generator = _LabelledPixels()
    original = generator.forward

    def recording(z, y):  # the labels each chunk of latents is drawn with
        seen.append(y.clone())
        return original(z, y)

    generator.forward = recording
    directions, *_ = label_directions(generator, _read_pixels, n=1200, classes=(0, 1), seed=5)
    assert torch.equal(torch.cat(seen), labels) and [len(y) for y in seen] == [500, 500, 200]
    assert float(directions[0, 0]) > 0.99


def test_a_label_boundary_is_the_normal_of_the_planted_one():
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(4000, 8, generator=g) * torch.linspace(0.5, 3.0, 8) + 3.0  # unequal spreads, off the origin
    normal = torch.nn.functional.normalize(torch.randn(8, generator=g), dim=0)
    found = linear_boundary(latents, (latents - 3.0) @ normal > 0.3)
    assert float(found.norm()) == pytest.approx(1.0, abs=1e-5) and float(found @ normal) > 0.97


def test_a_direction_file_round_trips_and_a_bad_one_is_one_line(tmp_path):
    d, std, mean = torch.randn(2, 5), torch.rand(2), torch.randn(5)
    save_directions(tmp_path / "d.npz", d, std, mean, "w", "pca", ["pc0", "pc1"])
    back = load_directions(tmp_path / "d.npz")
    assert torch.equal(back["directions"], d) and torch.equal(back["std"], std) and torch.equal(back["mean"], mean)
    assert back["space"] == "w" and back["method"] == "pca" and back["names"] == ["pc0", "pc1"]
    for shape, spreads in (((2, 5, 1), 2), ((5,), 5), ((2, 5), 3), ((3, 5), 2)):  # not (K, D), or std not (K,)
        save_directions(tmp_path / "odd.npz", torch.zeros(shape), torch.ones(spreads), mean, "w", "pca", ["a"])
        with pytest.raises(GantrainError, match="its arrays do not fit"):
            load_directions(tmp_path / "odd.npz")
    (tmp_path / "bad.npz").write_bytes(b"nonsense")
    with pytest.raises(GantrainError, match="not a direction file"):
        load_directions(tmp_path / "bad.npz")


def test_directions_and_edits_through_the_console_scripts(tmp_path, tiny_stylegan2_runs):
    run = tiny_stylegan2_runs["plain"]
    dirs = tmp_path / "pca.npz"
    made = run_command("gantrain-directions", str(run), "method=pca", "k=3", "n=500", f"out={dirs}", timeout=300)
    assert made.returncode == 0, made.stderr
    assert "3 direction(s) in w" in made.stdout and load_directions(dirs)["directions"].shape == (3, 8)
    assert made.stderr == ""  # k within w's size: nothing to say
    capped = run_command("gantrain-directions", str(run), "method=pca", "k=100", "n=500", f"out={tmp_path / 'all.npz'}",
                         timeout=300)
    assert capped.returncode == 0 and load_directions(tmp_path / "all.npz")["directions"].shape == (8, 8)
    assert capped.stderr == "k=100: w has 8 principal directions here (its size 8, 500 samples); all 8 are written\n"
    again = run_command("gantrain-directions", str(run), f"out={dirs}", timeout=300)
    assert again.returncode == 2 and "overwrite=true" in again.stderr  # the file is not replaced
    edit = tmp_path / "edit.png"
    proc = run_command("gantrain-sample", str(run), f"direction={dirs}:1", "strength=-2:2:5", "n=3", f"out={edit}",
                       timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(edit).size == (5 * 18 + 2, 3 * 18 + 2)  # 3 rows x 5 strengths of 16 px
    G = gantrain.load_generator(run)
    edited = generate(G, Request(n=3, n_given=True, direction=(dirs, 1), strength=(-2.0, 2.0, 5)))
    plain = generate(G, Request(n=3, n_given=True, latent=None, direction=(dirs, 1), strength=(0.0, 0.0, 1)))
    torch.testing.assert_close(edited.samples.view(3, 5, 1, 16, 16)[:, 2], plain.samples)  # strength 0
    assert not torch.allclose(edited.samples.view(3, 5, 1, 16, 16)[:, 0], plain.samples)
    bad = run_command("gantrain-sample", str(run), f"direction={dirs}:9", f"out={tmp_path / 'x.png'}", timeout=300)
    assert bad.returncode == 2 and "directions 0..2" in bad.stderr and bad.stderr.count("\n") == 1
    wrong = run_command("gantrain-directions", str(run), "method=labels", "classes=3,3", f"out={tmp_path / 'y.npz'}",
                        timeout=300)
    assert wrong.returncode == 2 and "two different classes" in wrong.stderr
    unused = run_command("gantrain-directions", str(run), "method=labels", "k=3", f"out={tmp_path / 'z.npz'}",
                         timeout=300)
    assert unused.returncode == 2 and unused.stderr == (
        "gantrain-directions: error: k= is the number of components of method=pca; method=labels finds one direction "
        "per class (or one from A toward B with classes=A,B): leave k out\n")
    assert not (tmp_path / "z.npz").exists()


def _hand_boundary(latents, positive, steps=300, lr=0.1):
    """linear_boundary by hand in float64 (numpy): latents standardised by their mean and sample deviation (floor
    1e-8), a weight and a bias from zero, `steps` full-batch Adam steps (betas 0.9 / 0.999, eps 1e-8) on the mean
    logistic loss + 1e-3 |weight|^2, the weight divided by the deviations and scaled to unit length (floor 1e-12)."""
    import numpy as np

    x, t = np.asarray(latents, np.float64), np.asarray(positive, np.float64)
    mean, scale = x.mean(0), np.maximum(x.std(0, ddof=1), 1e-8)
    xs = (x - mean) / scale
    w, b = np.zeros(x.shape[1]), 0.0
    m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0
    for k in range(1, steps + 1):
        g = (1.0 / (1.0 + np.exp(-(xs @ w + b))) - t) / len(x)  # d(mean loss)/d(logit)
        g_w, g_b = xs.T @ g + 2e-3 * w, g.sum()
        m_w, v_w = 0.9 * m_w + 0.1 * g_w, 0.999 * v_w + 0.001 * g_w ** 2
        m_b, v_b = 0.9 * m_b + 0.1 * g_b, 0.999 * v_b + 0.001 * g_b ** 2
        c1, c2 = 1 - 0.9 ** k, 1 - 0.999 ** k
        w = w - lr * (m_w / c1) / (np.sqrt(v_w / c2) + 1e-8)
        b = b - lr * (m_b / c1) / (np.sqrt(v_b / c2) + 1e-8)
    normal = w / scale
    return torch.from_numpy(normal / max(np.linalg.norm(normal), 1e-12))


def test_a_label_boundary_is_the_hand_computed_adam_fit_in_any_units():
    g = torch.Generator().manual_seed(3)
    spreads = torch.tensor([0.4, 0.7, 0.25, 0.9], dtype=torch.float64)  # below 1: the deviation's floor is 1e-8
    latents = torch.randn(40, 4, generator=g, dtype=torch.float64) * spreads + 1.5
    u = (latents - 1.5) / spreads
    positive = u[:, 0] + 0.3 * u[:, 1] > 0  # separable: the L2 term holds the weights, still growing at step 300
    expected = _hand_boundary(latents, positive)
    assert 10 <= int(positive.sum()) <= 30  # unbalanced: the bias moves
    # (the fit moves by ~1e-4 between steps 299, 300 and 301; the two computations agree to ~1e-8)
    torch.testing.assert_close(linear_boundary(latents, positive).double(), expected, atol=2e-6, rtol=0)
    # 64 times the latents: the same standardised fit, a normal 64 times shorter (norm below 1) scaled back to unit
    torch.testing.assert_close(linear_boundary(latents * 64.0, positive).double(), expected, atol=2e-6, rtol=0)
    # latents that are all the same: a zero normal (standardised to 0 / 1e-8, scaled by 1 / 1e-12), not nan
    assert torch.equal(linear_boundary(torch.ones(6, 3), torch.tensor([True, False] * 3)), torch.zeros(3))


class _RankReader:
    """A stand-in classifier for n <= 500 samples (one batch): the class of an image is set by the rank of its first
    pixel (z[0]) in the batch: `sizes[k]` consecutive ranks read as class k."""

    def __init__(self, sizes):
        self.sizes = sizes

    def __call__(self, images):
        ranks = images[:, 0, 0, 0].argsort().argsort()
        edges = torch.tensor(self.sizes).cumsum(0)
        assert int(edges[-1]) == len(images)
        return torch.nn.functional.one_hot(torch.bucketize(ranks, edges, right=True), 6).float()


def test_label_directions_fit_exactly_the_chosen_classes_and_count_them_at_the_boundary_of_ten():
    reader = _RankReader([30, 9, 10, 11, 40])  # classes 1, 2 and 3, in the middle, are read 9, 10 and 11 times
    latents, _, _ = sample_latents(_Pixels(), 100, seed=6)
    read = reader(_Pixels()(latents)).argmax(1)
    assert [int((read == c).sum()) for c in range(6)] == [30, 9, 10, 11, 40, 0]
    directions, std, mean, names = label_directions(_Pixels(), reader, n=100, classes=(2, 3), seed=6)
    chosen = (read == 2) | (read == 3)  # 10 of class 2 are enough; the fit sees classes 2 and 3 only
    assert names == ["2->3"] and float(directions[0, 0]) > 0.9  # toward the higher ranks of z[0]
    torch.testing.assert_close(directions[0], linear_boundary(latents[chosen], read[chosen] == 3), atol=0, rtol=0)
    assert label_directions(_Pixels(), reader, n=100, classes=(3, 2), seed=6)[3] == ["3->2"]
    for a, b in ((1, 2), (2, 1), (1, 3), (3, 1)):  # 9 of class 1 are not
        with pytest.raises(GantrainError) as error:
            label_directions(_Pixels(), reader, n=100, classes=(a, b), seed=6)
        counts = {1: 9, 2: 10, 3: 11}
        assert str(error.value) == (f"of 100 samples the classifier reads {counts[a]} as class {a} and {counts[b]} as "
                                    f"class {b}; at least 10 of each are needed: raise n=")
    # one direction per class read at least 10 times: class 0 (9 reads, the lowest) has none, class 1 (10) has one
    directions, std, mean, names = label_directions(_Pixels(), _RankReader([9, 10, 81]), n=100, seed=6)
    assert names == ["rest->1", "rest->2"] and float(directions[1, 0]) > 0.9


def test_label_directions_refuse_a_generator_the_classifier_reads_as_one_class():
    # every sample read as one class: no boundary to fit (a fit on one side returns a direction of rounding noise)
    for counts, shown in (([0, 100], "1: 100"), ([91, 9], "0: 91, 1: 9"), ([5, 4, 91], "0: 5, 1: 4, 2: 91")):
        with pytest.raises(GantrainError) as error:
            label_directions(_Pixels(), _RankReader(counts), n=100, seed=6)
        assert str(error.value) == (f"of 100 samples the classifier reads no class at least 10 times with at least 10 "
                                    f"others beside it (class: count {shown}); a generator that draws one class has no "
                                    f"class directions: raise n=, or use method=pca")
    # 90 and 10: each class has its 10 others, so both directions are fitted
    assert label_directions(_Pixels(), _RankReader([90, 10]), n=100, seed=6)[3] == ["rest->0", "rest->1"]


def _rare_tails(images):
    """Class 1 when the first pixel is above 2, class 0 below -2, else class 2."""
    first = images[:, 0, 0, 0]
    read = torch.where(first > 2.0, 1, torch.where(first < -2.0, 0, 2))
    return torch.nn.functional.one_hot(read, 3).float()


def test_label_directions_default_to_5000_samples_drawn_with_seed_0():
    seen = []

    def counting(images):
        seen.append(len(images))
        return _rare_tails(images)

    directions, std, mean, names = label_directions(_Pixels(), counting, classes=(0, 1))
    assert sum(seen) == 5000 and names == ["0->1"]
    latents, _, _ = sample_latents(_Pixels(), 5000, seed=0)
    torch.testing.assert_close(mean, latents.mean(0), atol=0, rtol=0)  # the latents of seed 0
    assert float(directions[0, 0]) > 0.9


def test_a_direction_file_whose_arrays_need_unpickling_is_refused_without_running_them(tmp_path):
    import os

    import numpy as np

    class _Runs:  # unpickling it calls os.makedirs(marker)
        def __init__(self, marker):
            self.marker = marker

        def __reduce__(self):
            return os.makedirs, (self.marker,)

    marker = tmp_path / "ran"
    names = np.empty(1, dtype=object)
    names[0] = _Runs(str(marker))
    np.savez(tmp_path / "evil.npz", directions=np.zeros((1, 3), np.float32), std=np.ones(1, np.float32),
             mean=np.zeros(3, np.float32), space=np.array("w"), method=np.array("pca"), names=names)
    with pytest.raises(GantrainError, match="is not a direction file of gantrain-directions"):
        load_directions(tmp_path / "evil.npz")
    assert not marker.exists()
    np.savez(tmp_path / "objects.npz", directions=np.zeros((1, 3), np.float32), std=np.ones(1, np.float32),
             mean=np.zeros(3, np.float32), space=np.array("w"), method=np.array("pca"),
             names=np.array(["pc0"], dtype=object))
    with pytest.raises(GantrainError, match="is not a direction file of gantrain-directions"):
        load_directions(tmp_path / "objects.npz")
    (tmp_path / "s1.png").write_bytes(b"\x89PNG not directions")  # another kind of file: no advice to write over it
    with pytest.raises(GantrainError) as other:
        load_directions(tmp_path / "s1.png")
    assert str(other.value) == (f"{tmp_path / 's1.png'} is not a direction file of gantrain-directions; make one with "
                                f"gantrain-directions RUN out=dirs.npz")
    with pytest.raises(GantrainError) as missing:
        load_directions(tmp_path / "3to8.npz")
    assert str(missing.value) == f"{tmp_path / '3to8.npz'} does not exist; make it with gantrain-directions RUN out=3to8.npz"


def test_a_direction_file_of_more_than_256_directions_loads(tmp_path):
    d = torch.nn.functional.normalize(torch.randn(300, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    save_directions(tmp_path / "many.npz", d, torch.ones(300), torch.zeros(4), "z", "pca", [f"pc{k}" for k in range(300)])
    back = load_directions(tmp_path / "many.npz")  # the counts compared as numbers, not as (small int) objects
    assert torch.equal(back["directions"], d) and len(back["std"]) == 300 and back["names"][-1] == "pc299"


def test_a_labelled_folder_run_has_no_label_directions_and_its_training_images_are_not_the_commands_concern(
        tmp_path, capsys):
    import numpy as np

    from gantrain.commands.directions import main as directions_main
    from gantrain.commands.project import main as project_main

    for c in ("cat", "dog"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8), 60 * i, np.uint8)).save(tmp_path / "data" / c / f"{i}.png")
    (tmp_path / "data" / "cat" / "broken.png").write_bytes(b"not a png")  # skipped in training, with a warning
    run = gantrain.train(gantrain.compose(["dataset=image_folder", f"dataset.root={tmp_path / 'data'}",
                                           "dataset.image_size=8", "dataset.channels=1", "conditional=true",
                                           "generator.base_channels=4", "discriminator.base_channels=4",
                                           "trainer.batch_size=4", "trainer.steps=1", "trainer.device=cpu",
                                           "trainer.num_workers=0", "trainer.eval_every=0"]), tmp_path / "run")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        directions_main([str(run), "method=labels", f"out={tmp_path / 'd.npz'}", "device=cpu"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err == (
        "gantrain-directions: error: method=labels reads the samples with a domain classifier, which gantrain trains "
        "for mnist, fashion_mnist and digits runs; this run's image_folder has none: use method=pca\n")
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(tmp_path / "mine.png")
    with pytest.raises(SystemExit) as stop:
        project_main([str(run), f"input={tmp_path / 'mine.png'}", f"out={tmp_path / 'p'}", "steps=1", "labels=0",
                      "device=cpu"])
    assert stop.value.code == 0
    said = capsys.readouterr()
    assert "broken.png" not in said.out + said.err and "unreadable" not in said.out + said.err
    assert (tmp_path / "p" / "mine.npz").is_file()
