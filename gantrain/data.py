"""Datasets and the batch streams that feed the trainer. Data modules know nothing of models.

A dataset gives `shape` ((C, H, W) for images, (2,) for points), `kind` ('image' | 'points') and
either `tensor()` (the whole set on the CPU: images uint8, points float32) or, for streamed image
folders, `item(i)`. Batches leave the stream "raw" (uint8 images) and `normalize` maps them to the
model's data space: images to [-1, 1] float, points unchanged.

Labelled datasets also give `num_classes` and `labels()` (int64, aligned with the samples); a
conditional run's batches are then (samples, labels) pairs.
"""
from __future__ import annotations

import gzip
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import GantrainError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class Dataset:
    """Base of every dataset."""

    kind = "image"
    name = "dataset"
    on_device: str | bool = "auto"
    shape: tuple[int, ...]
    #: classes of a labelled dataset (labels() gives one per sample); None when unlabelled
    num_classes: Optional[int] = None

    def labels(self) -> Tensor:
        """The class of every sample (int64, aligned with tensor() / item())."""
        raise GantrainError(f"{self.name} has no labels")

    def __len__(self) -> int:
        raise NotImplementedError

    def tensor(self) -> Tensor:
        """The whole dataset on the CPU: uint8 (N, C, H, W) images or float32 (N, 2) points."""
        raise NotImplementedError

    @property
    def streamed(self) -> bool:
        return False

    def describe(self) -> str:
        return f"{self.name} ({len(self)} samples of shape {tuple(self.shape)})"


def normalize(raw: Tensor) -> Tensor:
    """Raw batch to data space: uint8 images to float in [-1, 1]; float data unchanged."""
    if raw.dtype == torch.uint8:
        return raw.float().mul_(1.0 / 127.5).sub_(1.0)
    return raw


