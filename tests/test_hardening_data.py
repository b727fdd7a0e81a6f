"""Every data value a user can get wrong ends in one clear line: bad image files, mistyped dataset values, sample(n)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_gantrain
from gantrain.data.images import CIFAR10, MNIST, Digits, ImageFolder
from gantrain.data.mixtures import Grid, Ring
from gantrain.errors import GantrainError
from gantrain.nets.dcgan import DCGANGenerator
from gantrain.nets.mlp import MLPGenerator

# The smallest settings that still train a DCGAN end to end: a few seconds a run on a CPU.
TINY = ["trainer.steps=2", "trainer.device=cpu", "generator.base_channels=4", "discriminator.base_channels=4",
        "trainer.batch_size=4", "trainer.num_workers=0", "trainer.log_every=1"]


def _save_images(folder: Path, count: int, size: tuple[int, int] = (12, 10)) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")


@pytest.fixture
def folder_with_bad_image(tmp_path: Path) -> Path:
    """Eight good PNGs and bad.png, which is 600 random bytes."""
    folder = tmp_path / "images"
    folder.mkdir()
    _save_images(folder, 8)
    (folder / "bad.png").write_bytes(np.random.default_rng(1).integers(0, 256, 600, dtype=np.uint8).tobytes())
    return folder


def _one_error_line(result) -> str:
    """The single line a refused command prints on stderr; fails when there is a traceback or more lines."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gantrain: error: "), result.stderr
    return lines[0]


# ---- bad image files, through the real command --------------------------------------------------------------


