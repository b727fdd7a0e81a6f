"""Data-parallel training under `torchrun`: one process per device, gradients averaged across them.

Gradients are all-reduced by hand after each backward rather than through the
DistributedDataParallel wrapper, because a GAN step calls D several times per backward (real, fake,
the penalty's interpolates) and the gradient penalty differentiates through D twice, which the
wrapper's hooks do not support.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import torch
import torch.distributed as dist
from torch import nn

from gantrain.errors import GantrainError


@dataclass
class Dist:
    """This process's place in the job: rank among world processes (world 1: not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(d: Dist, device_name: str) -> torch.device:
    """Join the process group (NCCL on CUDA, Gloo on the CPU); returns this process's device."""
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise GantrainError(f"trainer.device={device_name} but no CUDA device is available here; use trainer.device=cpu")
    if use_cuda:
        if d.local_rank >= torch.cuda.device_count():
            raise GantrainError(f"process {d.rank} has LOCAL_RANK {d.local_rank} but only {torch.cuda.device_count()} GPUs exist; "
                                f"lower torchrun's --nproc_per_node")
        torch.cuda.set_device(d.local_rank)
    if not dist.is_initialized():
        # torch.distributed.nn.functional binds the default group as its functions' default arguments when
        # it is first imported (PyTorch imports it lazily, e.g. on building a network on the meta device).
        # Imported after the group exists, those defaults keep the group alive past destroy_process_group
        # into interpreter shutdown, where Gloo's threads are torn down in no safe order (an occasional
        # "terminate called without an active exception", SIGABRT, after a finished run). Imported now,
        # they hold None.
        importlib.import_module("torch.distributed.nn")

        dist.init_process_group("nccl" if use_cuda else "gloo")
        _JOINED["by_gantrain"] = True
    return torch.device("cuda", d.local_rank) if use_cuda else torch.device("cpu")


#: whether gantrain joined the process group itself (a Python caller may have joined it before)
_JOINED = {"by_gantrain": False}


def leave() -> None:
    """Destroy the process group gantrain joined (none that a caller joined itself), before the interpreter's
    shutdown would tear its threads down in no safe order."""
    if _JOINED["by_gantrain"] and dist.is_initialized():
        dist.destroy_process_group()
    _JOINED["by_gantrain"] = False


def average_gradients(params: Iterable[nn.Parameter], world: int) -> None:
    """All-reduce the gradients of params in one flat buffer and divide by the number of processes."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(world)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_state(module: nn.Module) -> None:
    """Give every process rank 0's weights and buffers."""
    for tensor in module.state_dict().values():
        if isinstance(tensor, torch.Tensor):  # not a module's extra state (a text generator's vocabulary)
            dist.broadcast(tensor, 0)


def all_sum(t: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    dist.all_reduce(out)
    return out


def all_max(t: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def gather_to_main(obj: Any, d: Dist) -> Optional[list[Any]]:
    """Every process's obj, in rank order, on the main process (None on the others); a collective call."""
    out: Optional[list[Any]] = [None] * d.world if d.main else None
    dist.gather_object(obj, out, dst=0)
    return out


def gather_objects(obj: Any, world: int) -> list[Any]:
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def check_in_sync(tensors: Iterable[torch.Tensor], what: str = "weights") -> None:
    """Raise when the processes' copies of tensors that must agree (a network's weights, ADA's p) differ
    (a bug, never expected)."""
    tensors = list(tensors)
    if not tensors:
        return
    device = tensors[0].device
    local = torch.stack([t.detach().double().sum() for t in tensors]).to(device)
    reference = local.clone()
    dist.broadcast(reference, 0)
    if not torch.allclose(local, reference, rtol=1e-6, atol=1e-8):
        raise RuntimeError(f"data-parallel processes hold different {what}")
