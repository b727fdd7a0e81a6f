"""Generators and discriminators. Models know nothing of losses or training.

Generators map z ~ N(0, I) of shape (N, latent_dim) to data space: images in [-1, 1] as
(N, C, H, W) (tanh output), 2D points as (N, 2) (linear output). Discriminators map a data batch to
one raw logit per sample, shape (N,).

Class-conditional models (num_classes > 0) take the labels too: G(z, y) and D(x, y), y int64 of
shape (N,). The generator conditions through conditional batch norm (convolutional) or a label
embedding concatenated with z (MLP); the discriminator through a projection (Miyato & Koyama 2018),
a concatenation of the one-hot label to its input, or an auxiliary classifier head (AC-GAN,
Odena et al. 2017), whose class logits `D(x, y, classes=True)` returns beside the logit.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from .errors import GantrainError


class Generator(nn.Module):
    """Base of every generator: latent_dim, out_shape and sample(n)."""

    latent_dim: int
    out_shape: tuple[int, ...]

    num_classes: Optional[int] = None  # classes of a conditional generator; None when unconditional

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None, labels: Any = None,
               truncation: Optional[float] = None) -> Tensor:
        """n samples in data space, on the model's device; images (n, C, H, W) in [-1, 1], points (n, 2).

        n: a whole number >= 0 (an int, a numpy integer or a one-element integer tensor); 0 gives an empty batch.
        labels (conditional generators): n class indices (a sequence or tensor) or one index for all; None
        draws them uniformly. truncation: resample the components of z beyond +-truncation (the truncation trick).
        """
        try:  # __index__ takes every integer type and refuses 2.5, where int() would truncate it silently
            count = -1 if isinstance(n, bool) else n.__index__()
        except (AttributeError, TypeError, RuntimeError):
            count = -1
        if count < 0:
            shown = repr(n) if isinstance(n, (int, float, str)) else type(n).__name__  # a tensor's repr spans lines
            raise GantrainError(f"sample(n={shown}): n must be a whole number >= 0, the number of samples to draw")
        first = next(self.parameters())
        y = self.check_labels(labels, count, generator)
        if count == 0:  # no forward pass: the DCGAN's view(n, -1, 1, 1) of z cannot size an empty batch
            return torch.empty((0, *self.out_shape), device=first.device, dtype=first.dtype)
        n, device = count, first.device
        if generator is not None:  # a private CPU generator: the same z on every device
            z = torch.randn(n, self.latent_dim, generator=generator)
            z = truncate(z, truncation, generator).to(device)
        else:
            z = truncate(torch.randn(n, self.latent_dim, device=device), truncation)
        return self(z) if y is None else self(z, y.to(device))

    def check_labels(self, labels: Any, n: int, generator: Optional[torch.Generator] = None) -> Optional[Tensor]:
        """The labels of n samples as an int64 CPU tensor (drawn uniformly when None), or None when unconditional."""
        if not self.num_classes:
            if labels is not None:
                raise GantrainError("labels given, but this generator is unconditional (trained without conditional=true)")
            return None
        if labels is None:
            return torch.randint(self.num_classes, (n,), generator=generator)
        y = torch.as_tensor(labels).detach().cpu()
        if y.is_floating_point() or y.dtype == torch.bool or y.dim() > 1:
            raise GantrainError(f"labels must be whole class numbers 0..{self.num_classes - 1}, one per sample")
        y = y.long().expand(n) if y.dim() == 0 else y.long()
        if len(y) != n:
            raise GantrainError(f"{len(y)} labels for {n} samples; give one label per sample, or one for all")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise GantrainError(f"label {bad} is outside the generator's classes 0..{self.num_classes - 1}")
        return y


def truncate(z: Tensor, threshold: Optional[float], generator: Optional[torch.Generator] = None) -> Tensor:
    """z with every component beyond +-threshold redrawn until inside (a truncated normal); None: z unchanged."""
    if threshold is None:
        return z
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < math.inf:
        raise GantrainError(f"truncation={threshold!r} must be a positive number (e.g. 0.7); smaller trades variety for quality")
    z = z.clone()
    outside = z.abs() > threshold
    while bool(outside.any()):
        fresh = torch.randn(int(outside.sum()), generator=generator, device=z.device if generator is None else "cpu")
        z[outside] = fresh.to(z.device, z.dtype)
        outside = z.abs() > threshold
    return z


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without its own affine, then a per-class scale (initialised at 1) and shift (at 0)."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.scale = nn.Embedding(num_classes, num_features)
        self.shift = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.norm(x) * self.scale(y)[:, :, None, None] + self.shift(y)[:, :, None, None]


def _positive(who: str, **sizes: Any) -> None:
    """Refuse a width or size below 1 (a network with no channels builds, then fails at its first step)."""
    for key, value in sizes.items():
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise GantrainError(f"{who}.{key}={value!r} must be {'whole numbers' if len(values) > 1 else 'a whole number'} "
                                f"of 1 or more")


def _check_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise GantrainError(f"num_classes={num_classes!r} must be a whole number >= 0 (0: unconditional)")
    return num_classes


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
    """

    def __init__(self, out_shape: Sequence[int], latent_dim: int = 100, base_channels: int = 64, norm: str = "batch",
                 num_classes: int = 0, label_input: bool = False):
        super().__init__()
        channels, size, _ = _image_shape(out_shape, "generator")
        _positive("generator", latent_dim=latent_dim, base_channels=base_channels)
        if norm not in ("batch", "none"):
            raise GantrainError(f"generator.norm={norm!r} is not one of batch, none")
        classes = _check_classes(num_classes)
        base, n = dcgan_plan(size)
        self.latent_dim, self.out_shape = int(latent_dim), (channels, size, size)
        self.num_classes = classes or None
        concat = classes > 0 and (norm == "none" or bool(label_input))
        # norm=none: an embedding as wide as z (what it has always been); label_input: a narrow one, as the MLP's,
        # since a 100-value embedding beside z drowned z out (each label drew one digit, some the wrong one)
        embedding = LABEL_EMBEDDING if classes and norm == "batch" and label_input else latent_dim
        width = base_channels * 2 ** (n - 1)

        def bn(features: int) -> nn.Module:
            if classes and norm == "batch":
                return ConditionalBatchNorm2d(features, classes)
            return _norm2d(norm, features, "generator")

        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim + (embedding if concat else 0), width, base, 1, 0, bias=norm == "none"),
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


