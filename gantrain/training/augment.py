"""Differentiable augmentation of what D sees, with an optional adaptive strength; on the device, no host sync.

DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training",
arXiv:2006.10738) applies the same random, differentiable transforms to the real and the generated
images D sees, so that D cannot overfit a small data set while G still gets gradients through them.
The transforms and ranges are the paper's (Sec. 3 and its reference code, DiffAugment_pytorch.py in
mit-han-lab/data-efficient-gans), for images in [-1, 1]:

- color: brightness (add U(-0.5, 0.5)), then saturation (scale each pixel's deviation from its channel
  mean by U(0, 2)), then contrast (scale the deviation from the image mean by U(0.5, 1.5));
- translation: shift by a whole number of pixels in [-H // 8, H // 8] down and [-W // 8, W // 8]
  across, filling with zeros;
- cutout: zero a (H // 2) x (W // 2) rectangle (a square for square images) whose centre is uniform
  over the image, so it may hang over the border and be clipped (as in the reference code).

Each transform of the policy is applied to each sample with probability p (DiffAugment: p = 1). With
ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data",
arXiv:2006.06676, Sec. 3) p adapts: r_t = E[sign(D(real))] measures D's overfitting, and every
ada_interval observations p moves by sign(r_t - ada_target) * (images seen) / (ada_kimg * 1000).

Every random number comes from the global torch RNG on the images' device, one draw per sample, and
every shape depends on the batch's shape only: the augmentation and ADA's update can be captured in a
CUDA graph, and the trainer's RNG checkpoint makes a resumed run draw the same augmentations.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from gantrain.config import POLICIES, parse_policy  # noqa: F401 (the policy names live with the config checks)
from gantrain.errors import GantrainError

# ---- the transforms: (N, C, H, W) -> the same shape, differentiable w.r.t. x -------------------------


def _uniform(x: Tensor, low: float, high: float) -> Tensor:
    """One U(low, high) draw per sample, shaped (N, 1, 1, 1) to broadcast over the image, in x's dtype."""
    u = torch.rand(x.shape[0], 1, 1, 1, device=x.device)  # float32 draws: the same numbers for every dtype
    return (u * (high - low) + low).to(x.dtype)


