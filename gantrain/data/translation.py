"""Datasets of image-to-image translation: paired (pix2pix) and unpaired (CycleGAN) sets.

A paired set is one gantrain Dataset whose samples hold both images of a pair as channels of one
uint8 tensor, A's channels first: (N, channels_a + channels_b, H, W), `paired = True`. A crop or
flip applied to a batch of pairs is therefore the same for both images of every pair.

An unpaired set (`paired = False`) is not itself a Dataset: `domain_a()` and `domain_b()` give one
plain Dataset per domain, of uint8 (N, C, H, W) images, and the two may differ in length.

    Edges2MNIST     paired, 1 + 1 channels: the outline of an MNIST digit -> the digit
    MNIST2MNISTM    unpaired: MNIST digits (1 channel) and MNIST-M digits (3 channels), disjoint halves
    PairedFolder    pix2pix's aligned layout: A|B side by side in one file, or A/ and B/ folders
    UnpairedFolder  CycleGAN's layout: trainA/ trainB/ (testA/ testB/)

The two MNIST-derived sets are built once and cached under $GANTRAIN_CACHE/datasets (else
~/.cache/gantrain/datasets). `random_jitter` is pix2pix's resize-and-random-crop plus random flip.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gantrain import data
from gantrain.data.base import Dataset, _check_size, _flag, _on_device, _shown, _whole, is_hidden
from gantrain.data.cache import _is_images, _is_labels, _read_cache, _write_cache, datasets_cache_dir
from gantrain.data.images import IMAGE_EXTENSIONS, _unreadable
from gantrain.data.outlines import EDGE_STYLES, mixed_outlines, sample_styles, sobel_edges
from gantrain.errors import GantrainError

log = logging.getLogger("gantrain")


#: colour photographs that ship inside scikit-image (no download), as (name, loader of an (H, W, 3) uint8 array).
#: retina and hubble_deep_field ship too but are mostly black: crops of them would give grey digits.
PHOTOS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("astronaut", lambda d: d.astronaut()),
    ("chelsea", lambda d: d.chelsea()),
    ("coffee", lambda d: d.coffee()),
    ("rocket", lambda d: d.rocket()),
    ("immunohistochemistry", lambda d: d.immunohistochemistry()),
    ("motorcycle_left", lambda d: d.stereo_motorcycle()[0]),
)


INSTALL_HINT = "pip install 'gantrain[translation]'"


def _digits(root: str, image_size: int, download: bool, train: bool) -> tuple[Tensor, Tensor]:
    """The MNIST split as uint8 (N, 1, S, S) images and int64 labels."""
    mnist = data.MNIST(root=root, image_size=image_size, download=download, train=train)
    return mnist.tensor(), mnist.labels()


def _split_name(train: bool) -> str:
    return "train" if train else "test"


def _split_generator(seed: int, train: bool) -> torch.Generator:
    """The private random stream a synthetic set of one split is built from (the two splits never share one)."""
    return torch.Generator().manual_seed(seed * 2 + (0 if train else 1))


class Edges2MNIST(Dataset):
    """Paired: A = the outline of an MNIST digit (a line drawing), B = the digit; 1 + 1 channels.

    edge_styles="mixed": each outline drawn in a style chosen at random per digit (sample_styles: an operator
    of TRAIN_OPERATORS, a line width of TRAIN_WIDTHS, a drawing size of TRAIN_SCALES), drawn from `seed`;
    `styles()` gives the choices. edge_styles="sobel": every outline the one-pixel Sobel maxima, the set of
    gantrain 0.7.0 and earlier (seed unused). Train split from MNIST's 60,000 training digits, test split from
    its 10,000 test digits; labels() gives the digit classes (for evaluation). Built once per (image_size,
    split, edge_styles, seed) and cached.
    """

    name = "edges2mnist"
    kind = "image"
    paired = True
    num_classes = 10
    channels_a = 1
    channels_b = 1

    def __init__(self, root: str = "data", image_size: int = 32, download: bool = True,
                 on_device: str | bool = "auto", train: bool = True, edge_styles: str = "mixed", seed: int = 0):
        if root is None or str(root) == "":
            raise GantrainError("dataset.root is empty; set it to the folder that holds MNIST/raw")
        self.root = str(root)
        self.image_size = _check_size(image_size)
        self.download, self.on_device = _flag(download, "download"), _on_device(on_device)
        self.train = _flag(train, "train")
        if edge_styles not in EDGE_STYLES:
            raise GantrainError(f"dataset.edge_styles={_shown(edge_styles)} is not one of {', '.join(EDGE_STYLES)}: "
                                f"mixed (outlines of several operators, widths and sizes) or sobel (0.7.0's set)")
        self.edge_styles = edge_styles
        self.seed = _whole(seed, "seed", 0, 0)
        self.shape = (2, self.image_size, self.image_size)
        self._data: Optional[Tensor] = None
        self._labels: Optional[Tensor] = None
        self._styles: Optional[Tensor] = None

    @property
    def cache_path(self) -> Path:
        base = f"edges2mnist-{self.image_size}-{_split_name(self.train)}"
        if self.edge_styles == "sobel":
            return datasets_cache_dir() / f"{base}.pt"  # the name (and content) of 0.7.0's cache
        return datasets_cache_dir() / f"{base}-{self.edge_styles}-seed{self.seed}.pt"

    def _valid(self, content: dict) -> bool:
        pairs = content.get("pairs")
        if not (_is_images(pairs, 2, self.image_size) and _is_labels(content.get("labels"), len(pairs))):
            return False
        styles = content.get("styles")
        return self.edge_styles == "sobel" or (isinstance(styles, Tensor) and tuple(styles.shape) == (len(pairs), 3))

    def _build(self) -> None:
        cached = _read_cache(self.cache_path, self._valid)
        if cached is not None:
            self._data, self._labels, self._styles = cached["pairs"], cached["labels"], cached.get("styles")
            return
        digits, labels = _digits(self.root, self.image_size, self.download, self.train)
        content: dict = {}
        if self.edge_styles == "sobel":
            outlines = sobel_edges(digits)
        else:
            self._styles = content["styles"] = sample_styles(len(digits), _split_generator(self.seed, self.train))
            outlines = mixed_outlines(digits, self._styles)
        self._data = torch.cat([outlines, digits], dim=1).contiguous()
        self._labels = labels
        _write_cache(self.cache_path, {"pairs": self._data, "labels": self._labels, **content})

    def tensor(self) -> Tensor:
        """All pairs, uint8 (N, 2, S, S): channel 0 the outline (A), channel 1 the digit (B)."""
        if self._data is None:
            self._build()
        assert self._data is not None
        return self._data

    def labels(self) -> Tensor:
        self.tensor()
        assert self._labels is not None
        return self._labels

    def styles(self) -> Optional[Tensor]:
        """The drawing style of every outline (rows of sample_styles); None for edge_styles=sobel."""
        self.tensor()
        return self._styles

    def __len__(self) -> int:
        return len(self.tensor())

    def split(self, train: bool) -> "Edges2MNIST":
        """The same set built from MNIST's training (train=True) or test digits."""
        return Edges2MNIST(root=self.root, image_size=self.image_size, download=self.download,
                           on_device=self.on_device, train=train, edge_styles=self.edge_styles, seed=self.seed)


