"""What every network family shares: the Generator and Discriminator bases, truncation, class-conditional
batch norm and the label heads of a discriminator (projection, concat, ac)."""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from gantrain.config import CONDITIONINGS
from gantrain.errors import GantrainError

#: values of the label embedding a generator puts beside z (the MLP generator, and DCGAN with label_input)
LABEL_EMBEDDING = 16


class Generator(nn.Module):
    """Base of every generator: latent_dim, out_shape and sample(n)."""

    latent_dim: int
    out_shape: tuple[int, ...]

    num_classes: Optional[int] = None  # classes of a conditional generator; None when unconditional
    class_names: Optional[list[str]] = None  # their names, where the run trained on an image folder's class folders
    truncation_in_w = False  # a style-based generator: sample's psi moves w toward w_avg (forward's psi)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None, labels: Any = None,
               truncation: Optional[float] = None, text: Any = None, psi: Optional[float] = None) -> Tensor:
        """n samples in data space, on the model's device; images (n, C, H, W) in [-1, 1], points (n, 2).

        n: a whole number >= 0 (an int, a numpy integer or a one-element integer tensor); 0 gives an empty batch.
        labels (conditional generators): n class indices (a sequence or tensor) or one index for all; None
        draws them uniformly. truncation: resample the components of z beyond +-truncation (the truncation trick).
        psi (style-based generators, truncation_in_w): w moved toward its running mean w_avg, from 0 (the average
        image) to MAX_PSI (1: unchanged), as gantrain-sample's truncation= does for them.
        text: only for generators of text runs (refused here).
        """
        if text is not None:
            raise GantrainError("text given, but this generator is not conditioned on text (a text run trains with "
                                "condition.text_encoder=..., e.g. experiment=text_mnist)")
        try:  # __index__ takes every integer type and refuses 2.5, where int() would truncate it silently
            count = -1 if isinstance(n, bool) else n.__index__()
        except (AttributeError, TypeError, RuntimeError):
            count = -1
        if count < 0:
            shown = repr(n) if isinstance(n, (int, float, str)) else type(n).__name__  # a tensor's repr spans lines
            raise GantrainError(f"sample(n={shown}): n must be a whole number >= 0, the number of samples to draw")
        if psi is not None and not self.truncation_in_w:
            raise GantrainError(f"psi={psi!r} moves w toward its mean, and only a style-based generator "
                                f"(generator=stylegan2) has a W space; use truncation= (in z) here")
        first = next(self.parameters())
        y = self.check_labels(labels, count, generator)
        if count == 0:  # no forward pass: the DCGAN's view(n, -1, 1, 1) of z cannot size an empty batch
            return torch.empty((0, *self.out_shape), device=first.device, dtype=first.dtype)
        n, device = count, first.device
        extra = {"psi": check_psi(psi)} if psi is not None else {}
        if generator is not None:  # a private CPU generator: the same z on every device
            z = torch.randn(n, self.latent_dim, generator=generator)
            z = truncate(z, truncation, generator).to(device)
        else:
            z = truncate(torch.randn(n, self.latent_dim, device=device), truncation)
        return self(z, **extra) if y is None else self(z, y.to(device), **extra)

    def check_labels(self, labels: Any, n: int, generator: Optional[torch.Generator] = None) -> Optional[Tensor]:
        """The labels of n samples as an int64 CPU tensor (drawn uniformly when None), or None when unconditional."""
        if not self.num_classes:
            if labels is not None:
                raise GantrainError("labels given, but this generator is unconditional (trained without conditional=true)")
            return None
        if labels is None:
            return torch.randint(self.num_classes, (n,), generator=generator)
        names = getattr(self, "class_names", None)
        if isinstance(labels, str) or (isinstance(labels, (list, tuple)) and any(isinstance(v, str) for v in labels)):
            if not names:
                raise GantrainError(f"labels are class numbers 0..{self.num_classes - 1} here (this run's classes have "
                                    f"no names), not {labels!r}")
            given = [labels] if isinstance(labels, str) else list(labels)
            unknown = [v for v in given if isinstance(v, str) and v not in names]
            if unknown:
                raise GantrainError(f"{unknown[0]!r} is not one of this run's classes: {', '.join(names)}")
            numbers = [names.index(v) if isinstance(v, str) else v for v in given]
            labels = numbers[0] if isinstance(labels, str) else numbers  # one name: one class for all
        try:
            y = torch.as_tensor(labels).detach().cpu()
        except (TypeError, ValueError, RuntimeError):
            raise GantrainError(f"labels must be whole class numbers 0..{self.num_classes - 1}, one per sample or one "
                                f"for all, not {labels!r}") from None
        if y.is_floating_point() or y.dtype == torch.bool or y.dim() > 1:
            raise GantrainError(f"labels must be whole class numbers 0..{self.num_classes - 1}, one per sample")
        y = y.long().expand(n) if y.dim() == 0 else y.long()
        if len(y) != n:
            raise GantrainError(f"{len(y)} labels for {n} samples; give one label per sample, or one for all")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise GantrainError(f"label {bad} is outside the generator's classes 0..{self.num_classes - 1}")
        return y


def fixed_noise(module: nn.Module, fixed: bool = True) -> nn.Module:
    """A style-based generator (alone, or inside a text generator) set to draw with each layer's fixed noise input,
    as a loaded or exported generator does: a seed then decides a sample; fixed=False: fresh noise every call, as
    in training and in the metrics (StyleGAN2's protocol). Other generators are left as they are; returns module."""
    for m in module.modules():
        if getattr(m, "noise_mode", None) in ("random", "const"):
            m.noise_mode = "const" if fixed else "random"
    return module


#: the largest truncation psi in W: beyond 1 it extrapolates away from the average, and far beyond it the
#: latents leave any range the generator has seen (and float32's, around 1e38)
MAX_PSI = 10.0


def check_psi(psi: Any) -> float:
    """A truncation psi in W: a number from 0 (the average image) to MAX_PSI (1: no truncation)."""
    if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not 0 <= psi <= MAX_PSI:
        raise GantrainError(f"psi={psi!r} must be a number from 0 to {MAX_PSI:g} (e.g. 0.7: w moved toward its mean, "
                            f"0: the average image); smaller trades variety for quality")
    return float(psi)


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


class ModulatedBatchNorm2d(nn.Module):
    """Batch norm without its own affine, then a scale 1 + A c and a shift B c of a continuous condition c (N, D):
    conditional batch norm generalised from a class index to an embedding (A and B start at 0)."""

    def __init__(self, num_features: int, condition_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.scale = nn.Linear(condition_dim, num_features)
        self.shift = nn.Linear(condition_dim, num_features)
        for layer in (self.scale, self.shift):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        return self.norm(x) * (1.0 + self.scale(c))[:, :, None, None] + self.shift(c)[:, :, None, None]


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


class Discriminator(nn.Module):
    """Base of every discriminator: forward(x) gives one raw score per sample, shape (N,).

    Conditional ones (num_classes > 0) are called D(x, y); with conditioning="ac", D(x, y, classes=True)
    gives (logits, class logits (N, num_classes)).
    """

    num_classes: Optional[int] = None
    conditioning: str = "projection"


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
