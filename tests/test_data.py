"""Datasets, the IDX reader, batch order and the mixture metrics."""
import gzip
import math

import numpy as np
import pytest
import torch

from gantrain.data.images import MNIST, Digits, ImageFolder, read_idx
from gantrain.data.streaming import DeviceBatches, epoch_permutation
from gantrain.data.mixtures import Grid, Ring
from gantrain.data.base import normalize
from gantrain.errors import GantrainError
from gantrain.eval.metrics import mixture_metrics


def test_digits_is_uint8_8x8_and_resizes():
    d = Digits()
    x = d.tensor()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.uint8 and int(x.max()) == 255
    assert Digits(image_size=16).tensor().shape == (1797, 1, 16, 16)
    y = normalize(x[:4])
    assert y.dtype == torch.float32 and y.min() >= -1 and y.max() <= 1


def test_digits_are_scikit_learns_read_without_importing_it(monkeypatch):
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from gantrain.data import images

    bunch = load_digits()
    monkeypatch.setattr(images, "_DIGITS", None)
    digits = Digits()
    assert torch.equal(digits.labels(), torch.from_numpy(bunch.target.astype(np.int64)))
    assert torch.equal(digits.tensor()[:, 0], torch.from_numpy(np.round(bunch.images * 255 / 16).astype(np.uint8)))
    # a fresh process that loads the digits never imports scikit-learn (nor SciPy with it)
    code = ("import sys; from gantrain.data.images import Digits; d = Digits(); d.tensor(); d.labels(); "
            "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
    # where scikit-learn keeps the file elsewhere, its load_digits gives the same table
    monkeypatch.setattr(images, "_DIGITS", None)
    monkeypatch.setattr(images.Path, "is_file", lambda self: False)
    assert torch.equal(Digits().labels(), digits.labels()) and torch.equal(Digits().tensor(), digits.tensor())


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


CPU = torch.device("cpu")


def test_batches_cover_each_epoch_once_and_resume_mid_epoch():
    data = torch.arange(10).view(10, 1)
    stream = DeviceBatches(data, batch_size=3, seed=5, device=CPU)
    # 3 batches an epoch (the 10th sample is dropped), each epoch in its own order
    epochs = [stream.next(3).flatten().tolist() for _ in range(3)]
    for e, order in enumerate(epochs):
        assert order == epoch_permutation(10, 5, e)[:9].tolist() and len(set(order)) == 9
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2]
    stream2 = DeviceBatches(data, batch_size=3, seed=5, device=CPU)
    stream2.next(2)
    saved = stream2.state_dict()
    assert saved == {"epoch": 0, "pos": 6, "size": 10}
    ahead = stream2.next(4)
    resumed = DeviceBatches(data, batch_size=3, seed=5, device=CPU)
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.next(4), ahead)
    with pytest.raises(GantrainError, match="batch_size=11 is larger than the dataset"):
        DeviceBatches(data, batch_size=11, seed=0, device=CPU)


def test_epochs_are_distinct_permutations_and_resume_in_a_later_epoch():
    data = torch.arange(12).view(12, 1)
    stream = DeviceBatches(data, batch_size=3, seed=7, device=CPU)  # 4 batches an epoch, nothing dropped
    epochs = [stream.next(4).flatten().tolist() for _ in range(3)]
    for e, order in enumerate(epochs):
        assert sorted(order) == list(range(12)), f"epoch {e} is not a permutation of the data"
        assert order == epoch_permutation(12, 7, e).tolist()
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2], "epochs not reshuffled"
    assert stream.state_dict() == {"epoch": 2, "pos": 12, "size": 12}

    # stop in the middle of epoch 1 and resume: the rest of epoch 1 in its order, then epoch 2
    walked = DeviceBatches(data, batch_size=3, seed=7, device=CPU)
    walked.next(6)
    saved = walked.state_dict()
    assert saved == {"epoch": 1, "pos": 6, "size": 12}
    ahead = walked.next(4)
    assert ahead.flatten().tolist() == epochs[1][6:] + epochs[2][:6]
    fresh = DeviceBatches(data, batch_size=3, seed=7, device=CPU)
    fresh.load_state_dict(saved)
    assert torch.equal(fresh.next(4), ahead)
    # a stream that already sits in another epoch (its order of that epoch cached) resumes the same way
    reused = DeviceBatches(data, batch_size=3, seed=7, device=CPU)
    reused.next(9)
    reused.load_state_dict(saved)
    assert torch.equal(reused.next(4), ahead)
    # next() into a preallocated buffer gives the same batches
    into = DeviceBatches(data, batch_size=3, seed=7, device=CPU)
    into.load_state_dict(saved)
    out = torch.full((4, 3, 1), -1, dtype=data.dtype)
    assert into.next(4, out=out) is out and torch.equal(out, ahead)


