"""Optimizers and learning-rate schedules of the networks a game trains."""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor

from gantrain.config import OptimizerConfig


def make_optimizer(params: Iterable[Any], o: OptimizerConfig, who: str, device: torch.device,
                   capturable: bool) -> torch.optim.Optimizer:
    """The optimizer `o.name` for one network (who: its name; 'generator' and 'discriminator' have their own lr
    and betas in optimizer.generator / optimizer.discriminator, other networks take the shared ones).

    capturable: keep step counters on the device so that a CUDA graph can replay the update.
    """
    own = getattr(o, who, None)
    lr = own.lr if own is not None and own.lr is not None else o.lr
    betas = tuple(own.betas if own is not None and own.betas is not None else o.betas)
    cuda = device.type == "cuda"
    # Fused Adam/AdamW is the fastest on CUDA and on the CPU (one pass over the weights: 4x the per-tensor
    # update on one CPU thread); SGD is fused on CUDA only; capture needs capturable foreach; kernel=foreach keeps
    # 0.6.0's CPU update (and foreach on CUDA).
    fused = o.kernel in ("auto", "fused")
    fast = {"capturable": True, "foreach": True} if capturable else ({"fused": True} if fused else {"foreach": True})
    if o.name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=o.eps, weight_decay=o.weight_decay, **fast)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=o.eps, weight_decay=o.weight_decay, **fast)
    if o.name == "rmsprop":
        fast = {"capturable": True, "foreach": True} if capturable else {"foreach": True}
        return torch.optim.RMSprop(params, lr=lr, alpha=o.alpha, eps=o.eps, momentum=o.momentum,
                                   weight_decay=o.weight_decay, **fast)
    fast = {"fused": True} if cuda and not capturable and o.kernel == "auto" else {"foreach": True}
    return torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, **fast)


class LinearDecay:
    """lr = base_lr * max(0, 1 - done / total) after `done` steps; stepped once per training step. With
    `hold`, the rate stays at base_lr for the first `hold` steps, then decays linearly to 0 at `total`.

    Writes into a tensor learning rate in place (a captured CUDA graph reads it there), else sets the float.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total: int, hold: int = 0):
        self.optimizer, self.total, self.done, self.hold = optimizer, int(total), 0, min(int(hold), int(total) - 1)
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]

    def factor(self) -> float:
        return self.factor_at(self.done, self.total, self.hold)

    @staticmethod
    def factor_at(done: int, total: int, hold: int = 0) -> float:
        """The rate's multiple of the base rate after `done` of `total` steps (held for the first `hold`)."""
        if hold > 0:
            return min(1.0, max(0.0, 1.0 - (done - hold) / (total - hold)))
        return max(0.0, 1.0 - done / total)

    def step(self) -> None:
        self.done += 1
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            value = base * self.factor()
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value

    def state_dict(self) -> dict:
        return {"base_lrs": list(self.base_lrs), "last_epoch": self.done}

    def load_state_dict(self, state: dict) -> None:
        """Restore the position; the current rates come with the optimizer's own state (as torch's schedulers do)."""
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        self.done = int(state["last_epoch"])


def lr_to_device(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Hold each group's learning rate in a device tensor, so that a schedule changes it under a CUDA graph."""
    for group in optimizer.param_groups:
        if not isinstance(group["lr"], Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)


def lr_to_float(optimizer_state: dict) -> dict:
    """An optimizer state_dict with plain float learning rates (loadable on any device and optimizer flavour)."""
    for group in optimizer_state["param_groups"]:
        for key in ("lr", "initial_lr"):
            if isinstance(group.get(key), Tensor):
                group[key] = float(group[key])
    return optimizer_state