def to_uint8_image(x: Tensor) -> Tensor:
    """Data-space images in [-1, 1] back to uint8 in [0, 255]."""
    return ((x.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


def _resize_uint8(images: Tensor, size: int, chunk: int = 4096) -> Tensor:
    """Resize a uint8 (N, C, H, W) batch to size x size, bilinear with antialiasing."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for part in images.split(chunk):
        resized = F.interpolate(part.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(resized.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def _shown(value: object) -> str:
    """A value as the user would have typed it on the command line (true, [32, 16], 16.5), kept to one line."""
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    text = " ".join(str(value).split())
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"'{text}'" if isinstance(value, str) else text  # quoted: '16' is a string, not the number 16


def _whole(value: object, key: str, minimum: int, example: int) -> int:
    """A count the user set (dataset.<key>): an int >= minimum; 16.5, true or [32, 16] are refused, not rounded."""
    # bool is an int subclass and a float would be truncated by int(): both hide a typo, so neither passes
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise GantrainError(
            f"dataset.{key}={_shown(value)} must be a whole number >= {minimum}; e.g. dataset.{key}={example}"
        )
    return int(value)


def _positive(value: object, key: str, example: float) -> float:
    """A length the user set (dataset.<key>): a finite number > 0; a string, bool, nan or inf is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise GantrainError(f"dataset.{key}={_shown(value)} must be a positive number; e.g. dataset.{key}={example}")
    return float(value)


def _flag(value: object, key: str) -> bool:
    """A switch the user set (dataset.<key>): true or false; bool("no") would be True, so strings are refused."""
    if not isinstance(value, bool):
        raise GantrainError(f"dataset.{key}={_shown(value)} must be true or false")
    return value


def _on_device(value: object) -> str:
    """dataset.on_device as one of 'auto', 'true', 'false' (YAML gives a bool, a quoted override a string)."""
    text = str(value).lower() if isinstance(value, (bool, str)) else ""
    if text not in ("auto", "true", "false"):
        raise GantrainError(
            f"dataset.on_device={_shown(value)} must be auto, true (hold the data on the training device) "
            f"or false (stream it from the CPU)"
        )
    return text


def _check_size(image_size: object) -> int:
    return _whole(image_size, "image_size", 4, 32)


class Digits(Dataset):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, values 0-16 scaled to 0-255)."""

    name = "digits"
    num_classes = 10

    def __init__(self, image_size: int = 8, on_device: str | bool = "auto"):
        self.image_size = _check_size(image_size)
        self.on_device = _on_device(on_device)
        self.shape = (1, self.image_size, self.image_size)
        self._data: Optional[Tensor] = None

    def tensor(self) -> Tensor:
        if self._data is None:
            from sklearn.datasets import load_digits

            images = load_digits().images  # (1797, 8, 8), values 0..16
            data = torch.from_numpy(np.round(images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
            self._data = _resize_uint8(data, self.image_size)
        return self._data

    def labels(self) -> Tensor:
        from sklearn.datasets import load_digits

        return torch.from_numpy(load_digits().target.astype(np.int64))

    def __len__(self) -> int:
        return 1797

    def split(self, train: bool) -> "LabelledImages":
        """The first 1,500 digits (train) or the last 297 (test), with labels."""
        part = slice(0, 1500) if train else slice(1500, None)
        return LabelledImages(f"digits-{'train' if train else 'test'}", self.tensor()[part], self.labels()[part])


class LabelledImages(Dataset):
    """A fixed set of uint8 images with class labels (a split of a labelled dataset)."""

    def __init__(self, name: str, images: Tensor, labels: Tensor):
        self.name, self._images, self._labels = name, images, labels
        self.shape = tuple(images.shape[1:])
        self.num_classes = int(labels.max()) + 1 if len(labels) else 0

    def tensor(self) -> Tensor:
        return self._images

    def labels(self) -> Tensor:
        return self._labels

    def __len__(self) -> int:
        return len(self._images)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise GantrainError(f"{path} is not an unsigned-byte IDX file; delete it so that it is downloaded again")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):
        raise GantrainError(f"{path} is truncated ({body.size} of {math.prod(dims)} values); delete it and download again")
    return body.reshape(dims)


class _MNISTLike(Dataset):
    """A torchvision MNIST-family dataset read from <root>/<folder>/raw (gz or not), downloaded if missing."""

    folder = "MNIST"
    torchvision_class = "MNIST"
    num_classes = 10

    def __init__(
        self,
        root: str = "data",
        image_size: int = 28,
        download: bool = True,
        on_device: str | bool = "auto",
        train: bool = True,
    ):
        if root is None or str(root) == "":
            raise GantrainError(f"dataset.root is empty; set it to the folder that holds {self.folder}/raw")
        self.root = Path(os.path.expanduser(str(root)))
        self.image_size = _check_size(image_size)
        self.download, self.on_device, self.train = _flag(download, "download"), _on_device(on_device), bool(train)
        self.shape = (1, self.image_size, self.image_size)
        self._data: Optional[Tensor] = None
        self._labels: Optional[Tensor] = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.folder

    def _file(self, stem: str) -> Optional[Path]:
        raw = self.root / self.folder / "raw"
        for candidate in (raw / f"{stem}.gz", raw / stem):
            if candidate.is_file():
                return candidate
        return None

    def _stems(self) -> tuple[str, str]:
        prefix = "train" if self.train else "t10k"
        return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"

    def _ensure(self) -> tuple[Path, Path]:
        images, labels = (self._file(s) for s in self._stems())
        if images is not None and labels is not None:
            return images, labels
        where = self.root / self.folder / "raw"
        if not self.download:
            raise GantrainError(
                f"{self.folder} not found in {where}; set dataset.root to a folder holding {self.folder}/raw "
                f"or set dataset.download=true"
            )
        import torchvision

        try:
            getattr(torchvision.datasets, self.torchvision_class)(str(self.root), train=self.train, download=True)
        except Exception as exc:  # network errors come in many types
            raise GantrainError(
                f"could not download {self.folder} into {where} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                f"when offline, put the four {self.folder} .gz files in {where} or point dataset.root at a copy"
            ) from None
        images, labels = (self._file(s) for s in self._stems())
        if images is None or labels is None:
            raise GantrainError(f"download of {self.folder} into {where} left no IDX files; delete {where} and retry")
        return images, labels

    def tensor(self) -> Tensor:
        if self._data is None:
            images_path, labels_path = self._ensure()
            images = torch.from_numpy(read_idx(images_path).copy()).unsqueeze(1)
            self._labels = torch.from_numpy(read_idx(labels_path).astype(np.int64))
            self._data = _resize_uint8(images, self.image_size)
        return self._data

    def labels(self) -> Tensor:
        self.tensor()
        assert self._labels is not None
        return self._labels

    def __len__(self) -> int:
        return len(self.tensor())

    def split(self, train: bool) -> "LabelledImages":
        """The official training (60,000) or test (10,000) images, with labels."""
        part = type(self)(root=str(self.root), image_size=self.image_size, download=self.download, train=train)
        return LabelledImages(f"{self.folder}-{'train' if train else 'test'}", part.tensor(), part.labels())


class MNIST(_MNISTLike):
    """MNIST: 60,000 28x28 handwritten digits."""

    folder = "MNIST"
    torchvision_class = "MNIST"


class FashionMNIST(_MNISTLike):
    """Fashion-MNIST: 60,000 28x28 images of clothing."""

    folder = "FashionMNIST"
    torchvision_class = "FashionMNIST"


class CIFAR10(Dataset):
    """CIFAR-10: 50,000 32x32 colour images (torchvision's cifar-10-batches-py under root)."""

    name = "CIFAR10"
    num_classes = 10

    def __init__(self, root: str = "data", image_size: int = 32, download: bool = True, on_device: str | bool = "auto"):
        self.root = Path(os.path.expanduser(str(root)))
        self.image_size = _check_size(image_size)
        self.download, self.on_device = _flag(download, "download"), _on_device(on_device)
        self.shape = (3, self.image_size, self.image_size)
        self._data: Optional[Tensor] = None
        self._labels: Optional[Tensor] = None

    def labels(self) -> Tensor:
        self.tensor()
        assert self._labels is not None
        return self._labels

    def tensor(self) -> Tensor:
        if self._data is None:
            import torchvision

            present = (self.root / "cifar-10-batches-py" / "data_batch_1").is_file()
            if not present and not self.download:
                raise GantrainError(
                    f"CIFAR-10 not found in {self.root / 'cifar-10-batches-py'}; set dataset.root or dataset.download=true"
                )
            try:
                ds = torchvision.datasets.CIFAR10(str(self.root), train=True, download=not present)
            except Exception as exc:
                raise GantrainError(
                    f"could not get CIFAR-10 into {self.root} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                    f"when offline, unpack cifar-10-python.tar.gz into {self.root}"
                ) from None
            data = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
            self._labels = torch.as_tensor(ds.targets, dtype=torch.int64)
            self._data = _resize_uint8(data, self.image_size)
        return self._data

    def __len__(self) -> int:
        return 50000 if self._data is None else len(self._data)


class ImageFolder(Dataset):
    """Every image below root (recursively), resized on the shorter side and center-cropped to image_size.

    The files are checked once when the folder is built; unreadable ones are skipped with one warning
    (skip_bad_images=true) or refused (false), so that training never stops on a bad file mid-run.
    """

    name = "image_folder"

    def __init__(self, root: str, image_size: int = 64, channels: int = 3, on_device: str | bool = False,
                 skip_bad_images: bool = True):
        self.root = Path(os.path.expanduser(str(root)))
        if not self.root.is_dir():
            raise GantrainError(f"dataset.root={root} is not a folder; point it at a folder of images")
        if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels not in (1, 3):
            raise GantrainError(f"dataset.channels={_shown(channels)} must be 1 (grey) or 3 (RGB)")
        self.image_size, self.channels = _check_size(image_size), int(channels)
        self.on_device, self.skip_bad_images = _on_device(on_device), _flag(skip_bad_images, "skip_bad_images")
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise GantrainError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found below {self.root}")
        self.files = self._readable(files)
        self.shape = (self.channels, self.image_size, self.image_size)
        # torchvision's convention: one subfolder per class (two or more) and no image directly in root
        tops = [f.relative_to(self.root).parts for f in self.files]
        self.classes = sorted({t[0] for t in tops}) if all(len(t) > 1 for t in tops) else []
        if len(self.classes) < 2:
            self.classes = []
        index = {c: i for i, c in enumerate(self.classes)}
        self._labels = torch.tensor([index[t[0]] for t in tops], dtype=torch.int64) if self.classes else None
        self.num_classes = len(self.classes) or None

    def labels(self) -> Tensor:
        if self._labels is None:
            raise GantrainError(f"the images below {self.root} have no classes: put them in one subfolder per class "
                                f"(root/<class>/*.png, two classes or more)")
        return self._labels

    def describe(self) -> str:
        classes = f", {len(self.classes)} classes" if self.classes else ""
        return f"{self.name} ({len(self)} samples of shape {tuple(self.shape)}{classes})"

    def _readable(self, files: list[Path]) -> list[Path]:
        """The files PIL can decode; the others are skipped with one warning or refused, per skip_bad_images."""
        checked = ((f, _unreadable(f)) for f in files)
        bad = [(f, why) for f, why in checked if why is not None]
        if not bad:
            return files
        shown = ", ".join(str(f.relative_to(self.root)) for f, _ in bad[:5])
        shown += f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        first_reason = bad[0][1]
        if len(bad) == len(files):
            raise GantrainError(
                f"none of the {len(files)} images below {self.root} can be read ({shown}; {first_reason}); "
                f"point dataset.root at a folder of valid images"
            )
        if not self.skip_bad_images:
            raise GantrainError(
                f"{len(bad)} of {len(files)} images below {self.root} cannot be read: {shown} ({first_reason}); "
                f"fix or delete them, or set dataset.skip_bad_images=true to train without them"
            )
        logging.getLogger("gantrain").warning(
            "skipped %d unreadable image(s) of %d below %s: %s (%s); fix or delete them, or set "
            "dataset.skip_bad_images=false to stop on them", len(bad), len(files), self.root, shown, first_reason)
        bad_set = {f for f, _ in bad}
        return [f for f in files if f not in bad_set]

    @property
    def streamed(self) -> bool:
        return str(self.on_device).lower() in ("false", "auto")

    def __len__(self) -> int:
        return len(self.files)

    def item(self, index: int) -> Tensor:
        from PIL import Image

        with Image.open(self.files[index]) as img:
            img = img.convert("RGB" if self.channels == 3 else "L")
            w, h = img.size
            scale = self.image_size / min(w, h)
            img = img.resize((max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - self.image_size) // 2, (h - self.image_size) // 2
            img = img.crop((left, top, left + self.image_size, top + self.image_size))
            array = np.asarray(img, dtype=np.uint8).reshape(self.image_size, self.image_size, self.channels)
        return torch.from_numpy(array.copy()).permute(2, 0, 1)

    def tensor(self) -> Tensor:
        return torch.stack([self.item(i) for i in range(len(self))])


class Subset(Dataset):
    """Part of a dataset's training set (dataset.subset: a fraction in (0, 1) or a count), drawn with a seed.

    Everything but the samples comes from the full dataset; evaluation scores against the full dataset.
    """

    def __init__(self, base: Dataset, subset: object, seed: int):
        total = len(base)
        if isinstance(subset, bool) or not isinstance(subset, (int, float, np.integer, np.floating)) \
                or not math.isfinite(subset) or subset <= 0:
            raise GantrainError(f"dataset.subset={_shown(subset)} must be a fraction in (0, 1) of the training set or a "
                                f"count of samples; e.g. dataset.subset=0.1 or dataset.subset=6000")
        if isinstance(subset, (float, np.floating)) and subset <= 1:
            count = round(float(subset) * total)
        elif float(subset) == int(subset):
            count = int(subset)
        else:
            raise GantrainError(f"dataset.subset={_shown(subset)} must be a fraction in (0, 1) or a whole count of samples")
        if count < 1 or count > total:
            raise GantrainError(f"dataset.subset={_shown(subset)} gives {count} samples; {base.name} has {total}: pick a "
                                f"count from 1 to {total} or a fraction that keeps at least one sample")
        order = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))
        self.indices = order[:count].sort().values
        self.base = base
        self.kind, self.shape, self.num_classes = base.kind, base.shape, base.num_classes
        self.on_device = base.on_device
        self.name = f"{base.name}[{count} of {total}]"

    def __len__(self) -> int:
        return len(self.indices)

    def tensor(self) -> Tensor:
        return self.base.tensor()[self.indices]

    def labels(self) -> Tensor:
        return self.base.labels()[self.indices]

    @property
    def streamed(self) -> bool:
        return self.base.streamed

    def item(self, index: int) -> Tensor:
        return self.base.item(int(self.indices[index]))  # type: ignore[attr-defined]


def _jpeg_ends_whole(path: Path) -> bool:
    """Whether the file ends with JPEG's end-of-image marker (FF D9), as a complete JPEG without a trailer does."""
    with open(path, "rb") as f:
        f.seek(-2, os.SEEK_END)
        return f.read(2) == b"\xff\xd9"


def _unreadable(path: Path) -> Optional[str]:
    """Why PIL cannot decode the image file (one short line), or None when it can.

    Cheap where it can be: a PNG's chunks are checked without inflating the pixels, a JPEG whose header
    parses and that ends with its end-of-image marker is taken as whole. Anything else is decoded (a
    JPEG at 1/8 scale), which reads the whole stream, so truncated files fail here and not mid-run.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.format == "PNG":
                img.verify()  # reads every chunk and checks its CRC up to IEND
            elif img.format != "JPEG" or not _jpeg_ends_whole(path):
                img.draft(None, (1, 1))  # only JPEG has a draft mode; other formats decode in full
                img.load()
    except Exception as exc:  # PIL raises many types: UnidentifiedImageError, OSError, SyntaxError, EOFError, ...
        message = " ".join(str(exc).split()).replace(f"'{path}'", "").replace(str(path), "").strip(" :")
        return f"{type(exc).__name__}: {message[:100]}" if message else type(exc).__name__
    return None


class _Mixture(Dataset):
    """A mixture of isotropic 2D Gaussians with equal weights, drawn once with a fixed seed."""

    kind = "points"

    def __init__(self, means: Tensor, std: float, num_samples: int, on_device: str | bool, seed: int = 1234):
        self.means, self.std = means.float(), _positive(std, "std", 0.01)
        self.num_samples = _whole(num_samples, "num_samples", 1, 100000)
        self.on_device, self.seed = _on_device(on_device), seed
        self.shape = (2,)
        self._data: Optional[Tensor] = None

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.means)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n fresh points from the mixture, (n, 2) float32."""
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        """n fresh points from the mixture and the index of the Gaussian each came from."""
        which = torch.randint(len(self.means), (n,), generator=generator)
        return self.means[which] + self.std * torch.randn(n, 2, generator=generator), which

    def tensor(self) -> Tensor:
        if self._data is None:
            self._data, self._labels = self.sample_labelled(self.num_samples, torch.Generator().manual_seed(self.seed))
        return self._data

    def labels(self) -> Tensor:
        self.tensor()
        return self._labels

    def __len__(self) -> int:
        return self.num_samples


class Ring(_Mixture):
    """num_modes Gaussians with means evenly spaced on a circle of the given radius."""

    name = "ring"

    def __init__(self, num_modes: int = 8, radius: float = 1.0, std: float = 0.01, num_samples: int = 100000,
                 on_device: str | bool = "auto"):
        num_modes, radius = _whole(num_modes, "num_modes", 1, 8), _positive(radius, "radius", 1.0)
        angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
        means = torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], 1)
        super().__init__(means, std, num_samples, on_device)


