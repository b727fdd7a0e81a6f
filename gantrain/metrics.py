"""Sample-quality metrics. Mode coverage on the 2D mixtures as VEEGAN and PacGAN define it."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .models import Generator


def mixture_metrics(samples: Tensor, means: Tensor, std: float) -> dict[str, float]:
    """Mode coverage of 2D samples (n, 2) against a mixture with the given means (K, 2) and std.

    A sample is high quality when within 3 std of its nearest mode; a mode is captured when it is the
    nearest mode of some high-quality sample. reverse_kl: KL(p_gen || uniform) of the nearest-mode
    histogram of all samples (0 when every mode gets the same share).
    """
    samples, means = samples.detach().float().cpu(), means.float().cpu()
    finite = torch.isfinite(samples).all(1)
    dist = torch.cdist(samples[finite], means)
    nearest_dist, nearest = dist.min(1)
    hq = nearest_dist <= 3.0 * std
    k = len(means)
    captured = torch.bincount(nearest[hq], minlength=k) > 0
    counts = torch.bincount(nearest, minlength=k).double()
    p = counts / counts.sum().clamp_min(1)
    nz = p > 0
    reverse_kl = float((p[nz] * torch.log(p[nz] * k)).sum()) if bool(nz.any()) else math.inf
    return {
        "modes": float(captured.sum()),
        "high_quality_pct": 100.0 * float(hq.sum()) / max(len(samples), 1),
        "reverse_kl": reverse_kl,
    }


class MixtureEvaluator:
    """Evaluates a generator on a 2D mixture dataset with `num_samples` samples from a fixed noise seed."""

    def __init__(self, dataset, num_samples: int = 2500, seed: int = 0):
        self.means, self.std = dataset.means, dataset.std
        self.num_samples, self.seed = num_samples, seed

    @torch.no_grad()
    def __call__(self, generator: Generator) -> dict[str, float]:
        z_gen: Optional[torch.Generator] = torch.Generator().manual_seed(self.seed)
        samples = generator.sample(self.num_samples, generator=z_gen)
        return mixture_metrics(samples, self.means, self.std)
