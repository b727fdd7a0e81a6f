"""Named training statistics accumulated on the device: no host sync until they are read.

A game reports `stats.add("loss/d", tensor)` inside its update; each name gets a slot of one
preallocated buffer the first time it is seen (so adding a name during CUDA-graph capture allocates
nothing), and the number of additions per name is counted on the device too, so that means come out
right also when the update is replayed as a graph without running Python.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

CAPACITY = 64


class Stats:
    """Sums and counts of named scalars since the last reset, on `device`."""

    def __init__(self, device: torch.device, capacity: int = CAPACITY):
        self.sums = torch.zeros(capacity, device=device)
        self.counts = torch.zeros(capacity, device=device)
        self.slots: dict[str, int] = {}
        self.steps = 0  # training steps since the last reset (counted by the loop)

    def slot(self, name: str) -> int:
        if name not in self.slots:
            if len(self.slots) == len(self.sums):
                raise RuntimeError(f"more than {len(self.sums)} named statistics; raise stats.CAPACITY")
            self.slots[name] = len(self.slots)
        return self.slots[name]

    def add(self, name: str, value: Tensor) -> None:
        """Add a 0-dim tensor (detached) to the running sum of `name`; a device op, no sync."""
        i = self.slot(name)
        self.sums[i].add_(value.detach().float())
        self.counts[i].add_(1.0)

    def read(self, all_sum: Optional[Callable[[Tensor], Tensor]] = None, world: int = 1) -> dict[str, float]:
        """Mean of each name added since the last reset (the one host sync); a name not added since (a lazy
        regulariser between its steps) is left out. all_sum: averages across processes."""
        both = torch.stack([self.sums, self.counts])
        if all_sum is not None:
            both = all_sum(both)
            both[0].div_(world)
            both[1].div_(world)
        sums, counts = both.tolist()
        return {name: sums[i] / counts[i] for name, i in self.slots.items() if counts[i]}

    def all_finite(self) -> Tensor:
        """A 1-element device tensor: 1.0 when every sum is finite (read it where a sync is acceptable)."""
        return torch.isfinite(self.sums).all().float().reshape(1)

    def reset(self) -> None:
        self.sums.zero_()
        self.counts.zero_()
        self.steps = 0

    def state_dict(self) -> dict:
        n = len(self.slots)
        return {"names": list(self.slots), "sums": self.sums[:n].detach().cpu().clone(),
                "counts": self.counts[:n].detach().cpu().clone(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.reset()
        for name, s, c in zip(state["names"], state["sums"].tolist(), state["counts"].tolist()):
            i = self.slot(name)
            self.sums[i] = s
            self.counts[i] = c
        self.steps = int(state["steps"])
