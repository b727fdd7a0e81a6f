"""DCGAN (Radford et al. 2016): strided-convolution generator and discriminator for square images."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from gantrain.errors import GantrainError
from gantrain.nets.base import (
    LABEL_EMBEDDING,
    ConditionalBatchNorm2d,
    Discriminator,
    ModulatedBatchNorm2d,
    Generator,
    _check_classes,
    _ConditionalHead,
    _conditioning,
    _maybe_sn,
    _one_hot,
    _positive,
)


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
    num_classes (set by the trainer for conditional runs): conditional batch norm in place of batch norm
    (norm=batch), or a label embedding of latent_dim values concatenated with z (norm=none).
    label_input (conditional, norm=batch): also concatenate a label embedding of 16 values with z. Conditional batch
    norm alone learns labels slowly: its per-class scales and shifts start equal (1 and 0) and Adam moves
    each by about the learning rate a step, and at 8x8 (one hidden layer) they are G's only label path.
    False (the default, and what runs written before 0.8.0 trained) keeps batch norm as the only path.
    condition_dim (set by the trainer for text runs): G(z, c) with a continuous condition c (N, condition_dim):
    c beside z, and every batch norm's scale and shift modulated by it (ModulatedBatchNorm2d; norm=batch).
    """

    def __init__(self, out_shape: Sequence[int], latent_dim: int = 100, base_channels: int = 64, norm: str = "batch",
                 num_classes: int = 0, label_input: bool = False, condition_dim: int = 0):
        super().__init__()
        channels, size, _ = _image_shape(out_shape, "generator")
        _positive("generator", latent_dim=latent_dim, base_channels=base_channels)
        if norm not in ("batch", "none"):
            raise GantrainError(f"generator.norm={norm!r} is not one of batch, none")
        classes = _check_classes(num_classes)
        if condition_dim and (classes or norm != "batch"):
            raise GantrainError("generator=dcgan takes a text condition with norm=batch and no classes")
        base, n = dcgan_plan(size)
        self.latent_dim, self.out_shape = int(latent_dim), (channels, size, size)
        self.num_classes = classes or None
        self.condition_dim = int(condition_dim)
        concat = classes > 0 and (norm == "none" or bool(label_input))
        # norm=none: an embedding as wide as z (what it has always been); label_input: a narrow one, as the MLP's,
        # since a 100-value embedding beside z drowned z out (each label drew one digit, some the wrong one)
        embedding = LABEL_EMBEDDING if classes and norm == "batch" and label_input else latent_dim
        width = base_channels * 2 ** (n - 1)

        def bn(features: int) -> nn.Module:
            if self.condition_dim:
                return ModulatedBatchNorm2d(features, self.condition_dim)
            if classes and norm == "batch":
                return ConditionalBatchNorm2d(features, classes)
            return _norm2d(norm, features, "generator")

        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim + (embedding if concat else self.condition_dim), width, base, 1, 0,
                               bias=norm == "none"),
            bn(width),
            nn.ReLU(True),
        ]
        for _ in range(n - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=norm == "none"),
                bn(width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)
        if concat:
            self.embed = nn.Embedding(classes, embedding)

    def forward(self, z: Tensor, y: Optional[Tensor] = None) -> Tensor:
        if self.condition_dim:  # y: the continuous condition c (N, condition_dim)
            h = torch.cat([z, y], 1).view(z.shape[0], -1, 1, 1)
            for layer in self.net:
                h = layer(h, y) if isinstance(layer, ModulatedBatchNorm2d) else layer(h)
            return h
        if self.num_classes is None:
            return self.net(z.view(z.shape[0], -1, 1, 1))
        if y is None:
            raise GantrainError("this generator is conditional: call it as G(z, labels)")
        if hasattr(self, "embed"):
            z = torch.cat([z, self.embed(y)], 1)
        h = z.view(z.shape[0], -1, 1, 1)
        for layer in self.net:
            h = layer(h, y) if isinstance(layer, ConditionalBatchNorm2d) else layer(h)
        return h


class DCGANDiscriminator(Discriminator):
    """DCGAN discriminator: strided 4x4 convolutions with LeakyReLU(0.2), then one logit per image.

    Conditional (num_classes > 0, set by the trainer): `conditioning` projection (the last features,
    summed over space, against a class embedding), concat (one-hot label planes beside the image
    channels) or ac (a classifier of the last features).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        base_channels: int = 64,
        norm: str = "batch",
        spectral_norm: bool = False,
        num_classes: int = 0,
        conditioning: str = "projection",
    ):
        super().__init__()
        channels, size, _ = _image_shape(in_shape, "discriminator")
        _positive("discriminator", base_channels=base_channels)
        classes = _conditioning(num_classes, conditioning)
        self.num_classes, self.conditioning = classes or None, conditioning
        base, n = dcgan_plan(size)
        width = base_channels
        first_in = channels + (classes if classes and conditioning == "concat" else 0)
        layers: list[nn.Module] = [_maybe_sn(nn.Conv2d(first_in, width, 4, 2, 1), spectral_norm), nn.LeakyReLU(0.2, True)]
        for _ in range(n - 1):
            layers += [
                _maybe_sn(nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm == "none"), spectral_norm),
                _norm2d(norm, width * 2, "discriminator"),
                nn.LeakyReLU(0.2, True),
            ]
            width *= 2
        layers.append(_maybe_sn(nn.Conv2d(width, 1, base, 1, 0), spectral_norm))
        self.net = nn.Sequential(*layers)
        self.feature_dim = width  # of text_features(x)
        self.apply(_dcgan_init)
        if classes:
            features = width if conditioning == "projection" else width * base * base
            self.head = _ConditionalHead(features, classes, conditioning, spectral_norm)

    def text_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(the unconditional logit (N,), the last hidden features summed over space (N, feature_dim)): what a
        text-conditioned D projects the caption's embedding onto."""
        h = x
        for layer in self.net[:-1]:
            h = layer(h)
        return self.net[-1](h).flatten(), h.sum((2, 3))

    def forward(self, x: Tensor, y: Optional[Tensor] = None, classes: bool = False) -> Any:
        if self.num_classes is None:
            return self.net(x).flatten()
        if y is None:
            raise GantrainError("this discriminator is conditional: call it as D(x, labels)")
        if self.conditioning == "concat":
            planes = _one_hot(y, self.num_classes, x)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, planes], 1)
        h = x
        for layer in self.net[:-1]:
            h = layer(h)
        logit = self.net[-1](h).flatten()
        pooled = h.sum((2, 3)) if self.conditioning == "projection" else h.flatten(1)
        return self.head(logit, pooled, y, classes)


def _dcgan_init(module: nn.Module) -> None:
    # DCGAN's N(0, 0.02) weights; norm layers' scales N(1, 0.02).
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and hasattr(module, "weight"):
        weight = module.parametrizations.weight.original if hasattr(module, "parametrizations") else module.weight
        nn.init.normal_(weight, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