@pytest.mark.parametrize("world", [2, 3])
def test_processes_split_every_epoch_between_them(world):
    data = torch.arange(12).view(12, 1)
    streams = [DeviceBatches(data, batch_size=2, seed=11, device=CPU, rank=r, world=world) for r in range(world)]
    per_epoch = 12 // (2 * world)
    for e in range(3):
        parts = [s.next(per_epoch).view(per_epoch, 2) for s in streams]
        # global batch g is rank 0's slice, then rank 1's, ...: together the epoch's order, each sample once
        order = [i for g in range(per_epoch) for p in parts for i in p[g].tolist()]
        assert order == epoch_permutation(12, 11, e).tolist()
    assert [s.state_dict() for s in streams] == [{"epoch": 2, "pos": 12, "size": 12}] * world
    with pytest.raises(GantrainError, match="x 3 processes is larger than the dataset"):
        DeviceBatches(data, batch_size=5, seed=0, device=CPU, rank=0, world=3)


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

    from gantrain.data.streaming import StreamedBatches

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


def test_streamed_batches_reshuffle_every_epoch_and_resume_in_a_later_epoch(tmp_path):
    from PIL import Image

    from gantrain.data.streaming import StreamedBatches

    for i in range(8):
        Image.new("L", (4, 4), 30 * i).save(tmp_path / f"{i}.png")
    folder = ImageFolder(str(tmp_path), image_size=4, channels=1)
    streamed = StreamedBatches(folder, batch_size=2, seed=4, device=CPU, num_workers=0)
    device = DeviceBatches(folder.tensor(), batch_size=2, seed=4, device=CPU)
    epochs = []
    for e in range(3):
        batches = streamed.next(4)
        assert torch.equal(batches, device.next(4))
        epochs.append(batches[:, :, 0, 0, 0].flatten().tolist())  # each image is one grey level
        assert sorted(epochs[-1]) == [30 * i for i in range(8)], f"epoch {e} is not a permutation of the images"
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2], "epochs not reshuffled"
    walked = StreamedBatches(folder, batch_size=2, seed=4, device=CPU, num_workers=0)
    rng = torch.get_rng_state()
    walked.next(5)
    saved = walked.state_dict()
    assert torch.equal(torch.get_rng_state(), rng)  # new epochs leave the training noise's generator alone
    assert saved == {"epoch": 1, "pos": 2, "size": 8}
    ahead = walked.next(5)
    assert ahead[:, :, 0, 0, 0].flatten().tolist() == epochs[1][2:] + epochs[2][:4]
    again = StreamedBatches(folder, batch_size=2, seed=4, device=CPU, num_workers=0)
    again.next(1)  # already iterating epoch 0
    again.load_state_dict(saved)
    rng = torch.get_rng_state()
    assert torch.equal(again.next(5), ahead)
    assert torch.equal(torch.get_rng_state(), rng)  # and so does a resume mid-epoch