class Discriminator(nn.Module):
    """Base of every discriminator: forward(x) gives one raw score per sample, shape (N,).

    Conditional ones (num_classes > 0) are called D(x, y); with conditioning="ac", D(x, y, classes=True)
    gives (logits, class logits (N, num_classes)).
    """

    num_classes: Optional[int] = None
    conditioning: str = "projection"


CONDITIONINGS = ("projection", "concat", "ac")


def _maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(module) if enabled else module


class _ConditionalHead(nn.Module):
    """What a discriminator adds for labels, given its last features h (N, F) and its unconditional logit."""

    def __init__(self, features: int, num_classes: int, conditioning: str, spectral_norm: bool):
        super().__init__()
        if conditioning == "projection":  # logit + <embed(y), h>
            self.embed = _maybe_sn(nn.Embedding(num_classes, features), spectral_norm)
            nn.init.normal_(self.embed.parametrizations.weight.original if spectral_norm else self.embed.weight, 0.0, 0.02)
        elif conditioning == "ac":  # an auxiliary classifier of h
            self.classify = _maybe_sn(nn.Linear(features, num_classes), spectral_norm)

    def forward(self, logit: Tensor, h: Tensor, y: Tensor, classes: bool) -> Any:
        if hasattr(self, "embed"):
            logit = logit + (self.embed(y) * h).sum(1)
        if classes:
            return logit, self.classify(h) if hasattr(self, "classify") else None
        return logit


def _conditioning(num_classes: Any, conditioning: str) -> int:
    classes = _check_classes(num_classes)
    if classes and conditioning not in CONDITIONINGS:
        raise GantrainError(f"condition.discriminator={conditioning!r} is not one of {', '.join(CONDITIONINGS)}")
    return classes


def _one_hot(y: Tensor, num_classes: int, like: Tensor) -> Tensor:
    return torch.nn.functional.one_hot(y, num_classes).to(like.dtype)


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
        self.apply(_dcgan_init)
        if classes:
            features = width if conditioning == "projection" else width * base * base
            self.head = _ConditionalHead(features, classes, conditioning, spectral_norm)

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