@pytest.mark.parametrize("on_device", ["false", "true"])
def test_training_skips_an_unreadable_image_with_one_warning(folder_with_bad_image, tmp_path, on_device):
    run = tmp_path / "run"
    result = run_gantrain("dataset=image_folder", f"dataset.root={folder_with_bad_image}", "dataset.image_size=16",
                          f"dataset.on_device={on_device}", *TINY, f"hydra.run.dir={run}", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    output = (result.stdout + result.stderr).splitlines()
    warnings = [line for line in output if "unreadable" in line]
    assert len(warnings) == 1, output
    assert "WARNING" in warnings[0] and "skipped 1 unreadable image(s) of 9" in warnings[0] and "bad.png" in warnings[0]
    assert any("data: image_folder (8 samples" in line for line in output), output  # the 8 good images train
    assert (run / "checkpoints" / "last.pt").is_file()


def test_unreadable_image_is_an_error_when_not_skipped(folder_with_bad_image, tmp_path):
    result = run_gantrain("dataset=image_folder", f"dataset.root={folder_with_bad_image}", "dataset.image_size=16",
                          "dataset.skip_bad_images=false", *TINY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                          timeout=300)
    line = _one_error_line(result)
    assert "1 of 9 images" in line and "bad.png" in line and "dataset.skip_bad_images=true" in line
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


# ---- mistyped dataset values, through the real command -----------------------------------------------------


@pytest.mark.parametrize("value", ["16.5", "[32,16]"])
def test_image_size_that_is_not_a_whole_number_is_one_line(tmp_path, value):
    result = run_gantrain("dataset=digits", f"dataset.image_size={value}", *TINY, f"hydra.run.dir={tmp_path / 'run'}",
                          cwd=tmp_path, timeout=300)
    line = _one_error_line(result)
    assert "dataset.image_size=" in line and "whole number" in line


# ---- the image folder's check of its files ------------------------------------------------------------------


def test_image_folder_skips_each_kind_of_bad_file_and_logs_once(folder_with_bad_image, caplog):
    from PIL import Image

    folder = folder_with_bad_image
    good_jpeg = folder / "photo.jpg"
    Image.new("RGB", (40, 30), (200, 50, 10)).save(good_jpeg, quality=90)
    whole = good_jpeg.read_bytes()
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # a download that stopped half-way
    (folder / "trailer.jpg").write_bytes(whole + b"camera maker notes")  # bytes after the image: still readable
    png = (folder / "00.png").read_bytes()
    (folder / "cut.png").write_bytes(png[: len(png) - 30])
    (folder / "empty.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="gantrain"):
        ds = ImageFolder(str(folder), image_size=8)
    kept = sorted(f.name for f in ds.files)
    assert kept == [f"{i:02d}.png" for i in range(8)] + ["photo.jpg", "trailer.jpg"]
    assert len(ds) == 10 and ds.tensor().shape == (10, 3, 8, 8)
    records = [r for r in caplog.records if r.name == "gantrain"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert "skipped 4 unreadable image(s) of 14" in message and "\n" not in message
    for name in ("bad.png", "cut.jpg", "cut.png", "empty.png"):
        assert name in message
    assert "empty.png (UnidentifiedImageError" in message and "cut.png (" in message  # each with its own reason
    assert "cut.png (UnidentifiedImageError" not in message
    (folder / "gone.png").symlink_to(folder / "nothing.png")  # a link whose file went away
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gantrain"):
        ImageFolder(str(folder), image_size=8)
    assert "gone.png (a link to a file that does not exist)" in caplog.records[-1].getMessage()


def test_image_folder_names_at_most_five_files_and_counts_the_rest(tmp_path):
    _save_images(tmp_path, 3)
    for i in range(7):
        (tmp_path / f"broken{i}.png").write_bytes(b"not an image")
    with pytest.raises(GantrainError) as refused:
        ImageFolder(str(tmp_path), image_size=8, skip_bad_images=False)
    message = str(refused.value)
    assert message.startswith("7 of 10 images below") and "and 2 more" in message and "\n" not in message
    assert "broken4.png" in message and "broken5.png" not in message


def test_image_folder_with_only_unreadable_files_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a PNG signature and nothing usable
    (tmp_path / "b.jpg").write_bytes(b"JFIF? no: plain text saved with an image name")
    for skip in (True, False):
        with pytest.raises(GantrainError, match=r"none of the 2 images below .* can be read: a.png, b.jpg \(UnidentifiedImageError.*point dataset.root"):
            ImageFolder(str(tmp_path), image_size=8, skip_bad_images=skip)


def test_image_folder_without_bad_files_logs_nothing(tmp_path, caplog):
    _save_images(tmp_path, 4)
    with caplog.at_level(logging.WARNING, logger="gantrain"):
        ds = ImageFolder(str(tmp_path), image_size=8, channels=1)
    assert len(ds) == 4 and ds.item(0).shape == (1, 8, 8)
    assert not [r for r in caplog.records if r.name == "gantrain"]


# ---- dataset values: refused in one line that names the key and what is valid -------------------------------


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda: Digits(image_size=16.5),
         "dataset.image_size=16.5 must be a whole number >= 4; e.g. dataset.image_size=32"),
        (lambda: Digits(image_size=[32, 16]), "dataset.image_size=[32, 16] must be a whole number >= 4"),
        (lambda: Digits(image_size=True), "dataset.image_size=true must be a whole number >= 4"),
        (lambda: Digits(image_size="16"), "dataset.image_size='16' must be a whole number >= 4"),
        (lambda: Digits(image_size=2), "dataset.image_size=2 must be a whole number >= 4"),
        (lambda: Digits(on_device="yes"), "dataset.on_device='yes' must be auto, true"),
        (lambda: Digits(on_device=1), "dataset.on_device=1 must be auto, true"),
        (lambda: Ring(num_modes=2.5), "dataset.num_modes=2.5 must be a whole number >= 1; e.g. dataset.num_modes=8"),
        (lambda: Ring(num_modes=0), "dataset.num_modes=0 must be a whole number >= 1"),
        (lambda: Ring(radius="1"), "dataset.radius='1' must be a positive number; e.g. dataset.radius=1.0"),
        (lambda: Ring(std=0), "dataset.std=0 must be a positive number; e.g. dataset.std=0.01"),
        (lambda: Ring(std=float("nan")), "dataset.std=nan must be a positive number"),
        (lambda: Ring(std=[0.1]), "dataset.std=[0.1] must be a positive number"),
        (lambda: Ring(num_samples=1e5), "dataset.num_samples=100000.0 must be a whole number >= 1"),
        (lambda: Grid(side=True), "dataset.side=true must be a whole number >= 1; e.g. dataset.side=5"),
        (lambda: Grid(spacing=None), "dataset.spacing=null must be a positive number; e.g. dataset.spacing=2.0"),
        (lambda: Grid(spacing=float("inf")), "dataset.spacing=inf must be a positive number"),
        (lambda: MNIST(root="data", download="no"), "dataset.download='no' must be true or false"),
        (lambda: CIFAR10(root="data", on_device="gpu"), "dataset.on_device='gpu' must be auto, true"),
    ],
)
def test_mistyped_dataset_values_are_refused_in_one_line(build, expected):
    with pytest.raises(GantrainError) as refused:
        build()
    assert str(refused.value).startswith(expected)
    assert "\n" not in str(refused.value)


