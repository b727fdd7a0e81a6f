"""Stacked MNIST: the mode-collapse benchmark of Unrolled GAN (Metz et al. 2017), VEEGAN (Srivastava et al.
2017) and PacGAN (Lin et al. 2018). Each sample stacks three MNIST digits as its R, G and B channels, so the
data has 1000 modes, one per triple of digits: label = 100 * d_R + 10 * d_G + d_B.

The set is built at run time from MNIST under dataset.root (never shipped, never copied into a repository)
and cached under $GANTRAIN_CACHE/datasets (else ~/.cache/gantrain/datasets), like the translation sets.
Generated samples are scored by `classify_stacked`: each channel is classified by the MNIST domain classifier
(gantrain.eval.classifier), and the three digits give the sample's mode (see gantrain.eval.evaluator, stacked_modes and
stacked_kl).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from gantrain import data
from gantrain.data.base import Dataset, _flag, _on_device, _whole, normalize
from gantrain.errors import GantrainError
from gantrain.data.cache import _is_images, _read_cache, _write_cache, datasets_cache_dir
from gantrain.data.translation import _split_generator, _split_name

#: modes of Stacked MNIST: one per triple of digits
NUM_MODES = 1000
#: training samples of PacGAN's and VEEGAN's stacked-MNIST experiments (see StackedMNIST)
TRAIN_SAMPLES = 128000
#: generated samples the metrics count modes on (VEEGAN, PacGAN: "num_test_sample": 26000, see StackedMNIST)
EVAL_SAMPLES = 26000


def stacked_labels(digits: Tensor) -> Tensor:
    """The mode of each triple of digits (int64 (N, 3), R, G, B): 100 * d_R + 10 * d_G + d_B, int64 (N,)."""
    digits = digits.long()
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


def label_digits(labels: Tensor) -> Tensor:
    """The three digits (R, G, B) of each mode in 0..999: int64 (N, 3); the inverse of stacked_labels."""
    labels = labels.long()
    return torch.stack([labels // 100, labels // 10 % 10, labels % 10], dim=1)


class StackedMNIST(Dataset):
    """Stacked MNIST: uint8 (N, 3, S, S) images whose channels are three MNIST digits, labelled by their triple.

    Sample i stacks the MNIST images at indices()[i] = (r, g, b), three positions drawn independently and
    uniformly (with replacement) from the split by a torch.Generator seeded with `seed` (and the split), so
    the same (image_size, num_samples, seed, split) always gives the same set. labels() gives the mode in
    0..999 (num_classes = 1000, so conditional=true works too).

    num_samples defaults to 128,000 training samples, the count of PacGAN's code for its VEEGAN-setting
    stacked-MNIST experiment (fjxmlzn/PacGAN, stacked_MNIST_experiments/VEEGAN_experiment/config.py:
    "num_training_sample": 128000, next to "num_test_sample": 26000 and batch size 64); PacGAN draws the
    three indices per sample with np.random.randint over the MNIST images the same way (model.py, load_mnist).
    That code draws from MNIST's training and test images together; here the training split (train=True)
    draws from MNIST's 60,000 training images only and `split(train=False)` from its 10,000 test images,
    which give the real-vs-real floor of the metrics.

    The set is built from the MNIST class (the same errors for a missing or damaged MNIST) and cached as
    stacked_mnist-<S>px-<N>-seed<seed>-<split>.pt under $GANTRAIN_CACHE/datasets (about 301 MB at the
    default 128,000 samples of 28 px).
    """

    name = "stacked_mnist"
    kind = "image"
    num_classes = NUM_MODES

    def __init__(self, root: str = "data", image_size: int = 28, num_samples: int = TRAIN_SAMPLES,
                 download: bool = True, on_device: str | bool = "auto", seed: int = 0, train: bool = True):
        self.train = _flag(train, "train")
        # the MNIST the digits come from: it checks root, image_size and download, and reads the files when needed
        self._mnist = data.MNIST(root=root, image_size=image_size, download=download, train=self.train)
        self.root, self.image_size, self.download = str(root), self._mnist.image_size, self._mnist.download
        self.num_samples = _whole(num_samples, "num_samples", 1, TRAIN_SAMPLES)
        self.seed = _whole(seed, "seed", 0, 0)
        self.on_device = _on_device(on_device)
        self.shape = (3, self.image_size, self.image_size)
        self._built: Optional[dict] = None

    @property
    def cache_path(self) -> Path:
        return datasets_cache_dir() / (f"stacked_mnist-{self.image_size}px-{self.num_samples}-seed{self.seed}-"
                                       f"{_split_name(self.train)}.pt")

    def _valid(self, content: dict) -> bool:
        images, labels, indices = content.get("images"), content.get("labels"), content.get("indices")
        n = self.num_samples
        return (content.get("kind") == "stacked_mnist" and _is_images(images, 3, self.image_size) and len(images) == n
                and isinstance(labels, Tensor) and labels.dtype == torch.int64 and tuple(labels.shape) == (n,)
                and int(labels.min()) >= 0 and int(labels.max()) < NUM_MODES
                and isinstance(indices, Tensor) and indices.dtype == torch.int64 and tuple(indices.shape) == (n, 3))

    def _build(self) -> dict:
        if self._built is not None:
            return self._built
        cached = _read_cache(self.cache_path, self._valid)
        if cached is None:
            digits, digit_labels = self._mnist.tensor(), self._mnist.labels()  # MNIST's own errors when missing
            indices = torch.randint(len(digits), (self.num_samples, 3), generator=_split_generator(self.seed, self.train))
            images = digits[indices.view(-1), 0].view(self.num_samples, 3, self.image_size, self.image_size)
            cached = {"kind": "stacked_mnist", "images": images.contiguous(), "indices": indices,
                      "labels": stacked_labels(digit_labels[indices])}
            _write_cache(self.cache_path, cached)
        self._built = cached
        return cached

    def tensor(self) -> Tensor:
        """All samples, uint8 (N, 3, S, S): channel c is the MNIST image at indices()[:, c]."""
        return self._build()["images"]

    def labels(self) -> Tensor:
        """The mode of every sample, int64 (N,) in 0..999: 100 * d_R + 10 * d_G + d_B."""
        return self._build()["labels"]

    def indices(self) -> Tensor:
        """Where every sample's channels come from: int64 (N, 3) positions in the MNIST split (R, G, B)."""
        return self._build()["indices"]

    def __len__(self) -> int:
        return self.num_samples

    def split(self, train: bool, num_samples: Optional[int] = None) -> "StackedMNIST":
        """The same set built from MNIST's training (train=True) or test digits; num_samples: its size (this one's)."""
        return StackedMNIST(root=self.root, image_size=self.image_size,
                            num_samples=self.num_samples if num_samples is None else num_samples,
                            download=self.download, on_device=self.on_device, seed=self.seed, train=train)

    def digits(self) -> data.MNIST:
        """MNIST at 28 px from the same root: what the domain classifier of the stacked metrics is trained on."""
        return data.MNIST(root=self.root, image_size=28, download=self.download)


