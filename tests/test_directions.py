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
from gantrain.eval.directions import linear_boundary, load_directions, pca_directions, save_directions


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


def test_a_label_boundary_is_the_normal_of_the_planted_one():
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(4000, 8, generator=g) * torch.linspace(0.5, 3.0, 8)  # unequal spreads
    normal = torch.nn.functional.normalize(torch.randn(8, generator=g), dim=0)
    found = linear_boundary(latents, latents @ normal > 0.3)
    assert float(found.norm()) == pytest.approx(1.0, abs=1e-5) and float(found @ normal) > 0.97


def test_a_direction_file_round_trips_and_a_bad_one_is_one_line(tmp_path):
    d, std, mean = torch.randn(2, 5), torch.rand(2), torch.randn(5)
    save_directions(tmp_path / "d.npz", d, std, mean, "w", "pca", ["pc0", "pc1"])
    back = load_directions(tmp_path / "d.npz")
    assert torch.equal(back["directions"], d) and torch.equal(back["std"], std) and torch.equal(back["mean"], mean)
    assert back["space"] == "w" and back["method"] == "pca" and back["names"] == ["pc0", "pc1"]
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