# ---------------------------------------------------------------------------------------------
# Unpaired sets: two domains


class DomainImages(Dataset):
    """One domain of an unpaired set: fixed uint8 (N, C, H, W) images, with labels when known."""

    def __init__(self, name: str, images: Tensor, labels: Optional[Tensor] = None, on_device: str | bool = "auto",
                 index: Optional[Tensor] = None, num_classes: Optional[int] = None):
        self.name, self._images, self._labels = name, images, labels
        self.on_device = _on_device(on_device)
        self.shape = tuple(images.shape[1:])
        self.num_classes = num_classes if labels is not None else None
        #: position of every sample in the set it was taken from (e.g. the MNIST split), when known
        self.index = index

    def tensor(self) -> Tensor:
        return self._images

    def labels(self) -> Tensor:
        if self._labels is None:
            return super().labels()
        return self._labels

    def __len__(self) -> int:
        return len(self._images)


class _Unpaired:
    """What unpaired sets share: two domains, each a plain Dataset."""

    kind = "image"
    paired = False
    name = "unpaired"
    channels_a: int
    channels_b: int

    def domain_a(self) -> Dataset:
        raise NotImplementedError

    def domain_b(self) -> Dataset:
        raise NotImplementedError

    def describe(self) -> str:
        a, b = self.domain_a(), self.domain_b()
        return (f"{self.name} (A: {len(a)} samples of shape {tuple(a.shape)}, "
                f"B: {len(b)} samples of shape {tuple(b.shape)})")