def test_batch_size_limits_and_messages():
    data = torch.arange(12).view(12, 1)
    assert DeviceBatches(data, batch_size=12, seed=0, device=CPU).next(2).flatten().tolist() == (
        epoch_permutation(12, 0, 0).tolist() + epoch_permutation(12, 0, 1).tolist())  # one batch an epoch
    DeviceBatches(data, batch_size=6, seed=0, device=CPU, rank=1, world=2)  # exactly the dataset: allowed
    with pytest.raises(GantrainError) as one:
        DeviceBatches(data, batch_size=13, seed=0, device=CPU)
    assert str(one.value) == ("trainer.batch_size=13 is larger than the dataset (12 samples); lower trainer.batch_size")
    with pytest.raises(GantrainError) as two:
        DeviceBatches(data, batch_size=7, seed=0, device=CPU, rank=0, world=2)
    assert "trainer.batch_size=7 x 2 processes is larger than the dataset (12 samples)" in str(two.value)


def test_streamed_batches_into_a_buffer_and_across_processes(tmp_path):
    from PIL import Image

    from gantrain.data.streaming import StreamedBatches

    for i in range(12):
        Image.new("L", (4, 4), 20 * i).save(tmp_path / f"{i:02d}.png")
    folder = ImageFolder(str(tmp_path), image_size=4, channels=1)
    device = [DeviceBatches(folder.tensor(), batch_size=2, seed=9, device=CPU, rank=r, world=3) for r in range(3)]
    streamed = [StreamedBatches(folder, batch_size=2, seed=9, device=CPU, num_workers=0, rank=r, world=3)
                for r in range(3)]
    for d, s in zip(device, streamed):  # 2 global batches of 6 an epoch; 5 batches cross two epoch ends
        out = torch.zeros(5, 2, 1, 4, 4, dtype=torch.uint8)
        assert s.next(5, out=out) is out
        assert torch.equal(out, d.next(5))
        assert s.state_dict() == d.state_dict() == {"epoch": 2, "pos": 6, "size": 12}


def test_mixture_metrics_ignore_non_finite_samples_but_count_them():
    ring = Ring()
    good = ring.means.repeat(3, 1)  # 24 samples, 3 on each mode
    bad = torch.tensor([[float("nan"), 0.0], [float("inf"), 1.0], [0.0, -float("inf")], [float("nan")] * 2])
    m = mixture_metrics(torch.cat([good, bad]), ring.means, ring.std)
    assert m["modes"] == 8
    assert m["high_quality_pct"] == pytest.approx(100 * 24 / 28)  # non-finite samples count as low quality
    assert m["reverse_kl"] == pytest.approx(0.0, abs=1e-12)  # the finite ones spread evenly
    nothing = mixture_metrics(bad, ring.means, ring.std)
    assert nothing == {"modes": 0.0, "high_quality_pct": 0.0, "reverse_kl": math.inf}
    two = mixture_metrics(torch.cat([ring.means[:2].repeat(5, 1), ring.means[:2] + 4 * ring.std]), ring.means, ring.std)
    # 12 samples on 2 modes, 2 of them 4 std off in x and y (low quality, still nearest their mode): KL = log(8 / 2)
    assert two["modes"] == 2 and two["high_quality_pct"] == pytest.approx(100 * 10 / 12)
    assert two["reverse_kl"] == pytest.approx(math.log(4), rel=1e-9)


def test_mixture_metrics_edges_one_sample_and_none():
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    # exactly 3 std from a mode counts as high quality; one such sample captures its mode
    one = mixture_metrics(torch.tensor([[1.5, 0.0]]), means, std=0.5)
    assert one == {"modes": 1.0, "high_quality_pct": 100.0, "reverse_kl": pytest.approx(math.log(3), rel=1e-9)}
    just_out = mixture_metrics(torch.tensor([[1.5, 0.0], [10.0, 1.75]]), means, std=0.5)
    assert just_out == {"modes": 1.0, "high_quality_pct": 50.0, "reverse_kl": pytest.approx(math.log(3 / 2), rel=1e-9)}
    assert mixture_metrics(torch.zeros(0, 2), means, std=0.5) == {"modes": 0.0, "high_quality_pct": 0.0,
                                                                    "reverse_kl": math.inf}


