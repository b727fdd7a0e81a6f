"""SNGAN's ResNet generator and discriminator (Miyato et al. 2018, "Spectral Normalization for Generative
Adversarial Networks", appendix B; the same networks as Mimicry's SNGAN 32 and 64 px models).

The generator maps z ~ N(0, I) through a linear layer to a 4x4 map (7x7 at 28 px), up-sampling residual
blocks (BN-ReLU-upsample-conv3x3-BN-ReLU-conv3x3, a 1x1 convolution on the shortcut), then BN-ReLU-conv3x3-tanh.
The discriminator is an optimised first block (conv-ReLU-conv-avgpool, shortcut avgpool-conv1x1), down-sampling
residual blocks (ReLU-conv-ReLU-conv-avgpool, shortcut conv1x1-avgpool), blocks without down-sampling, ReLU,
a sum over space and a linear layer to one logit, every weight spectrally normalised.

Image sizes (dataset.image_size), widths in units of base_channels:

  size  G: start, blocks                         D: blocks (v: down-samples)
  28    7x7, 2 blocks, every width 1             1v 1v 1 1       (the 32 px networks, one G block fewer)
  32    4x4, 3 blocks, every width 1             1v 1v 1 1       (the paper's CIFAR-10 networks)
  64    4x4, 4 blocks, widths 4 2 1 1/2 1/4      1/2v 1v 2v 4v 8v (Mimicry's 64 px networks)

so the defaults (G 256, D 128) give the published networks at 32 px and at 64 px (G 1024 -> 64 channels,
D 64 -> 1024). Other sizes (48 px STL-10 among them) are refused. Conditional models work as in
gantrain.nets.base: conditional batch norm in the generator's blocks, and projection, concat or ac in the
discriminator.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.errors import GantrainError
from gantrain.nets.base import (ConditionalBatchNorm2d, Discriminator, Generator, _check_classes, _conditioning, _ConditionalHead, _maybe_sn, _one_hot)

#: image_size -> generator widths (the start map's, then each block's output) in units of base_channels
_G_WIDTHS: dict[int, tuple[float, ...]] = {28: (1, 1, 1), 32: (1, 1, 1, 1), 64: (4, 2, 1, 0.5, 0.25)}
#: image_size -> discriminator blocks (width in units of base_channels, down-samples); the first is the optimised block
_D_BLOCKS: dict[int, tuple[tuple[float, bool], ...]] = {
    28: ((1, True), (1, True), (1, False), (1, False)),
    32: ((1, True), (1, True), (1, False), (1, False)),
    64: ((0.5, True), (1, True), (2, True), (4, True), (8, True)),
}
SNGAN_SIZES = tuple(sorted(_G_WIDTHS))


def _sizes() -> str:
    return ", ".join(map(str, SNGAN_SIZES[:-1])) + f" or {SNGAN_SIZES[-1]}"


def _square_size(shape: Sequence[int], who: str) -> tuple[int, int]:
    """(channels, size) of a supported square image shape (C, H, W); refuses the rest in one line."""
    if len(shape) != 3 or shape[1] != shape[2]:
        raise GantrainError(f"{who}=sngan needs square images (C, H, W) but the dataset gives shape {tuple(shape)}; "
                            f"use {who}=mlp for 2D data")
    channels, size = int(shape[0]), int(shape[1])
    if size not in _G_WIDTHS:
        raise GantrainError(f"{who}=sngan works on {_sizes()} px images, not {size}x{size}; set dataset.image_size "
                            f"to {_sizes()}")
    return channels, size


def _positive(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GantrainError(f"{key}={value!r} must be a whole number >= 1")
    return value


def _width(base: int, factor: float) -> int:
    return max(1, int(base * factor))


def _init(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """Xavier-uniform weights with `gain` and zero biases; applied before spectral norm, whose power iteration
    then starts from these weights."""
    nn.init.xavier_uniform_(module.weight, gain)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


RESIDUAL_GAIN = math.sqrt(2.0)  # Xavier gain of the 3x3 convolutions on residual paths (ReLU before them)


class _UpBlock(nn.Module):
    """BN-ReLU-upsample x2-conv3x3-BN-ReLU-conv3x3, plus a 1x1 convolution of the up-sampled input.

    The shortcut convolves before up-sampling: a 1x1 convolution and nearest up-sampling commute, so this is
    the same function at a quarter of the cost. Batch norms are conditional when num_classes > 0.
    """

    def __init__(self, c_in: int, c_out: int, num_classes: int):
        super().__init__()
        self.norm1 = ConditionalBatchNorm2d(c_in, num_classes) if num_classes else nn.BatchNorm2d(c_in)
        self.conv1 = _init(nn.Conv2d(c_in, c_out, 3, 1, 1), RESIDUAL_GAIN)
        self.norm2 = ConditionalBatchNorm2d(c_out, num_classes) if num_classes else nn.BatchNorm2d(c_out)
        self.conv2 = _init(nn.Conv2d(c_out, c_out, 3, 1, 1), RESIDUAL_GAIN)
        self.shortcut = _init(nn.Conv2d(c_in, c_out, 1, 1, 0))

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        h = F.relu(self.norm1(x, y) if y is not None else self.norm1(x))
        h = self.conv1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.conv2(F.relu(self.norm2(h, y) if y is not None else self.norm2(h)))
        return h + F.interpolate(self.shortcut(x), scale_factor=2, mode="nearest")


class SNGANGenerator(Generator):
    """SNGAN's ResNet generator, sized from the dataset's (C, H, W) for 28, 32 or 64 px images (table above).

    latent_dim: size of z (128 in the paper). base_channels: width of every block at 28/32 px (256 in the
    paper); at 64 px the widths run from 4x down to 1/4 of it (1024 ... 64 with 256). bounded: tanh output
    (the builder passes True for images). num_classes (set by the trainer for conditional runs): conditional
    batch norm in the residual blocks (the last batch norm stays unconditional, as in Miyato & Koyama 2018);
    then call it as G(z, labels).

    Initialisation as the references (Miyato's Chainer code, Mimicry): Xavier-uniform (Glorot) weights, gain
    sqrt(2) on the residual 3x3 convolutions and 1 on the first linear layer, the shortcuts and the output
    convolution; zero biases (Chainer's default); batch-norm scales 1 and shifts 0.
    """

    def __init__(self, out_shape: Sequence[int], latent_dim: int = 128, base_channels: int = 256, bounded: bool = True,
                 num_classes: int = 0):
        super().__init__()
        channels, size = _square_size(out_shape, "generator")
        latent_dim = _positive(latent_dim, "generator.latent_dim")
        base = _positive(base_channels, "generator.base_channels")
        classes = _check_classes(num_classes)
        self.latent_dim, self.out_shape, self.num_classes = latent_dim, (channels, size, size), classes or None
        widths = [_width(base, f) for f in _G_WIDTHS[size]]
        self.bottom = size // 2 ** (len(widths) - 1)
        self.linear = _init(nn.Linear(latent_dim, self.bottom**2 * widths[0]))
        self.blocks = nn.ModuleList(_UpBlock(a, b, classes) for a, b in zip(widths[:-1], widths[1:]))
        self.norm = nn.BatchNorm2d(widths[-1])
        self.out = _init(nn.Conv2d(widths[-1], channels, 3, 1, 1))
        self.bounded = bool(bounded)

    def forward(self, z: Tensor, y: Optional[Tensor] = None) -> Tensor:
        if self.num_classes is None:
            y = None
        elif y is None:
            raise GantrainError("this generator is conditional: call it as G(z, labels)")
        h = self.linear(z.flatten(1)).view(z.shape[0], -1, self.bottom, self.bottom)
        for block in self.blocks:
            h = block(h, y)
        h = self.out(F.relu(self.norm(h)))
        return torch.tanh(h) if self.bounded else h


class _DownBlock(nn.Module):
    """ReLU-conv3x3-ReLU-conv3x3[-avgpool] plus a shortcut: conv1x1[-avgpool] when the width changes or it
    down-samples, else the identity. optimised=True: the first block, conv3x3-ReLU-conv3x3-avgpool (no ReLU on
    the image) with an avgpool-conv1x1 shortcut. The hidden width is the input's (Miyato's code), except in the
    optimised block (the output's). Shortcuts average-pool before their 1x1 convolution: both are linear and
    commute, so this is the same function at a quarter of the cost.
    """

    def __init__(self, c_in: int, c_out: int, downsample: bool, optimised: bool, spectral_norm: bool):
        super().__init__()
        hidden = c_out if optimised else c_in
        self.optimised, self.downsample = optimised, downsample or optimised
        self.conv1 = _maybe_sn(_init(nn.Conv2d(c_in, hidden, 3, 1, 1), RESIDUAL_GAIN), spectral_norm)
        self.conv2 = _maybe_sn(_init(nn.Conv2d(hidden, c_out, 3, 1, 1), RESIDUAL_GAIN), spectral_norm)
        learnable = optimised or downsample or c_in != c_out
        self.shortcut = _maybe_sn(_init(nn.Conv2d(c_in, c_out, 1, 1, 0)), spectral_norm) if learnable else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(x if self.optimised else F.relu(x))
        h = self.conv2(F.relu(h))
        skip = x
        if self.downsample:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        if self.shortcut is not None:
            skip = self.shortcut(skip)
        return h + skip


class SNGANDiscriminator(Discriminator):
    """SNGAN's ResNet discriminator for 28, 32 or 64 px images (table above), one logit per image.

    base_channels: width of every block at 28/32 px (128 in the paper); at 64 px the blocks run from 1/2 to 8x
    of it (64 ... 1024 with 128). spectral_norm: spectral normalisation of every weight (SNGAN's point; one
    power iteration per forward pass). Conditional (num_classes > 0, set by the trainer): `conditioning`
    projection (the summed last features against a class embedding, Miyato & Koyama 2018), concat (one-hot
    label planes beside the image channels) or ac (a classifier of the summed last features).

    Initialisation as the references: Xavier-uniform (Glorot) weights, gain sqrt(2) on the residual 3x3
    convolutions and 1 on the shortcuts and the last linear layer; zero biases (Chainer's default). The class
    embedding / classifier of the conditional head are initialised as in gantrain.nets.base (spectral norm
    rescales them anyway).
    """

    def __init__(self, in_shape: Sequence[int], base_channels: int = 128, spectral_norm: bool = True,
                 num_classes: int = 0, conditioning: str = "projection"):
        super().__init__()
        channels, size = _square_size(in_shape, "discriminator")
        base = _positive(base_channels, "discriminator.base_channels")
        classes = _conditioning(num_classes, conditioning)
        self.num_classes, self.conditioning = classes or None, conditioning
        width = channels + (classes if classes and conditioning == "concat" else 0)
        blocks = []
        for i, (factor, down) in enumerate(_D_BLOCKS[size]):
            blocks.append(_DownBlock(width, _width(base, factor), down, i == 0, bool(spectral_norm)))
            width = _width(base, factor)
        self.blocks = nn.Sequential(*blocks)
        self.linear = _maybe_sn(_init(nn.Linear(width, 1)), bool(spectral_norm))
        if classes:
            self.head = _ConditionalHead(width, classes, conditioning, bool(spectral_norm))

    def features(self, x: Tensor) -> Tensor:
        """The last features summed over space, (N, F): what the linear layer and the conditional head see."""
        return F.relu(self.blocks(x)).sum((2, 3))

    def forward(self, x: Tensor, y: Optional[Tensor] = None, classes: bool = False) -> Any:
        if self.num_classes is None:
            return self.linear(self.features(x)).flatten()
        if y is None:
            raise GantrainError("this discriminator is conditional: call it as D(x, labels)")
        if self.conditioning == "concat":
            planes = _one_hot(y, self.num_classes, x)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, planes], 1)
        h = self.features(x)
        return self.head(self.linear(h).flatten(), h, y, classes)