def _load_photos() -> list[tuple[str, np.ndarray]]:
    """The colour photographs bundled with scikit-image, as (name, (H, W, 3) uint8)."""
    try:
        import skimage.data
    except ImportError:
        raise GantrainError(
            f"MNIST-M's backgrounds are scikit-image's photographs; install it: {INSTALL_HINT}"
        ) from None
    photos = []
    for name, load in PHOTOS:
        try:
            array = np.asarray(load(skimage.data))
        except Exception as exc:  # a partial install: missing file, or a loader that wants to download
            raise GantrainError(
                f"scikit-image's photograph {name} could not be loaded ({type(exc).__name__}); "
                f"reinstall it: {INSTALL_HINT}"
            ) from None
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] < 3:
            raise GantrainError(f"scikit-image's photograph {name} is not an RGB image; reinstall it: {INSTALL_HINT}")
        photos.append((name, np.ascontiguousarray(array[:, :, :3])))
    return photos


def _at_least(photo: np.ndarray, size: int) -> Tensor:
    """The photograph as a uint8 (3, H, W) tensor, enlarged (bilinear) when a side is shorter than size."""
    h, w = photo.shape[:2]
    if min(h, w) < size:
        from PIL import Image

        scale = size / min(h, w)
        photo = np.array(Image.fromarray(photo).resize((max(size, round(w * scale)), max(size, round(h * scale))),
                                                        Image.BILINEAR))
    return torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1)


def mnistm_blend(digits: Tensor, photos: list[Tensor], crops: Tensor) -> Tensor:
    """MNIST-M digits: |photo patch - digit| per channel, the patch of sample i being crops[i] = (photo, top, left).

    digits: uint8 (N, 1, S, S); photos: uint8 (3, H, W) tensors; returns uint8 (N, 3, S, S).
    """
    n, _, s, _ = digits.shape
    out = torch.empty((n, 3, s, s), dtype=torch.uint8)
    steps = torch.arange(s)
    for p, photo in enumerate(photos):
        which = (crops[:, 0] == p).nonzero().flatten()
        if len(which) == 0:
            continue
        rows = (crops[which, 1, None] + steps)[:, :, None]  # (n, S, 1)
        cols = (crops[which, 2, None] + steps)[:, None, :]  # (n, 1, S)
        patches = photo[:, rows, cols].permute(1, 0, 2, 3)  # (3, n, S, S) -> (n, 3, S, S)
        out[which] = (patches.to(torch.int16) - digits[which].to(torch.int16)).abs().to(torch.uint8)
    return out


