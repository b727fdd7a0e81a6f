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

from . import data
from .data import IMAGE_EXTENSIONS, Dataset, _check_size, _flag, _on_device, _shown, _unreadable, _whole
from .errors import GantrainError

log = logging.getLogger("gantrain")

#: bumped whenever the content of a cached set changes for the same file name
CACHE_FORMAT = 1

#: the share of a digit's strongest gradient below which a pixel is no edge
EDGE_THRESHOLD = 0.2

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


# ---------------------------------------------------------------------------------------------
# The cache of built sets


def datasets_cache_dir() -> Path:
    """Where built datasets live: $GANTRAIN_CACHE/datasets, else ~/.cache/gantrain/datasets."""
    return Path(os.environ.get("GANTRAIN_CACHE") or Path.home() / ".cache" / "gantrain") / "datasets"


def _read_cache(path: Path, check: Callable[[dict], bool]) -> Optional[dict]:
    """The cached dict at path when it is whole and passes check; None (with a warning when damaged) otherwise."""
    if not path.is_file():
        return None
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(content, dict) or content.get("format") != CACHE_FORMAT or not check(content):
            raise ValueError("unexpected content")
        return content
    except Exception as exc:  # a torn or foreign file: unpickling raises many types
        detail = " ".join(str(exc).split())[:100]
        log.warning("cached dataset %s is damaged or out of date (%s: %s); building it again",
                    path, type(exc).__name__, detail)
        return None