def color(x: Tensor) -> Tensor:
    """Random brightness, saturation and contrast, each drawn per sample (the DiffAugment ranges)."""
    x = x + _uniform(x, -0.5, 0.5)
    mean = x.mean(dim=1, keepdim=True)  # each pixel's mean over channels: the grey it desaturates to
    x = (x - mean) * _uniform(x, 0.0, 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each sample by whole pixels, at most `ratio` of its height down/up and of its width across,
    the uncovered border filled with zeros; every channel of a sample moves alike.

    out[n, :, i, j] = x[n, :, i - dy[n], j - dx[n]] (zero outside x): one gather from the zero-padded
    images, whose backward scatters the gradient back to the pixels that were moved.
    """
    n, c, h, w = x.shape
    sh, sw = int(h * ratio), int(w * ratio)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    padded = torch.nn.functional.pad(x, (sw, sw, sh, sh))
    rows = torch.arange(h, device=x.device).view(1, h, 1) - dy + sh  # in [0, h + 2 sh): inside the padding
    cols = torch.arange(w, device=x.device).view(1, 1, w) - dx + sw
    index = (rows * (w + 2 * sw) + cols).view(n, 1, h * w).expand(n, c, h * w)
    return padded.flatten(2).gather(2, index).view(n, c, h, w)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero a (ratio H) x (ratio W) rectangle of each sample, the same pixels in every channel.

    Its top-left corner is uniform over [-(size // 2), extent - (size + 1) // 2] on each axis (the
    reference code's centre uniform over the image): at least half its height and half its width (a quarter of
    it) lie inside the image.
    """
    n, _, h, w = x.shape
    size_h, size_w = int(h * ratio), int(w * ratio)
    top = torch.randint(-(size_h // 2), h - (size_h + 1) // 2 + 1, (n, 1, 1), device=x.device)
    left = torch.randint(-(size_w // 2), w - (size_w + 1) // 2 + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return x * (~inside).unsqueeze(1).to(x.dtype)


TRANSFORMS: dict[str, Callable[[Tensor], Tensor]] = {"color": color, "translation": translation, "cutout": cutout}


# ---- the augmentation and its adaptive probability ---------------------------------------------------


def _number(key: str, value: Any) -> float:
    """A config value as a finite float; anything else is a GantrainError naming the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GantrainError(f"augment.{key}={value!r} must be a finite number")
    return float(value)


class Augment:
    """DiffAugment (Zhao et al. 2020) with an ADA-style adaptive probability (Karras et al. 2020).

    policy: the transforms (see parse_policy). p: the probability each transform is applied to each
    sample (a (1,) float32 tensor on `device`; ADA starts from it, usually 0). ada_target: the r_t ADA
    holds p at (None: p stays fixed; ADA uses 0.6). ada_interval: observations between adjustments
    (ADA: 4). ada_kimg: thousands of images for p to move by 1 (the ADA paper: 500; StyleGAN3 100 when
    fine-tuning). batch_size: the real images behind each observe call (all processes together).
    average: under data parallelism, the mean of a tensor over the processes (an all-reduce), so that
    every process moves p by the same observations and holds the same p; None: one process.
    """

    def __init__(self, policy: Union[None, str, Sequence[str]], p: float = 1.0, ada_target: Optional[float] = None,
                 ada_interval: int = 4, ada_kimg: float = 100.0, batch_size: int = 64,
                 device: torch.device = torch.device("cpu"), average: Optional[Callable[[Tensor], Tensor]] = None):
        self.policy = parse_policy(policy)
        self.average = average
        p = _number("p", p)
        if not 0.0 <= p <= 1.0:
            raise GantrainError(f"augment.p={p} must be in [0, 1]; 1 augments every sample (DiffAugment)")
        self.adaptive = ada_target is not None
        self.ada_target = None if ada_target is None else _number("ada_target", ada_target)
        if self.ada_target is not None and not 0.0 < self.ada_target < 1.0:
            raise GantrainError(f"augment.ada_target={self.ada_target} must be in (0, 1) (ADA uses 0.6), "
                                f"or null for a fixed augment.p")
        if isinstance(ada_interval, bool) or not isinstance(ada_interval, int) or ada_interval < 1:
            raise GantrainError(f"augment.ada_interval={ada_interval!r} must be an integer >= 1")
        self.ada_interval = ada_interval
        self.ada_kimg = _number("ada_kimg", ada_kimg)
        if self.ada_kimg <= 0:
            raise GantrainError(f"augment.ada_kimg={self.ada_kimg} must be > 0")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise GantrainError(f"augment: batch_size={batch_size!r} must be an integer >= 1")
        self.batch_size = batch_size
        #: how far p moves at each adjustment
        self.ada_step = batch_size * ada_interval / (self.ada_kimg * 1000.0)
        self.p = torch.full((1,), p, dtype=torch.float32, device=device)
        self.accumulator = torch.zeros(1, dtype=torch.float32, device=device)  # sum of mean(sign(D(real)))
        self.count = torch.zeros(1, dtype=torch.int64, device=device)  # observations since the last adjustment

    def __call__(self, x: Tensor) -> Tensor:
        """x (N, C, H, W) with each transform of the policy applied to each sample with probability p;
        the same shape and dtype, differentiable w.r.t. x. An empty policy returns x itself."""
        if not self.policy:
            return x
        if x.dim() != 4:
            raise GantrainError(f"augment.policy={','.join(self.policy)} needs images (N, C, H, W); the data has "
                                f"shape {tuple(x.shape)}: set augment.policy=null")
        n = x.shape[0]
        for name in self.policy:
            applied = torch.rand(n, device=x.device) < self.p  # p = 1: every sample (rand < 1), p = 0: none
            x = torch.where(applied.view(n, 1, 1, 1), TRANSFORMS[name](x), x)
        return x

    @torch.no_grad()
    def observe(self, real_logits: Tensor) -> None:
        """ADA: add mean(sign(D(real))) to the accumulator; every ada_interval calls move p towards the
        target by ada_step, clamped to [0, 1], and reset the accumulator. Device ops only (the decision is
        a torch.where on the counter), so a captured graph replays it. Without ADA it does nothing."""
        if not self.adaptive:
            return
        observed = torch.sign(real_logits.detach().float()).mean()
        self.accumulator.add_(observed if self.average is None else self.average(observed))
        self.count.add_(1)
        due = self.count >= self.ada_interval
        r_t = self.accumulator / self.count.clamp(min=1)
        moved = (self.p + torch.sign(r_t - self.ada_target) * self.ada_step).clamp_(0.0, 1.0)
        self.p.copy_(torch.where(due, moved, self.p))
        self.accumulator.masked_fill_(due, 0.0)
        self.count.masked_fill_(due, 0)

    def state_dict(self) -> dict:
        return {"p": self.p.detach().cpu().clone(), "accumulator": self.accumulator.detach().cpu().clone(),
                "count": self.count.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        """Restore p, the accumulator and the counter into the same tensors (a captured graph keeps reading them)."""
        with torch.no_grad():
            for name in ("p", "accumulator", "count"):
                getattr(self, name).copy_(torch.as_tensor(state[name]).reshape(1))

    def to(self, device: Union[str, torch.device]) -> "Augment":
        """Move the state to `device` (new tensors: do it before a graph is captured); returns self."""
        self.p, self.accumulator, self.count = (t.to(device) for t in (self.p, self.accumulator, self.count))
        return self