class MNIST2MNISTM(_Unpaired):
    """Unpaired: domain A = MNIST digits (1 channel), domain B = MNIST-M digits (3 channels).

    MNIST-M is made the way Ganin et al. (2016) made it: every digit is blended over a random crop
    of a colour photograph as |patch - digit| per channel; the photographs are the ones bundled with
    scikit-image. A is the first half of the MNIST split and B is made from the second half, so no
    digit appears in both domains. Both domains keep their labels (for evaluation only) and record
    their positions in the MNIST split (`index`). Deterministic given seed; cached per (size, split, seed).
    """

    name = "mnist2mnistm"
    channels_a = 1
    channels_b = 3
    num_classes = 10

    def __init__(self, root: str = "data", image_size: int = 32, download: bool = True,
                 on_device: str | bool = "auto", train: bool = True, seed: int = 0):
        if root is None or str(root) == "":
            raise GantrainError("dataset.root is empty; set it to the folder that holds MNIST/raw")
        self.root = str(root)
        self.image_size = _check_size(image_size)
        self.download, self.on_device = _flag(download, "download"), _on_device(on_device)
        self.train = _flag(train, "train")
        self.seed = _whole(seed, "seed", 0, 0)
        self._built: Optional[dict] = None

    @property
    def cache_path(self) -> Path:
        return datasets_cache_dir() / f"mnist2mnistm-{self.image_size}-{_split_name(self.train)}-seed{self.seed}.pt"

    def _valid(self, content: dict) -> bool:
        a, b, crops = content.get("a"), content.get("b"), content.get("crops")
        return (_is_images(a, 1, self.image_size) and _is_images(b, 3, self.image_size)
                and _is_labels(content.get("labels_a"), len(a)) and _is_labels(content.get("labels_b"), len(b))
                and isinstance(crops, Tensor) and tuple(crops.shape) == (len(b), 3)
                and content.get("photos") == [name for name, _ in PHOTOS])

    def _build(self) -> dict:
        if self._built is not None:
            return self._built
        cached = _read_cache(self.cache_path, self._valid)
        if cached is None:
            digits, labels = _digits(self.root, self.image_size, self.download, self.train)
            photos = [_at_least(p, self.image_size) for _, p in _load_photos()]
            half = len(digits) // 2
            b_digits = digits[half:]
            gen = _split_generator(self.seed, self.train)
            which = torch.randint(len(photos), (len(b_digits),), generator=gen)
            u = torch.rand((len(b_digits), 2), generator=gen, dtype=torch.float64)
            room = torch.tensor([[p.shape[1] - self.image_size + 1, p.shape[2] - self.image_size + 1] for p in photos],
                                dtype=torch.float64)[which]
            offsets = (u * room).floor().to(torch.int64).minimum(room.to(torch.int64) - 1)
            crops = torch.cat([which[:, None], offsets], dim=1)
            cached = {"a": digits[:half].clone(), "labels_a": labels[:half].clone(),
                      "b": mnistm_blend(b_digits, photos, crops), "labels_b": labels[half:].clone(),
                      "crops": crops, "photos": [name for name, _ in PHOTOS]}
            _write_cache(self.cache_path, cached)
        self._built = cached
        return cached

    @property
    def photos(self) -> tuple[str, ...]:
        """The names of the scikit-image photographs the crops are taken from, in crops' numbering."""
        return tuple(name for name, _ in PHOTOS)

    @property
    def crops(self) -> Tensor:
        """Where every B digit's background comes from: int64 (N_b, 3) rows of (photo, top, left)."""
        return self._build()["crops"]

    def domain_a(self) -> DomainImages:
        """The MNIST digits of the first half of the split: uint8 (N_a, 1, S, S), labelled."""
        built = self._build()
        a = built["a"]
        return DomainImages(f"mnist2mnistm-A-{_split_name(self.train)}", a, built["labels_a"], self.on_device,
                            index=torch.arange(len(a)), num_classes=10)

    def domain_b(self) -> DomainImages:
        """The MNIST-M digits made from the second half of the split: uint8 (N_b, 3, S, S), labelled."""
        built = self._build()
        half, b = len(built["a"]), built["b"]
        return DomainImages(f"mnist2mnistm-B-{_split_name(self.train)}", b, built["labels_b"], self.on_device,
                            index=torch.arange(half, half + len(b)), num_classes=10)

    def split(self, train: bool) -> "MNIST2MNISTM":
        """The same set made from MNIST's training (train=True) or test digits."""
        return MNIST2MNISTM(root=self.root, image_size=self.image_size, download=self.download,
                            on_device=self.on_device, train=train, seed=self.seed)