def _write_cache(path: Path, content: dict) -> None:
    """Save content at path atomically (temporary file, then rename); a cache that cannot be written is skipped."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save({"format": CACHE_FORMAT, **content}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # a read-only or full disk
        log.warning("could not cache the dataset at %s (%s); it will be built again next time", path, exc)
        try:
            tmp.unlink()
        except OSError:
            pass


def _is_images(x: Any, channels: int, size: int) -> bool:
    return isinstance(x, Tensor) and x.dtype == torch.uint8 and x.dim() == 4 \
        and tuple(x.shape[1:]) == (channels, size, size)


def _is_labels(y: Any, n: int) -> bool:
    return isinstance(y, Tensor) and y.dtype == torch.int64 and tuple(y.shape) == (n,) \
        and (n == 0 or (int(y.min()) >= 0 and int(y.max()) < 10))


def _digits(root: str, image_size: int, download: bool, train: bool) -> tuple[Tensor, Tensor]:
    """The MNIST split as uint8 (N, 1, S, S) images and int64 labels."""
    mnist = data.MNIST(root=root, image_size=image_size, download=download, train=train)
    return mnist.tensor(), mnist.labels()


def _split_name(train: bool) -> str:
    return "train" if train else "test"


def _split_generator(seed: int, train: bool) -> torch.Generator:
    """The private random stream a synthetic set of one split is built from (the two splits never share one)."""
    return torch.Generator().manual_seed(seed * 2 + (0 if train else 1))


# ---------------------------------------------------------------------------------------------
# Edges of digits


def sobel_edges(images: Tensor, threshold: float = EDGE_THRESHOLD, chunk: int = 8192) -> Tensor:
    """Line drawings of the outlines in a uint8 (N, 1, H, W) batch: 255 on an edge, 0 elsewhere.

    The Sobel gradient of each image (torch conv2d, zero padding) is thresholded at `threshold` times
    the image's strongest gradient, then thinned to one pixel by keeping only the pixels whose gradient
    magnitude is a maximum across the edge (compared with the two neighbours along the gradient
    direction, taken in 4 sectors). On 8-bit images the gradients are exact integers and the sectors
    are decided by integer comparisons, so the result does not depend on the machine.
    """
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)  # d/dx (along a row), d/dy (down a column)
    if len(images) == 0:
        return torch.zeros(images.shape, dtype=torch.uint8)
    out = []
    for part in images.split(chunk):
        n, _, h, w = part.shape
        # one group per image: the same result as a plain (n, 1) convolution, a few times faster on CPUs
        grad = F.conv2d(part.float().view(1, n, h, w), kernels.repeat(n, 1, 1, 1), padding=1, groups=n)
        gx, gy = grad.view(n, 2, h, w).unbind(1)
        mag2 = gx * gx + gy * gy  # exact: |g| <= 4 * 255
        strongest = mag2.amax(dim=(1, 2), keepdim=True)
        strong = (mag2 > (threshold * threshold) * strongest) & (mag2 > 0)
        # thin only the strong pixels (a fraction of the image), addressing them in the zero-padded map
        at = strong.view(-1).nonzero().squeeze(1)
        wp = w + 2
        image, pixel = at // (h * w), at % (h * w)
        padded_at = image * ((h + 2) * wp) + (pixel // w + 1) * wp + (pixel % w + 1)
        padded = F.pad(mag2, (1, 1, 1, 1)).reshape(-1)
        sx, sy, m = gx.reshape(-1)[at], gy.reshape(-1)[at], mag2.reshape(-1)[at]
        ax, ay = sx.abs(), sy.abs()
        # tan(22.5 deg) ~ 70/169: the gradient points along a row, down a column, or along a diagonal
        step = torch.where(169 * ay < 70 * ax, 1,
                           torch.where(169 * ax < 70 * ay, wp, torch.where(sx * sy > 0, wp + 1, wp - 1)))
        # a ridge two pixels wide (a sharp step) keeps one of its two pixels: strictly above the next one
        peak = (m > padded[padded_at + step]) & (m >= padded[padded_at - step])
        edges = torch.zeros(n * h * w, dtype=torch.uint8)
        edges[at[peak]] = 255
        out.append(edges.view(n, 1, h, w))
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Outlines drawn in other ways: the styles edges2mnist trains on, and the held-out ones it is scored on

#: dataset.edge_styles: "mixed" draws each outline with an operator, line width and drawing size chosen at
#: random per image (TRAIN_OPERATORS x TRAIN_WIDTHS x TRAIN_SCALES); "sobel" is the set of 0.7.0 and earlier,
#: every outline the one-pixel Sobel maxima of sobel_edges
EDGE_STYLES = ("mixed", "sobel")
#: the operators, line widths (pixels, at the drawing size) and drawing sizes (times image_size) of "mixed"
TRAIN_OPERATORS = ("sobel", "band", "contour")
TRAIN_WIDTHS = (1, 2)
TRAIN_SCALES = (0.75, 1.0, 1.5)
#: drawing styles never produced in training, each (operator, width, scale, jitter): the evaluation reads them
HELD_OUT_STYLES: dict[str, tuple[str, int, float, float]] = {
    "canny": ("canny", 1, 1.0, 0.0),  # another operator: Gaussian-smoothed gradient, thinned, hysteresis
    "morph_gradient": ("morph_gradient", 1, 1.0, 0.0),  # another operator: dilation minus erosion of the digit
    "thick": ("sobel", 3, 1.0, 0.0),  # the training outline drawn 3 px wide (training: 1-2)
    "sketch64": ("contour", 3, 2.0, 1.5),  # a wobbly hand-drawn-like stroke at 64 px (2x), shrunk to 32
}
#: the style of 0.7.0's set, scored next to the held-out ones
SOBEL_STYLE = ("sobel", 1, 1.0, 0.0)
#: the share of the strongest gradient above which "band" draws a pixel (a band about 2 pixels wide)
BAND_THRESHOLD = 0.5


def _binary(images: Tensor) -> Tensor:
    """Digit pixels (> 127) of a uint8 batch as a float 0/1 map."""
    return (images > 127).float()


def _dilate(x: Tensor, width: int) -> Tensor:
    """Lines of a float (N, 1, H, W) map drawn `width` pixels wide (a width x width max filter)."""
    if width <= 1:
        return x
    before = (width - 1) // 2
    padded = F.pad(x, (before, width - 1 - before, before, width - 1 - before))
    return F.max_pool2d(padded, width, stride=1)


def _erode(x: Tensor) -> Tensor:
    """3 x 3 erosion of a 0/1 map (outside the image counts as background)."""
    return -F.max_pool2d(F.pad(-x, (1, 1, 1, 1), value=-0.0), 3, stride=1)


def band_edges(images: Tensor, threshold: float = BAND_THRESHOLD) -> Tensor:
    """The Sobel gradient thresholded at `threshold` times each image's strongest, not thinned: 255 / 0, uint8."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)
    grad = F.conv2d(images.float(), kernels, padding=1)
    mag2 = (grad * grad).sum(1, keepdim=True)
    strongest = mag2.amax(dim=(2, 3), keepdim=True)
    return ((mag2 > threshold * threshold * strongest) & (mag2 > 0)).to(torch.uint8) * 255


def contour_edges(images: Tensor) -> Tensor:
    """The inner contour of the binarised digit (its pixels with a background 8-neighbour): 255 / 0, uint8."""
    digit = _binary(images)
    return ((digit - _erode(digit)) > 0).to(torch.uint8) * 255


def morph_gradient_edges(images: Tensor) -> Tensor:
    """Morphological gradient of the binarised digit (3 x 3 dilation minus erosion): a band across the digit's
    boundary, 255 / 0, uint8."""
    digit = _binary(images)
    return ((F.max_pool2d(digit, 3, stride=1, padding=1) - _erode(digit)) > 0).to(torch.uint8) * 255


