"""Generators and discriminators. Models know nothing of losses or training.

Generators map z ~ N(0, I) of shape (N, latent_dim) to data space: images in [-1, 1] as
(N, C, H, W) (tanh output), 2D points as (N, 2) (linear output). Discriminators map a data batch to
one raw logit per sample, shape (N,).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from .errors import GantrainError


class Generator(nn.Module):
    """Base of every generator: latent_dim, out_shape and sample(n)."""

    latent_dim: int
    out_shape: tuple[int, ...]

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n samples in data space, on the model's device; images (n, C, H, W) in [-1, 1], points (n, 2).

        n: a whole number >= 0 (an int, a numpy integer or a one-element integer tensor); 0 gives an empty batch.
        """
        try:  # __index__ takes every integer type and refuses 2.5, where int() would truncate it silently
            count = -1 if isinstance(n, bool) else n.__index__()
        except (AttributeError, TypeError, RuntimeError):
            count = -1
        if count < 0:
            shown = repr(n) if isinstance(n, (int, float, str)) else type(n).__name__  # a tensor's repr spans lines
            raise GantrainError(f"sample(n={shown}): n must be a whole number >= 0, the number of samples to draw")
        first = next(self.parameters())
        if count == 0:  # no forward pass: the DCGAN's view(n, -1, 1, 1) of z cannot size an empty batch
            return torch.empty((0, *self.out_shape), device=first.device, dtype=first.dtype)
        n, device = count, first.device
        if generator is not None:  # a private CPU generator: the same z on every device
            z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        else:
            z = torch.randn(n, self.latent_dim, device=device)
        return self(z)


def dcgan_plan(image_size: int) -> tuple[int, int]:
    """(base, n) with image_size = base * 2**n, n >= 1 and base >= 3 as large a power of two as fits."""
    n = 0
    while image_size % (2 ** (n + 1)) == 0 and image_size // 2 ** (n + 1) >= 3:
        n += 1
    if n == 0:
        raise GantrainError(
            f"dcgan cannot make {image_size}x{image_size} images: it needs image_size = b * 2^n with n >= 1 "
            f"and b >= 3 (e.g. 8, 12, 16, 28, 32, 64); set dataset.image_size to one of those"
        )
    return image_size // 2**n, n


def _image_shape(out_shape: Sequence[int], who: str) -> tuple[int, int, int]:
    if len(out_shape) != 3 or out_shape[1] != out_shape[2]:
        raise GantrainError(
            f"{who}=dcgan needs square images (C, H, W) but the dataset gives shape {tuple(out_shape)}; "
            f"use {who}=mlp for 2D data"
        )
    return tuple(out_shape)  # type: ignore[return-value]


def _norm2d(kind: str, channels: int, who: str) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise GantrainError(f"{who}.norm={kind!r} is not one of batch, layer, instance, none")


class DCGANGenerator(Generator):
    """DCGAN generator (Radford et al. 2016), sized from the dataset's (C, H, W).

    latent_dim: size of z. base_channels: width of the last hidden layer, doubled per layer towards z.
    """

    def __init__(self, out_shape: Sequence[int], latent_dim: int = 100, base_channels: int = 64, norm: str = "batch"):
        super().__init__()
        channels, size, _ = _image_shape(out_shape, "generator")
        if norm not in ("batch", "none"):
            raise GantrainError(f"generator.norm={norm!r} is not one of batch, none")
        base, n = dcgan_plan(size)
        self.latent_dim, self.out_shape = int(latent_dim), (channels, size, size)
        width = base_channels * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, width, base, 1, 0, bias=norm == "none"),
            _norm2d(norm, width, "generator"),
            nn.ReLU(True),
        ]
        for _ in range(n - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=norm == "none"),
                _norm2d(norm, width // 2, "generator"),
                nn.ReLU(True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class Discriminator(nn.Module):
    """Base of every discriminator: forward(x) gives one raw score per sample, shape (N,)."""


def _maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(module) if enabled else module


class DCGANDiscriminator(Discriminator):
    """DCGAN discriminator: strided 4x4 convolutions with LeakyReLU(0.2), then one logit per image."""

    def __init__(
        self,
        in_shape: Sequence[int],
        base_channels: int = 64,
        norm: str = "batch",
        spectral_norm: bool = False,
    ):
        super().__init__()
        channels, size, _ = _image_shape(in_shape, "discriminator")
        base, n = dcgan_plan(size)
        width = base_channels
        layers: list[nn.Module] = [_maybe_sn(nn.Conv2d(channels, width, 4, 2, 1), spectral_norm), nn.LeakyReLU(0.2, True)]
        for _ in range(n - 1):
            layers += [
                _maybe_sn(nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm == "none"), spectral_norm),
                _norm2d(norm, width * 2, "discriminator"),
                nn.LeakyReLU(0.2, True),
            ]
            width *= 2
        layers.append(_maybe_sn(nn.Conv2d(width, 1, base, 1, 0), spectral_norm))
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()


def _dcgan_init(module: nn.Module) -> None:
    # DCGAN's N(0, 0.02) weights; norm layers' scales N(1, 0.02).
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and hasattr(module, "weight"):
        weight = module.parametrizations.weight.original if hasattr(module, "parametrizations") else module.weight
        nn.init.normal_(weight, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _mlp(sizes: Sequence[int], norm: str, spectral_norm: bool, activation: nn.Module, who: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers.append(_maybe_sn(nn.Linear(a, b), spectral_norm))
        if norm == "batch":
            layers.append(nn.BatchNorm1d(b))
        elif norm == "layer":
            layers.append(nn.LayerNorm(b))
        elif norm != "none":
            raise GantrainError(f"{who}.norm={norm!r} is not one of batch, layer, none")
        layers.append(activation)
    return layers


class MLPGenerator(Generator):
    """Fully connected generator; tanh output for images (bounded data), linear for 2D points."""

    def __init__(
        self,
        out_shape: Sequence[int],
        bounded: bool = True,
        latent_dim: int = 2,
        hidden: Sequence[int] = (128, 128, 128),
        norm: str = "none",
    ):
        super().__init__()
        self.latent_dim, self.out_shape = int(latent_dim), tuple(out_shape)
        out = math.prod(self.out_shape)
        layers = _mlp([latent_dim, *hidden], norm, False, nn.ReLU(True), "generator")
        layers.append(nn.Linear(hidden[-1] if hidden else latent_dim, out))
        if bounded:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)


class MLPDiscriminator(Discriminator):
    """Fully connected discriminator on flattened inputs, LeakyReLU(0.2), one logit per sample."""

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden: Sequence[int] = (128, 128, 128),
        norm: str = "none",
        spectral_norm: bool = False,
    ):
        super().__init__()
        layers = _mlp([math.prod(in_shape), *hidden], norm, spectral_norm, nn.LeakyReLU(0.2, True), "discriminator")
        layers.append(_maybe_sn(nn.Linear(hidden[-1] if hidden else math.prod(in_shape), 1), spectral_norm))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).flatten()
