"""Datasets, the IDX reader, batch order and the mixture metrics."""
import gzip
import math

import numpy as np
import pytest
import torch

from gantrain.data import MNIST, DeviceBatches, Digits, Grid, ImageFolder, Ring, epoch_permutation, normalize, read_idx
from gantrain.errors import GantrainError
from gantrain.metrics import mixture_metrics


def test_digits_is_uint8_8x8_and_resizes():
    d = Digits()
    x = d.tensor()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.uint8 and int(x.max()) == 255
    assert Digits(image_size=16).tensor().shape == (1797, 1, 16, 16)
    y = normalize(x[:4])
    assert y.dtype == torch.float32 and y.min() >= -1 and y.max() <= 1


def test_read_idx_gz_and_truncation(tmp_path):
    body = np.arange(2 * 3 * 4, dtype=np.uint8)
    header = bytes([0, 0, 8, 3]) + b"".join(int(n).to_bytes(4, "big") for n in (2, 3, 4))
    with gzip.open(tmp_path / "x.gz", "wb") as f:
        f.write(header + body.tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), body.reshape(2, 3, 4))
    (tmp_path / "y").write_bytes(header + body.tobytes()[:-1])
    with pytest.raises(GantrainError, match="truncated"):
        read_idx(tmp_path / "y")


def test_real_mnist_from_read_only_layout(data_root):
    ds = MNIST(root=str(data_root), download=False)
    x = ds.tensor()
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.uint8
    assert float(x.float().mean()) == pytest.approx(33.32, abs=0.01)  # the figure of shared/data/README.md
    counts = torch.bincount(ds.labels(), minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert MNIST(root=str(data_root), image_size=32, download=False).tensor().shape == (60000, 1, 32, 32)


def test_missing_dataset_offline_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(GantrainError, match="not found in .*download=true"):
        MNIST(root=str(tmp_path), download=False).tensor()

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    import torchvision

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(GantrainError, match="could not download MNIST .*offline"):
        MNIST(root=str(tmp_path), download=True).tensor()


def test_image_folder_resizes_and_crops(tmp_path):
    from PIL import Image

    (tmp_path / "sub").mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("RGB", (30, 50), (0, 0, 255)).save(tmp_path / "sub" / "b.jpg")
    ds = ImageFolder(str(tmp_path), image_size=16)
    assert len(ds) == 2 and ds.item(0).shape == (3, 16, 16)
    assert ds.item(0)[0].float().mean() > 250  # red channel of the red image
    with pytest.raises(GantrainError, match="channels=2 must be 1"):
        ImageFolder(str(tmp_path), image_size=16, channels=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GantrainError, match="no images"):
        ImageFolder(str(tmp_path / "empty"), image_size=16)


def test_batches_cover_each_epoch_once_and_resume_mid_epoch():
    data = torch.arange(10).view(10, 1)
    stream = DeviceBatches(data, batch_size=3, seed=5, device=torch.device("cpu"))
    epoch0 = stream.next(3).flatten().tolist()
    assert sorted(epoch0) == sorted(epoch_permutation(10, 5, 0)[:9].tolist()) and len(set(epoch0)) == 9
    stream2 = DeviceBatches(data, batch_size=3, seed=5, device=torch.device("cpu"))
    stream2.next(2)
    saved = stream2.state_dict()
    ahead = stream2.next(4)
    resumed = DeviceBatches(data, batch_size=3, seed=5, device=torch.device("cpu"))
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.next(4), ahead)
    with pytest.raises(GantrainError, match="batch_size=11 is larger than the dataset"):
        DeviceBatches(data, batch_size=11, seed=0, device=torch.device("cpu"))


def test_mixture_metrics_on_the_mixture_itself():
    grid = Grid()
    samples = grid.sample(2500, torch.Generator().manual_seed(0))
    m = mixture_metrics(samples, grid.means, grid.std)
    assert m["modes"] == 25
    expected = 100 * (1 - math.exp(-4.5))  # mass of a 2D Gaussian within 3 std: 98.89%
    assert m["high_quality_pct"] == pytest.approx(expected, abs=0.8)
    assert m["reverse_kl"] < 0.02
    ring = Ring()
    assert mixture_metrics(ring.sample(2500, torch.Generator().manual_seed(1)), ring.means, ring.std)["modes"] == 8


def test_mixture_metrics_on_collapsed_and_shifted_samples():
    ring = Ring()
    one_mode = ring.means[3] + ring.std * torch.randn(2500, 2, generator=torch.Generator().manual_seed(2))
    m = mixture_metrics(one_mode, ring.means, ring.std)
    assert m["modes"] == 1
    assert m["reverse_kl"] == pytest.approx(math.log(8), rel=1e-3)
    far = torch.full((100, 2), 10.0)
    assert mixture_metrics(far, ring.means, ring.std) == pytest.approx({"modes": 0.0, "high_quality_pct": 0.0, "reverse_kl": math.log(8)})


@pytest.mark.parametrize("rank", [0, 1])
def test_streamed_batches_follow_the_device_order_and_resume(tmp_path, rank):
    from PIL import Image

    from gantrain.data import StreamedBatches

    for i in range(10):
        Image.new("L", (8, 8), 20 * i).save(tmp_path / f"{i}.png")
    folder = ImageFolder(str(tmp_path), image_size=8, channels=1)
    cpu = torch.device("cpu")
    device = DeviceBatches(folder.tensor(), batch_size=2, seed=3, device=cpu, rank=rank, world=2)
    streamed = StreamedBatches(folder, batch_size=2, seed=3, device=cpu, num_workers=0, rank=rank, world=2)
    assert torch.equal(streamed.next(5), device.next(5))  # crosses the epoch boundary (2 global batches an epoch)
    saved = streamed.state_dict()
    ahead = streamed.next(3)
    again = StreamedBatches(folder, batch_size=2, seed=3, device=cpu, num_workers=0, rank=rank, world=2)
    again.load_state_dict(saved)
    assert torch.equal(again.next(3), ahead)