def _mlp(sizes: Sequence[int], norm: str, spectral_norm: bool, activation: nn.Module, who: str) -> list[nn.Module]:
    if len(sizes) > 1:
        _positive(who, hidden=list(sizes[1:]))
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
    """Fully connected generator; tanh output for images (bounded data), linear for 2D points.

    num_classes (set by the trainer for conditional runs): a 16-value label embedding concatenated with z.
    """

    def __init__(
        self,
        out_shape: Sequence[int],
        bounded: bool = True,
        latent_dim: int = 2,
        hidden: Sequence[int] = (128, 128, 128),
        norm: str = "none",
        num_classes: int = 0,
    ):
        super().__init__()
        _positive("generator", latent_dim=latent_dim)
        classes = _check_classes(num_classes)
        self.latent_dim, self.out_shape, self.num_classes = int(latent_dim), tuple(out_shape), classes or None
        out = math.prod(self.out_shape)
        width_in = latent_dim + (LABEL_EMBEDDING if classes else 0)
        layers = _mlp([width_in, *hidden], norm, False, nn.ReLU(True), "generator")
        layers.append(nn.Linear(hidden[-1] if hidden else width_in, out))
        if bounded:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        if classes:
            self.embed = nn.Embedding(classes, LABEL_EMBEDDING)

    def forward(self, z: Tensor, y: Optional[Tensor] = None) -> Tensor:
        if self.num_classes is not None:
            if y is None:
                raise GantrainError("this generator is conditional: call it as G(z, labels)")
            z = torch.cat([z, self.embed(y)], 1)
        return self.net(z).view(z.shape[0], *self.out_shape)


LABEL_EMBEDDING = 16  # values of the MLP generator's label embedding


class MLPDiscriminator(Discriminator):
    """Fully connected discriminator on flattened inputs, LeakyReLU(0.2), one logit per sample.

    Conditional (num_classes > 0): projection, concat (one-hot label beside the input) or ac, as DCGAN's.

    pack (PacGAN, Lin et al. 2018): D judges `pack` samples jointly. A batch (B, ...) is flattened and
    reshaped to (B / pack, pack * d), so that each row concatenates `pack` consecutive samples (all real
    or all generated, as the game calls D on one kind at a time), and D gives one logit per pack, shape
    (B / pack,). Seeing several samples at once lets D notice a generator that misses modes or puts
    samples between them. pack=1 is the ordinary discriminator; B must be divisible by pack, and packing
    is refused for conditional discriminators (one logit would judge samples of different labels).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden: Sequence[int] = (128, 128, 128),
        norm: str = "none",
        spectral_norm: bool = False,
        num_classes: int = 0,
        conditioning: str = "projection",
        pack: int = 1,
    ):
        super().__init__()
        classes = _conditioning(num_classes, conditioning)
        if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
            raise GantrainError(f"discriminator.pack={pack!r} must be a whole number >= 1 (1: no packing)")
        if pack > 1 and classes:
            raise GantrainError(f"discriminator.pack={pack} cannot be combined with conditional=true (num_classes="
                                f"{classes}): one packed logit would judge samples of different labels; "
                                f"set discriminator.pack=1")
        self.num_classes, self.conditioning, self.pack = classes or None, conditioning, pack
        width_in = math.prod(in_shape) * pack + (classes if classes and conditioning == "concat" else 0)
        layers = _mlp([width_in, *hidden], norm, spectral_norm, nn.LeakyReLU(0.2, True), "discriminator")
        last = hidden[-1] if hidden else width_in
        layers.append(_maybe_sn(nn.Linear(last, 1), spectral_norm))
        self.net = nn.Sequential(*layers)
        if classes:
            self.head = _ConditionalHead(last, classes, conditioning, spectral_norm)

    def packed(self, x: Tensor) -> Tensor:
        """x (B, ...) as (B / pack, pack * d): row i holds samples i*pack .. i*pack + pack - 1, flattened."""
        x = x.flatten(1)
        if self.pack == 1:
            return x
        n = x.shape[0]
        if n % self.pack:
            raise GantrainError(f"a batch of {n} samples does not split into packs of discriminator.pack={self.pack}; "
                                f"set trainer.batch_size to a multiple of {self.pack} (or discriminator.pack=1)")
        return x.reshape(n // self.pack, -1)

    def forward(self, x: Tensor, y: Optional[Tensor] = None, classes: bool = False) -> Any:
        if self.num_classes is None:
            return self.net(self.packed(x)).flatten()
        if y is None:
            raise GantrainError("this discriminator is conditional: call it as D(x, labels)")
        h = x.flatten(1)
        if self.conditioning == "concat":
            h = torch.cat([h, _one_hot(y, self.num_classes, h)], 1)
        for layer in self.net[:-1]:
            h = layer(h)
        return self.head(self.net[-1](h).flatten(), h, y, classes)