def canny_edges(images: Tensor, low: float = 0.1, high: float = 0.3) -> Tensor:
    """Canny's outline (float64): binomial smoothing (5 x 5, sigma ~1), Sobel gradient, non-maximum suppression
    across the edge, then hysteresis: pixels above `high` times the image's strongest gradient, and those above
    `low` connected to them. 255 / 0, uint8."""
    x = images.double()
    b = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16
    x = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), (b[:, None] * b[None, :])[None, None])
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)
    grad = F.conv2d(x, torch.stack([kx, kx.t()]).unsqueeze(1), padding=1)
    gx, gy = grad[:, 0:1], grad[:, 1:2]
    mag = (gx * gx + gy * gy).sqrt()
    ax, ay = gx.abs(), gy.abs()
    p = F.pad(mag, (1, 1, 1, 1))
    h, w = mag.shape[-2:]

    def at(dy: int, dx: int) -> Tensor:
        return p[..., 1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]

    horizontal, vertical = 169 * ay < 70 * ax, 169 * ax < 70 * ay
    same = gx * gy > 0
    ahead = torch.where(horizontal, at(0, 1), torch.where(vertical, at(1, 0), torch.where(same, at(1, 1), at(1, -1))))
    behind = torch.where(horizontal, at(0, -1), torch.where(vertical, at(-1, 0), torch.where(same, at(-1, -1), at(-1, 1))))
    thin = (mag > ahead) & (mag >= behind)
    strongest = mag.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    weak = thin & (mag > low * strongest)
    edges = (thin & (mag > high * strongest)).double()
    weak_f = weak.double()
    for _ in range(h * w):  # grow the strong edges along connected weak pixels until nothing changes
        grown = F.max_pool2d(edges, 3, stride=1, padding=1) * weak_f
        grown = torch.maximum(grown, edges)
        if torch.equal(grown, edges):
            break
        edges = grown
    return (edges > 0).to(torch.uint8) * 255


OPERATORS: dict[str, Callable[[Tensor], Tensor]] = {
    "sobel": sobel_edges, "band": band_edges, "contour": contour_edges,
    "canny": canny_edges, "morph_gradient": morph_gradient_edges,
}


