"""The Dataset interface, the raw <-> model-space maps (normalize, to_uint8_image), and the checks of
dataset settings every dataset module shares.

A dataset gives `shape` ((C, H, W) for images, (2,) for points), `kind` ('image' | 'points') and
either `tensor()` (the whole set on the CPU: images uint8, points float32) or, for streamed image
folders, `item(i)`. Batches leave the stream "raw" (uint8 images) and `normalize` maps them to the
model's data space: images to [-1, 1] float, points unchanged.

Labelled datasets also give `num_classes` and `labels()` (int64, aligned with the samples); a
conditional run's batches are then (samples, labels) pairs."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gantrain.errors import GantrainError


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


def grid_columns(n: int) -> int:
    """Columns of an about-square grid of n pictures: a divisor of n (full rows) from ceil(sqrt(n)) up to 1.5 times
    that where there is one (8: 4 x 2, 10: 5 x 2, 64: 8 x 8), else ceil(sqrt(n)) (7: 3 columns, 68: 9)."""
    if n <= 1:
        return 1
    square = math.isqrt(n - 1) + 1  # ceil(sqrt(n))
    return next((d for d in range(square, square * 3 // 2 + 1) if n % d == 0), square)


def is_hidden(path: Path, root: Path) -> bool:
    """Whether path lies in a hidden file or folder below root (a name starting with a dot: .ipynb_checkpoints,
    macOS's ._ files), which is no part of a folder's data."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


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
