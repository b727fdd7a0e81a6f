"""Image datasets: the built-in digits, MNIST, Fashion-MNIST, CIFAR-10 (torchvision layout), image folders
(checked for unreadable files), subsets."""
from __future__ import annotations

import gzip
import logging
import math
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from gantrain.data.base import Dataset, _check_size, _flag, _on_device, _resize_uint8, _shown, is_hidden
from gantrain.errors import GantrainError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


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
            images = _digits_table()[:, :-1].reshape(-1, 8, 8)  # (1797, 8, 8), values 0..16
            data = torch.from_numpy(np.round(images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
            self._data = _resize_uint8(data, self.image_size)
        return self._data

    def labels(self) -> Tensor:
        return torch.from_numpy(_digits_table()[:, -1].astype(np.int64))

    def __len__(self) -> int:
        return 1797

    def split(self, train: bool) -> "LabelledImages":
        """The first 1,500 digits (train) or the last 297 (test), with labels."""
        part = slice(0, 1500) if train else slice(1500, None)
        return LabelledImages(f"digits-{'train' if train else 'test'}", self.tensor()[part], self.labels()[part])


_DIGITS: Optional[np.ndarray] = None


def _digits_table() -> np.ndarray:
    """scikit-learn's digits table, (1797, 65): 64 pixel values, then the label. Read from the file scikit-learn
    installs, without importing scikit-learn (which, with SciPy, takes seconds at every start-up); through
    `load_digits` where that file is not found."""
    global _DIGITS
    if _DIGITS is None:
        import importlib.util

        spec = importlib.util.find_spec("sklearn")
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        files = [Path(f) / "datasets" / "data" / "digits.csv.gz" for f in folders]
        if files and files[0].is_file():
            with gzip.open(files[0], "rt") as f:
                _DIGITS = np.loadtxt(f, delimiter=",")
        else:
            from sklearn.datasets import load_digits

            bunch = load_digits()
            _DIGITS = np.concatenate([bunch.data, bunch.target[:, None]], axis=1)
    return _DIGITS


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
        import shutil

        import torchvision

        # the outermost of the folders the download makes: removed again when it fails, with what it left there
        made = next((p for p in (self.root, self.root / self.folder, where) if not p.exists()), None)
        try:
            getattr(torchvision.datasets, self.torchvision_class)(str(self.root), train=self.train, download=True)
        except Exception as exc:  # network errors come in many types
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            cause = lines[-1][:160] if lines else ""  # torchvision names the network's error last
            raise GantrainError(
                f"could not download {self.folder} into {where} ({type(exc).__name__}{': ' + cause if cause else ''}); "
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
    (skip_bad_images=true) or refused (false), so that training never stops on a bad file mid-run (a file
    that breaks after the check stops it with a GantrainError naming the file).
    """

    name = "image_folder"

    def __init__(self, root: str, image_size: int = 64, channels: int = 3, on_device: str | bool = False,
                 skip_bad_images: bool = True, skip_hidden: bool = True, upright: bool = True):
        self.root = Path(os.path.expanduser(str(root)))
        if not self.root.is_dir():
            raise GantrainError(f"dataset.root={root} is not a folder; point it at a folder of images")
        if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels not in (1, 3):
            raise GantrainError(f"dataset.channels={_shown(channels)} must be 1 (grey) or 3 (RGB)")
        self.image_size, self.channels = _check_size(image_size), int(channels)
        self.on_device, self.skip_bad_images = _on_device(on_device), _flag(skip_bad_images, "skip_bad_images")
        # (runs before 0.15.0 read hidden files and stored pixels: both false in their configs)
        self.skip_hidden, self.upright = _flag(skip_hidden, "skip_hidden"), _flag(upright, "upright")
        # hidden files and folders (.ipynb_checkpoints, .thumbs) are no part of the data, nor classes
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                       and not (self.skip_hidden and is_hidden(p, self.root)))
        if not files:
            raise GantrainError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found below {self.root}")
        self.files = self._readable(files)
        self.shape = (self.channels, self.image_size, self.image_size)
        # torchvision's convention: one subfolder per class (two or more) and no image directly in root
        tops = [f.relative_to(self.root).parts for f in self.files]
        loose = [Path(*t).as_posix() for t in tops if len(t) == 1]
        self.classes = sorted({t[0] for t in tops}) if not loose else []
        #: why the images have no classes (said where a conditional run asks for them)
        self.no_classes = ""
        if loose and len(loose) < len(tops):
            self.no_classes = (f"{len(loose)} image(s) lie directly in {self.root} ({', '.join(loose[:3])}"
                               f"{', ...' if len(loose) > 3 else ''}), so its subfolders are not read as classes")
        elif len(self.classes) == 1:
            self.no_classes = f"its images are all in one subfolder ({self.classes[0]}): one class"
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

    def texts(self) -> list[list[str]]:
        """The captions of every image (for text-conditioned runs): from root/metadata.jsonl ({"file_name": ...,
        "text": ...} lines) and/or a .txt of the same name beside each image; images without one are counted in
        one warning and train with an empty caption."""
        if getattr(self, "_texts", None) is None:
            from gantrain.data.text import folder_captions

            texts, missing = folder_captions(self.root, self.files)
            if missing == len(texts) and (self.root / "metadata.jsonl").is_file():
                raise GantrainError(f"no line of {self.root / 'metadata.jsonl'} names an image below {self.root}: "
                                    f"file_name is the path relative to that folder, e.g. "
                                    f"{self.files[0].relative_to(self.root).as_posix()}")
            if missing == len(texts):
                raise GantrainError(f"no captions found for the images below {self.root}: add a metadata.jsonl "
                                    f'({{"file_name": "a.png", "text": "a caption"}} per line) or a .txt beside each '
                                    f"image")
            if missing:
                logging.getLogger("gantrain").warning(
                    "%d of %d images below %s have no caption; they train with an empty one", missing, len(texts),
                    self.root)
            self._texts = [t or [""] for t in texts]
        return self._texts

    def describe(self) -> str:
        names = ", ".join(f"{i} {c}" for i, c in enumerate(self.classes[:10])) + (", ..." if len(self.classes) > 10 else "")
        classes = f", {len(self.classes)} classes: {names}" if self.classes else ""
        return f"{self.name} ({len(self)} samples of shape {tuple(self.shape)}{classes})"

    def _readable(self, files: list[Path]) -> list[Path]:
        """The files PIL can decode; the others are skipped with one warning or refused, per skip_bad_images."""
        from concurrent.futures import ThreadPoolExecutor

        # files found readable before, unchanged since (size and modification time): not decoded again
        known, stamps = _checked_before(self.root), {}
        for f in files:
            try:
                st = f.stat()
                stamps[f] = [st.st_size, st.st_mtime_ns]
            except OSError:
                stamps[f] = None
        todo = [f for f in files if stamps[f] is None or known.get(str(f)) != stamps[f]]
        # decoding releases the GIL: the files are checked on every core (a PNG's pixels are inflated)
        with ThreadPoolExecutor(max_workers=max(1, min(32, os.cpu_count() or 1))) as pool:
            checked = list(zip(todo, pool.map(_unreadable, todo, chunksize=64)))
        bad = [(f, why) for f, why in checked if why is not None]
        fresh = {str(f): stamps[f] for f, why in checked if why is None and stamps[f] is not None}
        if fresh:
            _remember_checked(self.root, {**known, **fresh})
        if not bad:
            return files
        # each file with its own reason, where the reasons differ; else the one reason once
        same = len({why for _, why in bad[:5]}) == 1
        shown = ", ".join(str(f.relative_to(self.root)) + ("" if same else f" ({why})") for f, why in bad[:5])
        shown += f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        reason = f" ({bad[0][1]})" if same else ""
        if len(bad) == len(files):
            raise GantrainError(f"none of the {len(files)} images below {self.root} can be read: {shown}{reason}; "
                                f"point dataset.root at a folder of valid images")
        if not self.skip_bad_images:
            raise GantrainError(
                f"{len(bad)} of {len(files)} images below {self.root} cannot be read: {shown}{reason}; "
                f"fix or delete them, or set dataset.skip_bad_images=true to train without them"
            )
        logging.getLogger("gantrain").warning(
            "skipped %d unreadable image(s) of %d below %s: %s%s; fix or delete them, or set "
            "dataset.skip_bad_images=false to stop on them", len(bad), len(files), self.root, shown, reason)
        bad_set = {f for f, _ in bad}
        return [f for f in files if f not in bad_set]

    @property
    def streamed(self) -> bool:
        return str(self.on_device).lower() in ("false", "auto")

    def __len__(self) -> int:
        return len(self.files)

    def item(self, index: int) -> Tensor:
        from PIL import Image, ImageOps

        path = self.files[index]
        try:
            with Image.open(path) as img:
                if self.upright:  # turned as its EXIF orientation says, as viewers show it (a phone's photo)
                    ImageOps.exif_transpose(img, in_place=True)
                img = _converted(img, self.channels)  # decodes the file
        except Exception as exc:  # PIL raises many types; the folder check passed, so the file changed since
            raise UnreadableImage(f"cannot read image {path} ({_why(exc, path)}); remove it, or set "
                                  f"dataset.skip_bad_images=true so that unreadable images are skipped at "
                                  f"start-up") from None
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
    def texts(self) -> Any:
        """The captions of the chosen samples, when the dataset has captions (AttributeError otherwise)."""
        base = getattr(self.base, "texts", None)
        if base is None:
            raise AttributeError("texts")
        return lambda: [base()[i] for i in self.indices.tolist()]

    def __getattr__(self, name: str) -> Any:
        if name in ("vocabulary", "grid_prompts", "scheme") and "base" in self.__dict__:
            return getattr(self.base, name)  # what a captioned dataset says of all its samples
        raise AttributeError(name)

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


class UnreadableImage(GantrainError):
    """An image file that could not be decoded when a sample was read.

    One line even when a DataLoader worker raised it: torch re-raises a worker's exception as its type
    called with "Caught ... Original Traceback ...", whose last line is "<module>.UnreadableImage: <message>".
    """

    def __init__(self, message: str):
        if "\nOriginal Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(message)


def _converted(img: Any, channels: int) -> Any:
    """A PIL image decoded as 'RGB' (channels=3) or 'L' (1), as PIL converts it, except: 16-bit grey
    ('I;16', 'I;16B', 'I;16L', 'I;16N', and 'I', which is what 16-bit PNGs open as in older Pillow) is
    scaled to 8 bits (value * 255 / 65535, rounded) where PIL would clip it at 255; palette images with
    transparency go through 'RGBA' (same colours; PIL warns on every direct conversion of them)."""
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode == "I":
        wide = np.clip(np.asarray(img).astype(np.int64), 0, 65535)  # I;16B is big-endian, I int32
        img = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))  # 2-D uint8: mode L
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB" if channels == 3 else "L")


def _why(exc: Exception, path: Path) -> str:
    """An exception PIL raised on path as one short line, without the path."""
    message = " ".join(str(exc).split()).replace(f"'{path}'", "").replace(str(path), "").strip(" :")
    return f"{type(exc).__name__}: {message[:100]}" if message else type(exc).__name__


def _checks_file(root: Path) -> Path:
    """Where the readable files of an image folder are remembered: $GANTRAIN_CACHE/datasets/image_checks/."""
    import hashlib

    from gantrain.data.cache import datasets_cache_dir

    key = hashlib.sha1(str(Path(root).resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return datasets_cache_dir() / "image_checks" / f"{key}.pt"


def _checked_before(root: Path) -> dict:
    """path -> [size, mtime_ns] of the files of root found readable before (empty when none, or unreadable)."""
    from gantrain.data.cache import _read_cache

    cached = _read_cache(_checks_file(root), lambda c: isinstance(c.get("files"), dict))
    return cached["files"] if cached else {}


def _remember_checked(root: Path, files: dict) -> None:
    """Save the readable files of root (atomically; a cache that cannot be written is skipped: checked again)."""
    from gantrain.data.cache import _write_cache

    _write_cache(_checks_file(root), {"root": str(Path(root).resolve()), "files": files})


def _unreadable(path: Path) -> Optional[str]:
    """Why PIL cannot decode the image file (one short line), or None when it can.

    A PNG's chunks are checked (CRCs) and its pixels inflated: verify() alone passes a pixel stream cut
    short under valid checksums. A JPEG whose header parses and that ends with its end-of-image marker is
    taken as whole. Anything else is decoded (a JPEG at 1/8 scale), which reads the whole stream, so
    truncated files fail here and not mid-run.
    """
    from PIL import Image

    if path.is_symlink() and not path.exists():
        return "a link to a file that does not exist"
    try:
        with Image.open(path) as img:
            png = img.format == "PNG"
            if png:
                img.verify()  # reads every chunk and checks its CRC up to IEND
            elif img.format != "JPEG" or not _jpeg_ends_whole(path):
                img.draft(None, (1, 1))  # only JPEG has a draft mode; other formats decode in full
                img.load()
        if png:  # verify() leaves the image unusable: open it again to decode the pixels
            with Image.open(path) as img:
                img.load()
    except Exception as exc:  # PIL raises many types: UnidentifiedImageError, OSError, SyntaxError, EOFError, ...
        return _why(exc, path)
    return None
