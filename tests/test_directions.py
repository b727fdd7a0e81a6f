"""Latent directions: PCA and label boundaries on planted data, the direction file's round trip, edits along a
direction (strength 0 is the sample itself) and the commands through their console scripts."""
import subprocess
import sys

import pytest
import torch
from PIL import Image

import gantrain
from gantrain.commands.sample import Request, generate
from gantrain.errors import GantrainError
from gantrain.eval.directions import (label_directions, linear_boundary, load_directions, pca_directions,
                                     sample_latents, save_directions)
from gantrain.nets.stylegan2 import StyleGAN2Generator


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
    made = subprocess.run([sys.executable, "-m", "gantrain.commands.directions", str(run), "method=pca", "k=3", "n=500",
                           f"out={dirs}"], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    assert "3 direction(s) in w" in made.stdout and load_directions(dirs)["directions"].shape == (3, 8)
    again = subprocess.run([sys.executable, "-m", "gantrain.commands.directions", str(run), f"out={dirs}"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "overwrite=true" in again.stderr  # the file is not replaced
    edit = tmp_path / "edit.png"
    proc = subprocess.run([sys.executable, "-m", "gantrain.commands.sample", str(run), f"direction={dirs}:1",
                           "strength=-2:2:5", "n=3", f"out={edit}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(edit).size == (5 * 18 + 2, 3 * 18 + 2)  # 3 rows x 5 strengths of 16 px
    G = gantrain.load_generator(run)
    edited = generate(G, Request(n=3, n_given=True, direction=(dirs, 1), strength=(-2.0, 2.0, 5)))
    plain = generate(G, Request(n=3, n_given=True, latent=None, direction=(dirs, 1), strength=(0.0, 0.0, 1)))
    torch.testing.assert_close(edited.samples.view(3, 5, 1, 16, 16)[:, 2], plain.samples)  # strength 0
    assert not torch.allclose(edited.samples.view(3, 5, 1, 16, 16)[:, 0], plain.samples)
    bad = subprocess.run([sys.executable, "-m", "gantrain.commands.sample", str(run), f"direction={dirs}:9",
                          f"out={tmp_path / 'x.png'}"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "directions 0..2" in bad.stderr and bad.stderr.count("\n") == 1
    wrong = subprocess.run([sys.executable, "-m", "gantrain.commands.directions", str(run), "method=labels",
                            "classes=3,3", f"out={tmp_path / 'y.npz'}"], capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "two different classes" in wrong.stderr
