"""Projection (GAN inversion): it recovers images the generator itself made, in w, w_plus and z, and
gantrain-project writes its files, skips unreadable images and refuses impossible requests in one line."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import gantrain
from gantrain.errors import GantrainError
from gantrain.eval.projection import noise_regularization, project, psnr
from gantrain.nets.control import synthesize
from gantrain.nets.dcgan import DCGANGenerator
from gantrain.nets.stylegan2 import StyleGAN2Generator

@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return StyleGAN2Generator((1, 16, 16), latent_dim=16, w_dim=16, mapping_layers=2, channel_base=256,
                              channel_max=32).eval()


def test_projection_in_w_recovers_an_image_the_generator_made(G):
    torch.manual_seed(1)
    with torch.no_grad():
        targets = synthesize(G, torch.randn(3, 16))
    found = project(G, targets, space="w", steps=150)
    start = psnr(found.start, targets)
    assert float(start.max()) < 15  # the mean w's image is far from each target
    assert float(found.psnr.min()) > 25  # and the projection reproduces them
    assert found.latents.shape == (3, 16) and len(found.noises) == len(G.synthesis.convs)
    torch.testing.assert_close(found.psnr, psnr(found.images, targets))
    for noise in found.noises:  # the noise maps are kept normalised
        assert torch.allclose(noise.mean((1, 2, 3)), torch.zeros(3), atol=1e-5)
        assert torch.allclose(noise.square().mean((1, 2, 3)), torch.ones(3), atol=1e-4)
    plus = project(G, targets, space="w_plus", steps=60)
    assert plus.latents.shape == (3, G.num_ws, 16) and float((plus.psnr - start).min()) > 5


def test_projection_in_z_works_for_any_generator():
    torch.manual_seed(2)
    dcgan = DCGANGenerator((1, 16, 16), latent_dim=8, base_channels=8, norm="none").eval()
    with torch.no_grad():
        for weight in dcgan.parameters():  # larger than DCGAN's N(0, 0.02) start, so that images differ with z
            weight.normal_(0, 0.3)
        targets = dcgan(torch.randn(2, 8))
    found = project(dcgan, targets, space="z", steps=150, lr=0.05)
    assert found.latents.shape == (2, 8) and found.noises is None
    start = psnr(found.start, targets)
    assert float(start.max()) < 20 and float(found.psnr.min()) > 30
    with pytest.raises(GantrainError, match="use space=z"):
        project(dcgan, targets, space="w")
    with pytest.raises(GantrainError, match="do not fit"):
        project(dcgan, torch.zeros(2, 3, 16, 16), space="z")


def test_noise_regularization_is_zero_for_uncorrelated_and_positive_for_smooth_noise():
    flat = torch.ones(1, 1, 16, 16)
    assert float(noise_regularization([flat])) > 1  # constant maps correlate with their shifts at every scale
    checker = (torch.arange(16).view(1, -1) + torch.arange(16).view(-1, 1)) % 2 * 2.0 - 1
    # a checkerboard anti-correlates with its one-pixel shifts at 16 px: (-1)^2 per axis, then 0 at 8 px
    assert float(noise_regularization([checker.view(1, 1, 16, 16)])) == pytest.approx(2.0)


def _folder(root, G, n=2):
    root.mkdir()
    with torch.no_grad():
        images = synthesize(G, torch.randn(n, G.latent_dim), torch.arange(n) if G.num_classes else None)
    for i, image in enumerate(images):
        array = ((image[0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        Image.fromarray(array).resize((28, 28)).save(root / f"{i}.png")
    (root / "broken.png").write_bytes(b"not an image")
    return root


def test_the_command_projects_a_folder_and_skips_what_it_cannot_read(tmp_path, tiny_stylegan2_runs, capsys):
    run = tiny_stylegan2_runs["conditional"]
    G = gantrain.load_generator(run)
    folder = _folder(tmp_path / "in", G)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gantrain.commands.project", str(run), f"input={folder}", f"out={out}",
               "steps=40", "labels=1", "perceptual=none"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr  # one file could not be read: reported, the rest done
    assert "could not read 1 of 3" in proc.stderr and "broken.png" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["0.npz", "0.png", "0_strip.png", "1.npz", "1.png", "1_strip.png"]
    saved = np.load(out / "0.npz")
    assert saved["latent"].shape == (8,) and str(saved["space"]) == "w" and int(saved["label"]) == 1
    assert Image.open(out / "0_strip.png").size == (48, 16)  # target | start | projection
    assert "PSNR" in proc.stdout and "perceptual distance: none" in proc.stdout
    from gantrain.commands.project import main

    for args, words in ((["labels=10"], "outside this run's classes 0..9"), (["space=v"], "space=v is not one of"),
                        (["perceptual=lpips"], "perceptual=lpips"), ([], "labels=K"),
                        (["labels=1", "perceptual=classifier"], "no cached domain classifier")):
        with pytest.raises(SystemExit) as stopped:  # in this process: the same main() the console script runs
            main([str(run), f"input={folder}", f"out={tmp_path / 'other'}", "steps=2", "device=cpu", *args])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and err.count("\n") == 1 and words in err, (args, err)
        assert not (tmp_path / "other").exists()
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "overwrite=true" in again.stderr  # nothing replaced without overwrite
