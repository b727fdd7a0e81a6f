"""The 2D Gaussian mixtures (ring of 8, grid of 25) of the mode-coverage benchmarks (VEEGAN, PacGAN)."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from gantrain.data.base import Dataset, _on_device, _positive, _whole


class _Mixture(Dataset):
    """A mixture of isotropic 2D Gaussians with equal weights, drawn once with a fixed seed."""

    kind = "points"

    def __init__(self, means: Tensor, std: float, num_samples: int, on_device: str | bool, seed: int = 1234):
        self.means, self.std = means.float(), _positive(std, "std", 0.01)
        self.num_samples = _whole(num_samples, "num_samples", 1, 100000)
        self.on_device, self.seed = _on_device(on_device), seed
        self.shape = (2,)
        self._data: Optional[Tensor] = None

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.means)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n fresh points from the mixture, (n, 2) float32."""
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
        """n fresh points from the mixture and the index of the Gaussian each came from."""
        which = torch.randint(len(self.means), (n,), generator=generator)
        return self.means[which] + self.std * torch.randn(n, 2, generator=generator), which

    def tensor(self) -> Tensor:
        if self._data is None:
            self._data, self._labels = self.sample_labelled(self.num_samples, torch.Generator().manual_seed(self.seed))
        return self._data

    def labels(self) -> Tensor:
        self.tensor()
        return self._labels

    def __len__(self) -> int:
        return self.num_samples


class Ring(_Mixture):
    """num_modes Gaussians with means evenly spaced on a circle of the given radius."""

    name = "ring"

    def __init__(self, num_modes: int = 8, radius: float = 1.0, std: float = 0.01, num_samples: int = 100000,
                 on_device: str | bool = "auto"):
        num_modes, radius = _whole(num_modes, "num_modes", 1, 8), _positive(radius, "radius", 1.0)
        angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
        means = torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], 1)
        super().__init__(means, std, num_samples, on_device)


class Grid(_Mixture):
    """side x side Gaussians on a square grid centred at 0 with the given spacing."""

    name = "grid"

    def __init__(self, side: int = 5, spacing: float = 2.0, std: float = 0.05, num_samples: int = 100000,
                 on_device: str | bool = "auto"):
        side, spacing = _whole(side, "side", 1, 5), _positive(spacing, "spacing", 2.0)
        ticks = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
        means = torch.cartesian_prod(ticks, ticks)
        super().__init__(means, std, num_samples, on_device)