def test_streamed_batches_drop_the_remainder_like_the_device_stream(tmp_path):
    from PIL import Image

    from gantrain.data.streaming import StreamedBatches

    for i in range(7):
        Image.new("L", (4, 4), 30 * i).save(tmp_path / f"{i}.png")
    folder = ImageFolder(str(tmp_path), image_size=4, channels=1)
    streamed = StreamedBatches(folder, batch_size=3, seed=2, device=CPU, num_workers=0)  # 2 batches, 1 dropped
    device = DeviceBatches(folder.tensor(), batch_size=3, seed=2, device=CPU)
    for expected_state in ({"epoch": 0, "pos": 3, "size": 7}, {"epoch": 0, "pos": 6, "size": 7}, {"epoch": 1, "pos": 3, "size": 7},
                           {"epoch": 1, "pos": 6, "size": 7}, {"epoch": 2, "pos": 3, "size": 7}):
        assert torch.equal(streamed.next(1), device.next(1))
        assert streamed.state_dict() == device.state_dict() == expected_state


def test_epoch_order_is_the_one_0_1_0_used():
    """Runs written by 0.1.0 resume mid-epoch with the same data order: the (seed, epoch) -> order map is fixed."""
    for n, seed, epoch in [(10, 5, 0), (10, 5, 1), (100, 0, 3), (7, 2**31 - 1, 12), (50, 123456789, 0)]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        assert torch.equal(epoch_permutation(n, seed, epoch), torch.randperm(n, generator=generator))


def test_resume_into_a_used_stream_in_epoch_0_and_batch_spec():
    data = torch.arange(12 * 3 * 2 * 2, dtype=torch.uint8).view(12, 3, 2, 2)  # colour images
    walked = DeviceBatches(data, batch_size=3, seed=6, device=CPU)
    assert walked.batch_spec() == ((3, 3, 2, 2), torch.uint8)
    walked.next(2)
    saved = walked.state_dict()
    assert saved == {"epoch": 0, "pos": 6, "size": 12}
    other = DeviceBatches(data[:9], batch_size=3, seed=6, device=CPU)  # the data changed size since the save
    with pytest.raises(GantrainError) as err:
        other.load_state_dict(saved)
    assert str(err.value) == ("the run trained on 12 samples, but its dataset now has 9: resume with the data it "
                              "trained on (check dataset.root: runs before gantrain 0.13.0 saved a relative one, read from the current folder)")
    other.load_state_dict({"epoch": 0, "pos": 6})  # a checkpoint before the size was saved: not checked
    ahead = walked.next(3)
    reused = DeviceBatches(data, batch_size=3, seed=6, device=CPU)
    reused.next(9)  # now in epoch 2, its order cached
    reused.load_state_dict(saved)
    out = torch.zeros(3, 3, 3, 2, 2, dtype=torch.uint8)
    assert reused.next(3, out=out) is out and torch.equal(out, ahead)
    order = epoch_permutation(12, 6, 0).tolist()[6:] + epoch_permutation(12, 6, 1).tolist()[:3]
    assert torch.equal(ahead.view(9, 3, 2, 2), data[order])


def test_streamed_batch_spec(tmp_path):
    from PIL import Image

    from gantrain.data.streaming import StreamedBatches

    for i in range(4):
        Image.new("RGB", (6, 6), (10 * i, 0, 0)).save(tmp_path / f"{i}.png")
    folder = ImageFolder(str(tmp_path), image_size=4)
    streamed = StreamedBatches(folder, batch_size=2, seed=0, device=CPU, num_workers=0)
    assert streamed.batch_spec() == ((2, 3, 4, 4), torch.uint8)
    assert streamed.next(1).shape == (1, 2, 3, 4, 4)