# ---------------------------------------------------------------------------------------------
# Image folders

PAIRED_LAYOUTS = ("root/train/*.png with A and B side by side in each image (A on the left), "
                  "root/train/A/ and root/train/B/ with matching file names, or root/A/ and root/B/ "
                  "(test split: root/test/ or root/val/ laid out like root/train/)")


def _check_channels(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value not in (1, 3):
        raise GantrainError(f"dataset.{key}={_shown(value)} must be 1 (grey) or 3 (RGB)")
    return int(value)


def _as_mode(img: Any, channels: int) -> Any:
    """A PIL image as 'L' (channels=1) or 'RGB' (3): grey repeated, colour by luminance, alpha dropped,
    16-bit and float images scaled to 8 bits."""
    from PIL import Image

    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        array = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or (img.mode == "I" and array.size and array.max() > 255):
            array = array / 257.0
        elif img.mode == "F" and array.size and array.max() <= 1.0:
            array = array * 255.0
        img = Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8))  # 2-D uint8: mode L
    elif img.mode in ("LA", "PA", "RGBA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA").convert("RGB")  # drop the alpha channel, keep the colours under it
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")  # palette, 1-bit, CMYK, ...
    target = "RGB" if channels == 3 else "L"
    return img if img.mode == target else img.convert(target)  # L -> RGB repeats, RGB -> L by luminance


def _load(path: Path, channels: int, size: int, half: Optional[int] = None, upright: bool = True) -> Tensor:
    """An image file as uint8 (channels, size, size), resized bilinear to a square; half 0 / 1 takes the
    left / right half of a side-by-side file. upright: turned as its EXIF orientation says, as viewers show it
    (a phone's photo); a side-by-side file's halves are taken as stored."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()
        if upright and half is None:
            ImageOps.exif_transpose(img, in_place=True)
        if half is not None:
            w, h = img.size
            mid = w // 2
            img = img.crop((0, 0, mid, h) if half == 0 else (mid, 0, w, h))
        img = _as_mode(img, channels)
        img = img.resize((size, size), Image.BILINEAR)
        array = np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _image_files(folder: Path, skip_hidden: bool = True) -> list[Path]:
    """The images below folder; skip_hidden: hidden files and folders (.ipynb_checkpoints, .thumbs) are no part of
    the data (runs before 0.15.0 read them: False)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not (skip_hidden and is_hidden(p, folder)))


def _shown_files(items: list[tuple[Path, str]], base: Path) -> str:
    shown = ", ".join(str(f.relative_to(base)) for f, _ in items[:5])
    return shown + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _readable(groups: list[tuple[Path, ...]], base: Path, what: str,
              side_by_side: bool = False) -> list[tuple[Path, ...]]:
    """The groups (one file, or a pair) whose every file PIL can decode; the others are skipped with one warning,
    and all of them unreadable is an error."""
    from PIL import Image

    bad: list[tuple[Path, str]] = []
    good = []
    narrow: list[tuple[Path, tuple[int, int]]] = []  # side by side, yet not about twice as wide as high
    for group in groups:
        why = None
        for f in group:
            why = _unreadable(f)
            if why is None and side_by_side:
                with Image.open(f) as img:
                    if img.size[0] < 2:
                        why = f"{img.size[0]} pixel wide, no room for two images side by side"
                    elif img.size[0] < 1.5 * img.size[1]:
                        narrow.append((f, img.size))
            if why is not None:
                bad.append((f, why))
                break
        if why is None:
            good.append(group)
    if narrow:
        (first, (w, h)) = narrow[0]
        log.warning("%d of %d images in %s are not about twice as wide as high (%s is %dx%d), yet each is split down "
                    "the middle into A | B: for pairs kept in two files, put them in %s and %s under the same names",
                    len(narrow), len(groups), base, first.name, w, h, base / "A", base / "B")
    if not bad:
        return good
    shown, reason = _shown_files(bad, base), bad[0][1]
    if not good:
        raise GantrainError(f"none of the {len(groups)} {what} below {base} can be read ({shown}; {reason}); "
                            f"point dataset.root at a folder of valid images")
    log.warning("skipped %d unreadable %s of %d below %s: %s (%s); fix or delete them",
                len(bad), what, len(groups), base, shown, reason)
    return good