class Grid(_Mixture):
    """side x side Gaussians on a square grid centred at 0 with the given spacing."""

    name = "grid"

    def __init__(self, side: int = 5, spacing: float = 2.0, std: float = 0.05, num_samples: int = 100000,
                 on_device: str | bool = "auto"):
        side, spacing = _whole(side, "side", 1, 5), _positive(spacing, "spacing", 2.0)
        ticks = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
        means = torch.cartesian_prod(ticks, ticks)
        super().__init__(means, std, num_samples, on_device)


# ---------------------------------------------------------------------------------------------
# Batch streams. The order of epoch e is a permutation seeded by (seed, e), so the position in the
# data order is just (epoch, pos): resuming mid-epoch needs no RNG state.


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The sample order of one epoch: a permutation of range(n) determined by (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class BatchStream:
    """Yields `k` batches of `batch_size` raw samples at a time, epoch by epoch, dropping the last partial batch.

    Under data parallelism (world > 1) every process walks the same order in global batches of
    batch_size * world samples and takes its own slice (rank) of each.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if batch_size * world > size:
            per = f" x {world} processes" if world > 1 else ""
            raise GantrainError(
                f"trainer.batch_size={batch_size}{per} is larger than the dataset ({size} samples); lower trainer.batch_size"
            )
        self.size, self.batch_size, self.seed, self.rank, self.world = size, batch_size, seed, rank, world
        self.global_batch = batch_size * world
        self.epoch, self.pos = 0, 0

    def _indices(self, k: int) -> list[Tensor]:
        out = []
        for _ in range(k):
            if self.pos + self.global_batch > self.size:
                self.epoch, self.pos = self.epoch + 1, 0
            if self.pos == 0 or not hasattr(self, "_perm") or self._perm_epoch != self.epoch:
                self._perm, self._perm_epoch = self._permutation(self.epoch), self.epoch
            start = self.pos + self.rank * self.batch_size
            out.append(self._perm[start : start + self.batch_size])
            self.pos += self.global_batch
        return out

    def _permutation(self, epoch: int) -> Tensor:
        return epoch_permutation(self.size, self.seed, epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def batch_spec(self) -> tuple[tuple[int, ...], torch.dtype]:
        """(shape, dtype) of one raw batch of samples this stream gives."""
        raise NotImplementedError

    labelled = False  # batches are (samples, labels) pairs

    def empty(self, k: int, device: torch.device) -> Any:
        """Buffers `next(k, out=...)` fills: (k, B, ...) raw samples, with (k, B) int64 labels when labelled."""
        shape, dtype = self.batch_spec()
        samples = torch.empty((k, *shape), dtype=dtype, device=device)
        if not self.labelled:
            return samples
        return samples, torch.empty((k, shape[0]), dtype=torch.int64, device=device)

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm_epoch = -1

    def close(self) -> None:
        """Release what the stream holds besides memory (DataLoader worker processes)."""


class DeviceBatches(BatchStream):
    """The whole dataset held on the training device; batches are gathered there with no host copy."""

    def __init__(self, data: Tensor, batch_size: int, seed: int, device: torch.device, rank: int = 0, world: int = 1,
                 labels: Optional[Tensor] = None):
        super().__init__(len(data), batch_size, seed, rank, world)
        self.data = data.to(device)
        self.labels = None if labels is None else labels.to(device)
        self.labelled = labels is not None
        self.device = device

    def _permutation(self, epoch: int) -> Tensor:
        return super()._permutation(epoch).to(self.device)

    def batch_spec(self) -> tuple[tuple[int, ...], torch.dtype]:
        return (self.batch_size, *self.data.shape[1:]), self.data.dtype

    def next(self, k: int, out: Any = None) -> Any:
        """k raw batches stacked as (k, batch_size, ...) (with their (k, batch_size) labels when labelled);
        written into `out` (from `empty`) when given."""
        index = torch.cat(self._indices(k))
        samples = out[0] if self.labelled and out is not None else out
        if samples is None:
            samples = self.data.index_select(0, index).view(k, self.batch_size, *self.data.shape[1:])
        else:
            torch.index_select(self.data, 0, index, out=samples.view(k * self.batch_size, *self.data.shape[1:]))
        if self.labels is None:
            return samples
        if out is None:
            return samples, self.labels.index_select(0, index).view(k, self.batch_size)
        torch.index_select(self.labels, 0, index, out=out[1].view(-1))
        return out


class StreamedBatches(BatchStream):
    """Batches decoded by DataLoader workers (large image folders), copied to the device from pinned memory."""

    def __init__(self, dataset: ImageFolder, batch_size: int, seed: int, device: torch.device, num_workers: int,
                 rank: int = 0, world: int = 1, labelled: bool = False):
        super().__init__(len(dataset), batch_size, seed, rank, world)
        self.dataset, self.device, self.num_workers, self.labelled = dataset, device, num_workers, labelled
        self._iter: Optional[Iterator[Tensor]] = None

    def batch_spec(self) -> tuple[tuple[int, ...], torch.dtype]:
        return (self.batch_size, *self.dataset.shape), torch.uint8

    def _loader(self) -> Iterator[Tensor]:
        from torch.utils.data import DataLoader

        while True:
            epoch, start = self.epoch, self.pos
            order = epoch_permutation(self.size, self.seed, epoch).tolist()
            usable = (self.size // self.global_batch) * self.global_batch
            mine = [i for g in range(start, usable, self.global_batch)
                    for i in order[g + self.rank * self.batch_size : g + (self.rank + 1) * self.batch_size]]
            loader = DataLoader(
                _Indexed(self.dataset, self.labelled),
                batch_size=self.batch_size,
                sampler=mine,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                drop_last=True,
                persistent_workers=False,
            )
            yield from loader  # then the next epoch, from its start

    def next(self, k: int, out: Any = None) -> Any:
        if self._iter is None:
            self._iter = self._loader()
        batches = []
        for _ in range(k):
            if self.pos + self.global_batch > self.size:
                self.epoch, self.pos = self.epoch + 1, 0
            batches.append(next(self._iter))
            self.pos += self.global_batch
        if self.labelled:
            stacked: Any = tuple(torch.stack([b[i] for b in batches]).to(self.device, non_blocking=True) for i in (0, 1))
        else:
            stacked = torch.stack(batches).to(self.device, non_blocking=True)
        if out is None:
            return stacked
        for buffer, values in zip(out, stacked) if self.labelled else ((out, stacked),):
            buffer.copy_(values)
        return out

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.close()

    def close(self) -> None:
        # the workers are forked processes holding copies of every open file, the run folder's lock among
        # them: shut them down now rather than whenever the iterator is collected
        if self._iter is not None:
            self._iter.close()  # type: ignore[attr-defined]
            self._iter = None


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, dataset: ImageFolder, labelled: bool = False):
        self.dataset, self.labelled = dataset, labelled
        self.labels = dataset.labels() if labelled else None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        image = self.dataset.item(index)
        return image if self.labels is None else (image, self.labels[index])


def make_batches(dataset: Dataset, batch_size: int, seed: int, device: torch.device, num_workers: int,
                 rank: int = 0, world: int = 1, labelled: bool = False) -> BatchStream:
    """The batch stream for a dataset (this process's share of it): on the device when it fits, streamed otherwise.

    labelled: batches are (samples, labels) pairs (conditional training)."""
    on_device = str(dataset.on_device).lower()
    if on_device not in ("auto", "true", "false"):
        raise GantrainError(f"dataset.on_device={dataset.on_device!r} is not one of auto, true, false")
    if dataset.streamed and on_device != "true":
        return StreamedBatches(dataset, batch_size, seed, device, num_workers, rank, world,  # type: ignore[arg-type]
                               labelled=labelled)
    return DeviceBatches(dataset.tensor(), batch_size, seed, device, rank, world,
                         labels=dataset.labels() if labelled else None)


class UnpairedBatches:
    """Two batch streams walked together (the two domains of unpaired translation): `next(k)` gives
    (a, b), each (k, batch_size, C, H, W) raw; each stream keeps its own order and position."""

    labelled = False

    def __init__(self, a: BatchStream, b: BatchStream):
        self.a, self.b = a, b

    def next(self, k: int, out: Any = None) -> Any:
        if out is None:
            return self.a.next(k), self.b.next(k)
        self.a.next(k, out[0])
        self.b.next(k, out[1])
        return out

    def empty(self, k: int, device: torch.device) -> Any:
        return self.a.empty(k, device), self.b.empty(k, device)

    def state_dict(self) -> dict:
        return {"a": self.a.state_dict(), "b": self.b.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.a.load_state_dict(state["a"])
        self.b.load_state_dict(state["b"])

    def close(self) -> None:
        self.a.close()
        self.b.close()
