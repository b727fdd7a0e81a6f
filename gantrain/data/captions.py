"""Captioned images for text-conditioned training: a vocabulary and tokeniser, the captions of image folders
(metadata.jsonl or one .txt beside each image), and two offline sets built from the MNIST-family files,
`mnist_captions` and `fashion_captions`, whose captions name the class and attributes measured on each image.

A captioned dataset gives, besides `tensor()` and `labels()` (the class, kept for evaluation), `texts()`: the
captions of every sample (a list of one or more strings each); gantrain.tokens turns them into token ids.

The offline captions are built deterministically from the measured attributes (stroke thickness, slant and size of
a digit; brightness and size of a garment), each split into thirds per class on the training images: the lowest
third gets one word (thin, upright, small / dark, small), the highest the other (thick, slanted, large /
bright, large), the middle none. Phrasings come from templates with synonyms; some combinations of phrasing
(CaptionScheme.held_out_phrase) never appear in training captions and make the prompts `gantrain-eval` scores
text agreement on.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from gantrain.data import images as data
from gantrain.data.base import Dataset, _on_device, _whole
from gantrain.data.cache import _read_cache, _write_cache, datasets_cache_dir
from gantrain.tokens import Vocabulary, tokenize

log = logging.getLogger("gantrain")
#: bumped whenever the captions built from the same images change (their cache file is then rebuilt)
SCHEME_VERSION = 2

# ---------------------------------------------------------------------------------------------
# Attributes measured on images


def _ink(images: Tensor, threshold: int = 127) -> np.ndarray:
    """Boolean ink masks (N, H, W) of uint8 (N, 1, H, W) or (N, H, W) images."""
    x = images.numpy() if isinstance(images, Tensor) else np.asarray(images)
    return x.reshape(len(x), x.shape[-2], x.shape[-1]) > threshold


def stroke_thickness(images: Tensor) -> np.ndarray:
    """Stroke width in pixels: 2 x ink area / boundary pixels (ink with a 4-neighbour that is not ink).

    A bar w >= 2 pixels wide and much longer than wide measures about w; 0 for an empty image."""
    ink = _ink(images)
    padded = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    inside = padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    boundary = (ink & ~inside).sum((1, 2))
    return np.where(boundary > 0, 2.0 * ink.sum((1, 2)) / np.maximum(boundary, 1), 0.0)


def slant(images: Tensor) -> np.ndarray:
    """Horizontal shift per pixel of height of the ink (a shear; positive: the top leans right), from the
    intensity-weighted second moments: -mu11 / mu02 (rows grow downwards). 0 for an empty image."""
    x = (images.numpy() if isinstance(images, Tensor) else np.asarray(images)).astype(np.float64)
    x = x.reshape(len(x), x.shape[-2], x.shape[-1])
    rows, cols = np.mgrid[: x.shape[1], : x.shape[2]]
    mass = x.sum((1, 2))
    safe = np.maximum(mass, 1e-12)
    r0 = (x * rows).sum((1, 2)) / safe
    c0 = (x * cols).sum((1, 2)) / safe
    dr = rows[None] - r0[:, None, None]
    dc = cols[None] - c0[:, None, None]
    mu11 = (x * dr * dc).sum((1, 2))
    mu02 = (x * dr * dr).sum((1, 2))
    return np.where((mass > 0) & (mu02 > 0), -mu11 / np.maximum(mu02, 1e-12), 0.0)


def ink_box_area(images: Tensor) -> np.ndarray:
    """Area in pixels of the smallest box holding all the ink (0 for an empty image)."""
    ink = _ink(images)
    rows, cols = ink.any(2), ink.any(1)

    def extent(mask: np.ndarray) -> np.ndarray:
        first = mask.argmax(1)
        last = mask.shape[1] - 1 - mask[:, ::-1].argmax(1)
        return np.where(mask.any(1), last - first + 1, 0)

    return (extent(rows) * extent(cols)).astype(np.float64)


def brightness(images: Tensor) -> np.ndarray:
    """Mean intensity (0..255) of the pixels above 30 (the object, not the black background)."""
    x = (images.numpy() if isinstance(images, Tensor) else np.asarray(images)).astype(np.float64)
    x = x.reshape(len(x), -1)
    on = x > 30
    return np.where(on.any(1), (x * on).sum(1) / np.maximum(on.sum(1), 1), 0.0)


def ink_area(images: Tensor) -> np.ndarray:
    """Pixels above 30 (the object's area)."""
    return _ink(images, 30).sum((1, 2)).astype(np.float64)


def thirds(values: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class tertile edges (num_classes, 2) of values."""
    edges = np.zeros((num_classes, 2))
    for c in range(num_classes):
        v = values[classes == c]
        edges[c] = np.quantile(v, [1 / 3, 2 / 3]) if len(v) else (0.0, 0.0)
    return edges


def levels(values: np.ndarray, classes: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """-1 (lowest third of its class), 0 (middle) or +1 (highest), int64 (N,)."""
    low, high = edges[classes, 0], edges[classes, 1]
    return np.where(values < low, -1, np.where(values > high, 1, 0)).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Captions made from classes and attribute levels


class CaptionScheme:
    """How captions name a class and attribute levels, with synonyms and phrasings.

    classes: per class, its names: form 0 (a word: "seven") and form 1 (another: "7").
    attributes: per attribute, (name, measure function, words for level -1, words for level +1).
    Phrasings, for classes c and adjectives a1..an (in attribute order, or reversed):
      "a/an a1 a2 c"  "c, a1 and a2"  "the <noun> c, a1 and a2"  "a1 a2 c"
    Training captions use name form 0 with the first, form 1 with the second and fourth, either with the third,
    and the attribute order. Held out (never in training, as strings and as bags of words): the first with form
    1 ("a thick 7"), the second with form 0 ("seven, thin"; "seven" alone); and, as strings only (a bag of words
    reads them as the training order), two adjectives or more in reverse order ("a slanted thick seven").
    """

    noun = "digit"

    def __init__(self, classes: Sequence[Sequence[str]], attributes: Sequence[tuple]):
        self.classes, self.attributes = [list(c) for c in classes], list(attributes)

    @staticmethod
    def article(word: str) -> str:
        return "an" if word[:1] in "aeiu8" else "a"  # an eight, an upright, an ankle boot; a one

    def phrase(self, template: int, name: str, adjectives: Sequence[str]) -> str:
        if template == 0:
            words = " ".join([*adjectives, name])
            return f"{self.article(words)} {words}"
        if template in (1, 2):
            head = name if template == 1 else f"the {self.noun} {name}"
            if not adjectives:
                return head
            tail = adjectives[0] if len(adjectives) == 1 else ", ".join(adjectives[:-1]) + " and " + adjectives[-1]
            return f"{head}, {tail}"
        return " ".join([*adjectives, name])

    def words_for(self, attribute_levels: Sequence[int], rng: random.Random, keep: float = 0.75) -> list[str]:
        """An adjective for each attribute at a non-middle level (each kept with probability keep)."""
        out = []
        for (_, _, low, high), level in zip(self.attributes, attribute_levels):
            if level != 0 and rng.random() < keep:
                out.append(rng.choice(low if level < 0 else high))
        return out

    def training_caption(self, label: int, attribute_levels: Sequence[int], rng: random.Random) -> str:
        template = rng.randrange(4)
        form = {0: 0, 1: 1, 2: rng.randrange(2), 3: 1}[template]
        return self.phrase(template, self.classes[label][form], self.words_for(attribute_levels, rng))

    def held_out_caption(self, label: int, adjectives: Sequence[str], rng: random.Random) -> str:
        """A prompt in a phrasing training never used, of a kind drawn from rng (for the text-agreement scores)."""
        return self.held_out_phrase(rng.randrange(3), label, adjectives)

    def held_out_phrase(self, kind: int, label: int, adjectives: Sequence[str]) -> str:
        """Held-out phrasing `kind`: 0 "a/an <adjectives> <form 1>", 1 "<form 0>, <adjectives>" (or form 0 alone),
        2 "a/an <reversed adjectives> <form 0>" (kind 0 with fewer than two adjectives: one reads as training's)."""
        if kind == 2 and len(adjectives) < 2:
            kind = 0
        if kind == 0:
            return self.phrase(0, self.classes[label][1], adjectives)
        if kind == 1:
            return self.phrase(1, self.classes[label][0], adjectives)
        return self.phrase(0, self.classes[label][0], list(reversed(adjectives)))

    def vocabulary_words(self) -> list[str]:
        words = {"a", "an", "and", "the", self.noun}
        for names in self.classes:
            words.update(w for n in names for w in tokenize(n))
        for _, _, low, high in self.attributes:
            words.update(w for a in [*low, *high] for w in tokenize(a))
        return sorted(words)


DIGIT_SCHEME = CaptionScheme(
    [["zero", "0"], ["one", "1"], ["two", "2"], ["three", "3"], ["four", "4"], ["five", "5"], ["six", "6"],
     ["seven", "7"], ["eight", "8"], ["nine", "9"]],
    [("thickness", stroke_thickness, ["thin", "light", "fine"], ["thick", "bold", "heavy"]),
     ("slant", slant, ["upright", "straight", "vertical"], ["slanted", "italic", "leaning"]),
     ("size", ink_box_area, ["small", "little", "narrow"], ["large", "big", "wide"])],
)
FASHION_SCHEME = CaptionScheme(
    [["t-shirt", "top"], ["trousers", "pants"], ["pullover", "sweater"], ["dress", "gown"], ["coat", "jacket"],
     ["sandal", "slipper"], ["shirt", "blouse"], ["sneaker", "trainer"], ["bag", "handbag"], ["ankle boot", "boot"]],
    [("brightness", brightness, ["dark", "dim", "black"], ["bright", "pale", "white"]),
     ("size", ink_area, ["small", "little", "slim"], ["large", "big", "bulky"])],
)
FASHION_SCHEME.noun = "garment"


class CaptionedMNIST(Dataset):
    """MNIST images with captions built from each digit's class and measured attributes (see the module).

    captions_per_image: captions drawn per training image (different phrasings and subsets of its attributes),
    deterministically from `seed`. image_size: as MNIST's (attributes are measured at 28 px). The set (captions,
    attribute levels and thirds' edges) is cached under $GANTRAIN_CACHE/datasets; the images are MNIST's own.
    """

    scheme = DIGIT_SCHEME
    source = "MNIST"
    domain = "MNIST"  # whose domain classifier scores it
    name = "mnist_captions"
    num_classes = 10

    def __init__(self, root: str = "data", image_size: int = 28, download: bool = True, on_device: str | bool = "auto",
                 captions_per_image: int = 3, seed: int = 0, train: bool = True):
        self.train = bool(train)
        self._images = getattr(data, self.source)(root=root, image_size=image_size, download=download, train=self.train)
        self.root, self.image_size, self.download = str(root), self._images.image_size, self._images.download
        self.on_device = _on_device(on_device)
        self.captions_per_image = _whole(captions_per_image, "captions_per_image", 1, 3)
        self.seed = _whole(seed, "seed", 0, 0)
        self.shape = self._images.shape
        self._built: Optional[dict] = None

    @property
    def cache_path(self) -> Path:
        return datasets_cache_dir() / (f"{self.name}-v{SCHEME_VERSION}-k{self.captions_per_image}-seed{self.seed}-"
                                       f"{'train' if self.train else 'test'}.pt")

    def _native(self) -> Tensor:
        """The 28 px images the attributes are measured on."""
        native = getattr(data, self.source)(root=self.root, image_size=28, download=self.download, train=self.train)
        return native.tensor()

    def edges(self) -> np.ndarray:
        """Per-class tertile edges of every attribute, from the training images: (attributes, classes, 2)."""
        if self.train:
            return np.asarray(self._build()["edges"])
        return type(self)(root=self.root, download=self.download, captions_per_image=self.captions_per_image,
                          seed=self.seed, train=True).edges()

    def _build(self) -> dict:
        if self._built is not None:
            return self._built
        cached = _read_cache(self.cache_path, lambda c: c.get("kind") == self.name and isinstance(c.get("texts"), list))
        if cached is None:
            images, labels = self._native(), self._images.labels()
            classes = labels.numpy()
            values = [measure(images) for _, measure, _, _ in self.scheme.attributes]
            edges = (np.stack([thirds(v, classes, self.num_classes) for v in values]) if self.train
                     else self.edges())
            attribute_levels = np.stack([levels(v, classes, e) for v, e in zip(values, edges)], 1)
            rng = random.Random(f"{self.name}-{self.seed}-{self.train}")
            texts = [[self.scheme.training_caption(int(c), lv, rng) for _ in range(self.captions_per_image)]
                     for c, lv in zip(classes, attribute_levels.tolist())]
            cached = {"kind": self.name, "texts": texts, "levels": torch.from_numpy(attribute_levels),
                      "edges": torch.from_numpy(np.asarray(edges))}
            _write_cache(self.cache_path, cached)
        self._built = cached
        return cached

    def tensor(self) -> Tensor:
        return self._images.tensor()

    def labels(self) -> Tensor:
        return self._images.labels()

    def texts(self) -> list[list[str]]:
        return self._build()["texts"]

    def attribute_levels(self) -> Tensor:
        """-1 / 0 / +1 per sample and attribute (N, attributes), in the scheme's attribute order."""
        return self._build()["levels"]

    def vocabulary(self) -> Vocabulary:
        """Every word the scheme can use (training and held-out phrasings share it)."""
        return Vocabulary(self.scheme.vocabulary_words())

    def grid_prompts(self) -> list[str]:
        """The sample grid's rows: one prompt per class ("a zero" ... "a nine")."""
        return [self.scheme.phrase(0, names[0], []) for names in self.scheme.classes]

    def __len__(self) -> int:
        return len(self._images)

    def describe(self) -> str:
        return (f"{self.name} ({len(self)} samples of shape {tuple(self.shape)}, {self.captions_per_image} "
                f"captions each)")

    def split(self, train: bool) -> Any:
        return self._images.split(train)



class CaptionedFashionMNIST(CaptionedMNIST):
    """Fashion-MNIST images with captions from each garment's class, brightness and size."""

    scheme = FASHION_SCHEME
    source = "FashionMNIST"
    domain = "FashionMNIST"
    name = "fashion_captions"