class _FolderSet:
    """Lazy decoding shared by the folder datasets: item(i) decodes one sample, tensor() all of them (kept)."""

    on_device: str
    _data: Optional[Tensor]

    @property
    def streamed(self) -> bool:
        return self.on_device in ("false", "auto")

    def item(self, index: int) -> Tensor:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def tensor(self) -> Tensor:
        if self._data is None:
            self._data = torch.stack([self.item(i) for i in range(len(self))])
        return self._data


class FolderImages(_FolderSet, Dataset):
    """One domain of an unpaired folder set: the image files given, resized to squares of image_size."""

    def __init__(self, name: str, files: list[Path], image_size: int, channels: int, on_device: str | bool = "auto",
                 upright: bool = True):
        self.name, self.files = name, list(files)
        self.image_size, self.channels, self.upright = image_size, channels, upright
        self.on_device = _on_device(on_device)
        self.shape = (channels, image_size, image_size)
        self._data = None

    def __len__(self) -> int:
        return len(self.files)

    def item(self, index: int) -> Tensor:
        return _load(self.files[index], self.channels, self.image_size, upright=self.upright)


class PairedFolder(_FolderSet, Dataset):
    """pix2pix's aligned pairs from a folder, resized to image_size squares (bilinear).

    Layouts: root/{train,test}/*.jpg|png with A and B side by side in each file (A the left half),
    root/{train,test}/A/ and .../B/ with matching file names (matched without the extension), or
    root/A/ and root/B/ (the training split; then there is no test split). The test split falls back to
    root/val/ when there is no root/test/. direction="BtoA" reads B as A and A as B; channels_a is
    the channel count of A after that swap. Unreadable files are skipped (with their partners) with one warning.
    """

    name = "paired_folder"
    kind = "image"
    paired = True

    def __init__(self, root: str, image_size: int = 256, channels_a: int = 3, channels_b: int = 3,
                 train: bool = True, direction: str = "AtoB", on_device: str | bool = "auto", skip_hidden: bool = True,
                 upright: bool = True):
        if root is None or str(root) == "":
            raise GantrainError(f"dataset.root is empty; set it to a folder laid out as {PAIRED_LAYOUTS}")
        self.skip_hidden, self.upright = _flag(skip_hidden, "skip_hidden"), _flag(upright, "upright")
        self.root = Path(os.path.expanduser(str(root)))
        self.image_size = _check_size(image_size)
        self.channels_a = _check_channels(channels_a, "channels_a")
        self.channels_b = _check_channels(channels_b, "channels_b")
        self.train, self.on_device = _flag(train, "train"), _on_device(on_device)
        if direction not in ("AtoB", "BtoA"):
            raise GantrainError(f"dataset.direction={_shown(direction)} must be AtoB or BtoA")
        self.direction = direction
        self.shape = (self.channels_a + self.channels_b, self.image_size, self.image_size)
        self._data = None
        self.folder, self.side_by_side, pairs = self._find()
        self.pairs = _readable(pairs, self.folder, "image pairs" if not self.side_by_side else "images",
                               side_by_side=self.side_by_side)

    def _find(self) -> tuple[Path, bool, list[tuple[Path, ...]]]:
        """(the split's folder, whether its files hold both images side by side, its files or (A, B) pairs)."""
        if not self.root.is_dir():
            raise GantrainError(f"dataset.root={self.root} is not a folder; expected {PAIRED_LAYOUTS}")
        names = ["train"] if self.train else ["test", "val"]
        folder = next((self.root / n for n in names if (self.root / n).is_dir()), None)
        if folder is None:
            if self.train and (self.root / "A").is_dir() and (self.root / "B").is_dir():
                folder = self.root
            else:
                which = "root/train/ (or root/A/ and root/B/)" if self.train else "root/test/ or root/val/"
                raise GantrainError(f"no {_split_name(self.train)} split in {self.root}: found no {which}; "
                                    f"expected {PAIRED_LAYOUTS}")
        if (folder / "A").is_dir() and (folder / "B").is_dir():
            return folder, False, self._matched(folder)
        files = _image_files(folder, self.skip_hidden)
        if not files:
            raise GantrainError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}; expected {PAIRED_LAYOUTS}")
        return folder, True, [(f,) for f in files]

    def _matched(self, folder: Path) -> list[tuple[Path, ...]]:
        sides = []
        for side in ("A", "B"):
            files = _image_files(folder / side, self.skip_hidden)
            keyed: dict[str, Path] = {}
            for f in files:
                key = str(f.relative_to(folder / side).with_suffix(""))
                if key in keyed:
                    raise GantrainError(f"{folder / side} holds two images named {key} ({keyed[key].name}, {f.name}); "
                                        f"keep one of them so that every A image has one B image")
                keyed[key] = f
            sides.append(keyed)
        a, b = sides
        if not a and not b:
            raise GantrainError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder / 'A'} or {folder / 'B'}; "
                                f"expected {PAIRED_LAYOUTS}")
        for here, there, name_here, name_there in ((a, b, "A", "B"), (b, a, "B", "A")):
            missing = sorted(set(here) - set(there))
            if missing:
                shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
                raise GantrainError(f"{len(missing)} image(s) of {folder / name_here} have no partner of the same name "
                                    f"in {folder / name_there}: {shown}; every pair needs one file in each")
        keys = sorted(a)
        return [(a[k], b[k]) for k in keys]

    def __len__(self) -> int:
        return len(self.pairs)

    def item(self, index: int) -> Tensor:
        """Pair `index` as uint8 (channels_a + channels_b, S, S), A's channels first."""
        group = self.pairs[index]
        swap = self.direction == "BtoA"
        if self.side_by_side:
            a = _load(group[0], self.channels_a, self.image_size, half=1 if swap else 0)
            b = _load(group[0], self.channels_b, self.image_size, half=0 if swap else 1)
        else:
            file_a, file_b = (group[1], group[0]) if swap else (group[0], group[1])
            a = _load(file_a, self.channels_a, self.image_size, upright=self.upright)
            b = _load(file_b, self.channels_b, self.image_size, upright=self.upright)
        return torch.cat([a, b])

    def describe(self) -> str:
        return f"{self.name} ({len(self)} pairs of shape {tuple(self.shape)} from {self.folder}, {self.direction})"

    def split(self, train: bool) -> "PairedFolder":
        return PairedFolder(str(self.root), image_size=self.image_size, channels_a=self.channels_a,
                            channels_b=self.channels_b, train=train, direction=self.direction, on_device=self.on_device)