def _resize(x: Tensor, size: int) -> Tensor:
    """A float (N, C, H, W) batch resized to size x size (bilinear, antialiased when shrinking)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1])


def _to_uint8(x: Tensor) -> Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def _jitter(x: Tensor, amplitude: float, generator: torch.Generator) -> Tensor:
    """A float (N, 1, S, S) drawing warped by a smooth random field (displacements up to ~amplitude pixels),
    the wobble of a hand-drawn line."""
    n, _, s, _ = x.shape
    coarse = torch.randn((n, 2, 5, 5), generator=generator, dtype=torch.float32)
    field = F.interpolate(coarse, size=(s, s), mode="bicubic", align_corners=True) * (amplitude * 2 / s)
    steps = torch.linspace(-1, 1, s)
    grid = torch.stack(torch.meshgrid(steps, steps, indexing="xy"), dim=-1).expand(n, s, s, 2)
    return F.grid_sample(x, grid + field.permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros",
                         align_corners=True)


def draw_outlines(digits: Tensor, operator: str, width: int = 1, scale: float = 1.0, jitter: float = 0.0,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """Outlines of a uint8 (N, 1, S, S) batch of digits in one drawing style, uint8 (N, 1, S, S).

    The digit is resized to round(S * scale) px, outlined there by `operator` (OPERATORS), its lines drawn
    `width` px wide, wobbled by up to ~`jitter` px (draws from `generator`), and resized back to S px (grey
    where the lines fall between pixels). ("sobel", 1, 1.0, 0.0) is exactly sobel_edges(digits).
    """
    if operator not in OPERATORS:
        raise GantrainError(f"unknown outline operator {operator!r}; one of {', '.join(OPERATORS)}")
    if len(digits) == 0:
        return torch.zeros(digits.shape, dtype=torch.uint8)
    size = digits.shape[-1]
    drawn_size = max(8, round(size * scale))
    source = digits if drawn_size == size else _to_uint8(_resize(digits.float(), drawn_size))
    lines = OPERATORS[operator](source)
    if width == 1 and jitter == 0 and drawn_size == size:
        return lines
    out = _dilate(lines.float(), width)
    if jitter > 0:
        out = _jitter(out, jitter, generator if generator is not None else torch.Generator().manual_seed(0))
    return _to_uint8(_resize(out, size))


def sample_styles(n: int, generator: torch.Generator) -> Tensor:
    """The training style of n outlines: int64 (n, 3) rows of (operator, width, scale), each an index into
    TRAIN_OPERATORS, TRAIN_WIDTHS and TRAIN_SCALES, drawn uniformly and independently."""
    return torch.stack([torch.randint(len(TRAIN_OPERATORS), (n,), generator=generator),
                        torch.randint(len(TRAIN_WIDTHS), (n,), generator=generator),
                        torch.randint(len(TRAIN_SCALES), (n,), generator=generator)], dim=1)


def mixed_outlines(digits: Tensor, styles: Tensor) -> Tensor:
    """Outlines of digits, each in its own training style (a row of sample_styles), uint8 (N, 1, S, S)."""
    out = torch.zeros(digits.shape, dtype=torch.uint8)
    for op in range(len(TRAIN_OPERATORS)):
        for wi in range(len(TRAIN_WIDTHS)):
            for si in range(len(TRAIN_SCALES)):
                chosen = ((styles[:, 0] == op) & (styles[:, 1] == wi) & (styles[:, 2] == si)).nonzero().squeeze(1)
                if len(chosen):
                    out[chosen] = draw_outlines(digits[chosen], TRAIN_OPERATORS[op], TRAIN_WIDTHS[wi], TRAIN_SCALES[si])
    return out


def held_out_outlines(digits: Tensor, style: str, seed: int = 0) -> Tensor:
    """Outlines of digits in a held-out style (a name of HELD_OUT_STYLES, or "sobel": 0.7.0's outline), drawn
    with seed (only the jittered style draws), uint8 (N, 1, S, S)."""
    spec = SOBEL_STYLE if style == "sobel" else HELD_OUT_STYLES.get(style)
    if spec is None:
        raise GantrainError(f"unknown outline style {style!r}; one of sobel, {', '.join(HELD_OUT_STYLES)}")
    return draw_outlines(digits, *spec, generator=torch.Generator().manual_seed(seed))


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


def _load(path: Path, channels: int, size: int, half: Optional[int] = None) -> Tensor:
    """An image file as uint8 (channels, size, size), resized bilinear to a square; half 0 / 1 takes the
    left / right half of a side-by-side file."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if half is not None:
            w, h = img.size
            mid = w // 2
            img = img.crop((0, 0, mid, h) if half == 0 else (mid, 0, w, h))
        img = _as_mode(img, channels)
        img = img.resize((size, size), Image.BILINEAR)
        array = np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


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
    for group in groups:
        why = None
        for f in group:
            why = _unreadable(f)
            if why is None and side_by_side:
                with Image.open(f) as img:
                    if img.size[0] < 2:
                        why = f"{img.size[0]} pixel wide, no room for two images side by side"
            if why is not None:
                bad.append((f, why))
                break
        if why is None:
            good.append(group)
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

    def __init__(self, name: str, files: list[Path], image_size: int, channels: int, on_device: str | bool = "auto"):
        self.name, self.files = name, list(files)
        self.image_size, self.channels = image_size, channels
        self.on_device = _on_device(on_device)
        self.shape = (channels, image_size, image_size)
        self._data = None

    def __len__(self) -> int:
        return len(self.files)

    def item(self, index: int) -> Tensor:
        return _load(self.files[index], self.channels, self.image_size)


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
                 train: bool = True, direction: str = "AtoB", on_device: str | bool = "auto"):
        if root is None or str(root) == "":
            raise GantrainError(f"dataset.root is empty; set it to a folder laid out as {PAIRED_LAYOUTS}")
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
        files = _image_files(folder)
        if not files:
            raise GantrainError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}; expected {PAIRED_LAYOUTS}")
        return folder, True, [(f,) for f in files]

    def _matched(self, folder: Path) -> list[tuple[Path, ...]]:
        sides = []
        for side in ("A", "B"):
            files = _image_files(folder / side)
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
            a = _load(file_a, self.channels_a, self.image_size)
            b = _load(file_b, self.channels_b, self.image_size)
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
                 train: bool = True, on_device: str | bool = "auto"):
        if root is None or str(root) == "":
            raise GantrainError("dataset.root is empty; set it to the folder that holds trainA/ and trainB/")
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
            files = _image_files(folder)
            if not files:
                raise GantrainError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}; "
                                    f"expected root/{split}A/ and root/{split}B/, one folder of images per domain")
            files = [g[0] for g in _readable([(f,) for f in files], folder, "images")]
            self._domains.append(FolderImages(f"{self.root.name}-{split}{side}", files, self.image_size, channels,
                                              self.on_device))

    def domain_a(self) -> FolderImages:
        return self._domains[0]

    def domain_b(self) -> FolderImages:
        return self._domains[1]

    def split(self, train: bool) -> "UnpairedFolder":
        return UnpairedFolder(str(self.root), image_size=self.image_size, channels_a=self.channels_a,
                              channels_b=self.channels_b, train=train, on_device=self.on_device)


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
