"""MLP generator and discriminator: the 2D mixtures and small vectors."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from gantrain.errors import GantrainError
from gantrain.nets.base import (
    LABEL_EMBEDDING,
    Discriminator,
    Generator,
    _check_classes,
    _ConditionalHead,
    _conditioning,
    _maybe_sn,
    _one_hot,
    _positive,
)


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