class UnpairedFolder(_Unpaired):
    """CycleGAN's layout: root/trainA/ and root/trainB/ (test split: root/testA/ and root/testB/), any number
    of images in each, resized to image_size squares (bilinear). Unreadable files are skipped with one warning."""

    name = "unpaired_folder"

    def __init__(self, root: str, image_size: int = 256, channels_a: int = 3, channels_b: int = 3,
                 train: bool = True, on_device: str | bool = "auto", skip_hidden: bool = True, upright: bool = True):
        if root is None or str(root) == "":
            raise GantrainError("dataset.root is empty; set it to the folder that holds trainA/ and trainB/")
        self.skip_hidden, self.upright = _flag(skip_hidden, "skip_hidden"), _flag(upright, "upright")
        self.root = Path(os.path.expanduser(str(root)))
        self.image_size = _check_size(image_size)
        self.channels_a = _check_channels(channels_a, "channels_a")
        self.channels_b = _check_channels(channels_b, "channels_b")
        self.train, self.on_device = _flag(train, "train"), _on_device(on_device)
        split = _split_name(self.train)
        if not self.root.is_dir():
            raise GantrainError(f"dataset.root={self.root} is not a folder; expected root/trainA/ and root/trainB/ "
                                f"(and root/testA/, root/testB/ for the test split)")
        missing = [f"{split}{d}" for d in "AB" if not (self.root / f"{split}{d}").is_dir()]
        if missing:
            raise GantrainError(f"no {split} split in {self.root}: {' and '.join(m + '/' for m in missing)} missing; "
                                f"expected root/{split}A/ and root/{split}B/, one folder of images per domain")
        self._domains = []
        for side, channels in (("A", self.channels_a), ("B", self.channels_b)):
            folder = self.root / f"{split}{side}"
            files = _image_files(folder, self.skip_hidden)
            if not files:
                raise GantrainError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}; "
                                    f"expected root/{split}A/ and root/{split}B/, one folder of images per domain")
            files = [g[0] for g in _readable([(f,) for f in files], folder, "images")]
            self._domains.append(FolderImages(f"{self.root.name}-{split}{side}", files, self.image_size, channels,
                                              self.on_device, self.upright))

    def domain_a(self) -> FolderImages:
        return self._domains[0]

    def domain_b(self) -> FolderImages:
        return self._domains[1]

    def split(self, train: bool) -> "UnpairedFolder":
        return UnpairedFolder(str(self.root), image_size=self.image_size, channels_a=self.channels_a,
                              channels_b=self.channels_b, train=train, on_device=self.on_device,
                              skip_hidden=self.skip_hidden, upright=self.upright)