@torch.no_grad()
def classify_digits(model: Any, images: Tensor, device: str | torch.device = "cpu", batch: int = 1000) -> Tensor:
    """The digit (argmax) of each one-channel image, int64 (M,) on the CPU.

    images: uint8 in [0, 255] or float data-space images in [-1, 1], (M, 1, H, W), resized (bilinear, antialiased)
    to the classifier's size when H differs. model: an MNIST DomainClassifier ((M, 1, s, s) -> logits (M, 10));
    a channels-last copy of it runs the batches (about twice as fast on CPUs, the same digits).
    """
    size = int(getattr(model, "in_shape", (1, 28, 28))[-1])
    device = torch.device(device)
    fast = copy.deepcopy(model).to(device=device, memory_format=torch.channels_last).eval()
    out = []
    for part in images.split(batch):
        x = normalize(part.to(device)) if part.dtype == torch.uint8 else part.to(device).float()
        x = torch.nan_to_num(x, nan=0.0).clamp(-1.0, 1.0)
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(fast(x.contiguous(memory_format=torch.channels_last)).argmax(1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


@torch.no_grad()
def classify_stacked(model: Any, images: Tensor, device: str | torch.device = "cpu", batch: int = 1000,
                     indices: Optional[Tensor] = None) -> Tensor:
    """The mode (0..999) of each stacked image, int64 (N,), on the CPU: 100 * d_R + 10 * d_G + d_B, each digit
    `classify_digits` of one channel (images: (N, 3, H, W), uint8 or data-space floats).

    indices (real Stacked MNIST, StackedMNIST.indices()): where each channel came from; each distinct source
    image is then classified once, which gives the same modes with far fewer classifier passes.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise GantrainError(f"stacked MNIST samples must be (N, 3, H, W) images, not {tuple(images.shape)}")
    n, _, h, w = images.shape
    channels = images.reshape(n * 3, 1, h, w)
    if indices is None:
        return stacked_labels(classify_digits(model, channels, device, batch).view(n, 3))
    if tuple(indices.shape) != (n, 3):
        raise ValueError(f"indices must be (N, 3) = ({n}, 3), not {tuple(indices.shape)}")
    distinct, where = torch.unique(indices.reshape(-1), return_inverse=True)
    first = torch.empty(len(distinct), dtype=torch.int64).scatter_(0, where, torch.arange(n * 3))  # one occurrence each
    digits = classify_digits(model, channels[first], device, batch)
    return stacked_labels(digits[where].view(n, 3))