@pytest.mark.parametrize("label_shape", [(), (2, 3)])
def test_labelled_batches_pair_each_sample_with_its_own_label_with_and_without_a_buffer(tmp_path, label_shape):
    # a class per sample (conditional runs) or (K, L) token ids of K captions (text runs), on the device and
    # streamed, in two processes, k batches at once, returned or written into the buffers `empty` made
    from PIL import Image

    from gantrain.data.streaming import StreamedBatches

    for i in range(12):
        (tmp_path / f"class{i % 3}").mkdir(exist_ok=True)
        Image.new("L", (4, 4), 20 * i).save(tmp_path / f"class{i % 3}" / f"{i:02d}.png")
    folder = ImageFolder(str(tmp_path), image_size=4, channels=1)
    images = folder.tensor()
    sample_of = {int(images[j, 0, 0, 0]): j for j in range(len(images))}  # each image is one grey level
    if label_shape:  # labels in place of the classes: token ids that name their sample
        labels = 1000 * torch.arange(len(images)).view(-1, 1, 1) + torch.arange(6).view(1, 2, 3)
        given = {"labels": labels}
    else:  # the folder's classes, read by the stream itself when streamed
        labels = folder.labels()
        assert sorted(set(labels.tolist())) == [0, 1, 2]
        given = {"labelled": True}
    for world in (1, 2):
        for rank in range(world):
            def streams():
                return [DeviceBatches(images, batch_size=2, seed=5, device=CPU, rank=rank, world=world, labels=labels),
                        StreamedBatches(folder, batch_size=2, seed=5, device=CPU, num_workers=0, rank=rank, world=world,
                                        **given)]

            plain, into = streams(), streams()
            for stream in plain + into:
                assert stream.labelled is True and stream.label_shape == label_shape
            for a, b in zip(plain, into):
                for k in (3, 1, 4):  # across an epoch's end (3 global batches an epoch in two processes)
                    samples, got = a.next(k)
                    assert samples.shape == (k, 2, 1, 4, 4) and got.shape == (k, 2, *label_shape) and got.dtype == torch.int64
                    index = torch.tensor([sample_of[int(v)] for v in samples[:, :, 0, 0, 0].flatten()])
                    assert torch.equal(got.flatten(0, 1), labels[index])  # every sample with its own label
                    buffers = b.empty(k, CPU)
                    assert buffers[1].shape == (k, 2, *label_shape) and buffers[1].dtype == torch.int64
                    written = b.next(k, out=buffers)
                    assert written is buffers or all(w is o for w, o in zip(written, buffers))
                    assert torch.equal(buffers[0], samples) and torch.equal(buffers[1], got)
    unlabelled = StreamedBatches(folder, batch_size=2, seed=5, device=CPU, num_workers=0)
    assert unlabelled.labelled is False and unlabelled.labels is None and unlabelled.label_shape == ()
    assert unlabelled.next(2).shape == (2, 2, 1, 4, 4)


def test_a_photo_with_an_orientation_tag_is_read_upright(tmp_path):
    # a phone's photo: the pixels stored landscape, the EXIF tag saying "rotate 90 degrees clockwise to view"
    from PIL import Image

    from gantrain.commands.translate import read_image

    stored = np.zeros((16, 32, 3), dtype=np.uint8)
    stored[:, :16] = 255  # the stored left half is white: upright, the top half
    photo = Image.fromarray(stored)
    exif = photo.getexif()
    exif[0x0112] = 6
    (tmp_path / "photos").mkdir()
    photo.save(tmp_path / "photos" / "p.png", exif=exif)
    rows = ImageFolder(str(tmp_path / "photos"), image_size=8).item(0)[0].float().mean(1)
    assert rows[:3].min() == 255 and rows[-3:].max() == 0, rows
    picture, size = read_image(tmp_path / "photos" / "p.png", 3)
    assert size == (16, 32) and picture.size == (16, 32)