def test_image_folder_values_are_refused_before_its_files_are_read(tmp_path):
    _save_images(tmp_path, 2)
    for kwargs, expected in [
        ({"channels": 1.0}, "dataset.channels=1.0 must be 1 (grey) or 3 (RGB)"),
        ({"channels": True}, "dataset.channels=true must be 1 (grey) or 3 (RGB)"),
        ({"image_size": 16.5}, "dataset.image_size=16.5 must be a whole number"),
        ({"skip_bad_images": "false"}, "dataset.skip_bad_images='false' must be true or false"),
        ({"on_device": "maybe"}, "dataset.on_device='maybe' must be auto, true"),
    ]:
        with pytest.raises(GantrainError) as refused:
            ImageFolder(str(tmp_path), **kwargs)
        assert str(refused.value).startswith(expected), kwargs


def test_valid_dataset_values_still_build():
    assert Digits(image_size=np.int64(16)).shape == (1, 16, 16)  # numpy integers are whole numbers
    assert Digits(on_device=True).on_device == "true" and Digits(on_device="AUTO").on_device == "auto"
    ring = Ring(num_modes=4, radius=2, std=1, num_samples=10)  # ints are numbers
    assert ring.means.shape == (4, 2) and float(ring.means.norm(dim=1).max()) == pytest.approx(2.0)
    assert ring.std == 1.0 and len(ring.tensor()) == 10
    grid = Grid(side=3, spacing=np.float32(1.5), num_samples=9)
    assert grid.means.shape == (9, 2) and float(grid.means.max()) == pytest.approx(1.5)


# ---- Generator.sample(n) -------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, shape", [
    (lambda: DCGANGenerator((3, 16, 16), latent_dim=8, base_channels=4), (3, 16, 16)),
    (lambda: MLPGenerator((2,), bounded=False, latent_dim=3, hidden=[8]), (2,)),
])
def test_sample_zero_is_an_empty_batch_of_the_right_shape(make, shape):
    g = make()
    empty = g.sample(0)
    assert empty.shape == (0, *shape) and empty.dtype == torch.float32
    assert g.sample(0, generator=torch.Generator().manual_seed(0)).shape == (0, *shape)
    assert g.sample(np.int64(2)).shape == (2, *shape) and g.sample(torch.tensor(3)).shape == (3, *shape)


@pytest.mark.parametrize("n", [-1, 2.5, 2.0, True, "4", None, torch.tensor([1, 2]), torch.tensor(2.0)])
def test_sample_refuses_a_count_that_is_not_a_whole_number(n):
    g = MLPGenerator((2,), bounded=False, latent_dim=3, hidden=[8])
    with pytest.raises(GantrainError) as refused:
        g.sample(n)
    message = str(refused.value)
    assert "n must be a whole number >= 0" in message and "\n" not in message