# ---------------------------------------------------------------------------------------------
# Augmentation


def random_jitter(x: Tensor, load_size: int, generator: Optional[torch.Generator] = None, flip: bool = True) -> Tensor:
    """pix2pix's jitter of a (N, C, S, S) batch: resize to load_size (bilinear), crop a random S x S window
    back out, flip left-right with probability 1/2; each sample its own window and flip, the same for all
    of its channels (so both images of a pair). The draws come from `generator` (a CPU generator, the
    global one when None) and do not depend on x's device. load_size == S: only the flip.
    """
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"random_jitter wants a (N, C, S, S) batch of square images, not {tuple(x.shape)}")
    n, _, s, _ = x.shape
    if isinstance(load_size, bool) or not isinstance(load_size, (int, np.integer)) or load_size < s:
        raise GantrainError(f"load_size={_shown(load_size)} must be a whole number >= the image size {s}")
    load_size = int(load_size)
    room = load_size - s + 1
    offsets = torch.randint(room, (n, 2), generator=generator) if room > 1 else torch.zeros((n, 2), dtype=torch.int64)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    if room == 1 and not bool(flips.any()):
        return x.clone()
    source = x
    if load_size != s:
        dtype = x.dtype
        source = F.interpolate(x if x.is_floating_point() else x.float(), size=(load_size, load_size),
                               mode="bilinear", align_corners=False)
        if not dtype.is_floating_point:
            source = source.round().clamp(torch.iinfo(dtype).min, torch.iinfo(dtype).max).to(dtype)
    steps = torch.arange(s)
    rows = offsets[:, 0:1] + steps  # (N, S)
    cols = offsets[:, 1:2] + torch.where(flips[:, None], s - 1 - steps, steps)  # a flipped window reads right to left
    rows, cols = rows.to(x.device), cols.to(x.device)
    batch = torch.arange(n, device=x.device)
    out = source[batch[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (N, S, S, C)
    return out.permute(0, 3, 1, 2).contiguous()
