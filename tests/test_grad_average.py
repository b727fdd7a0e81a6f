"""Across two real Gloo processes: average_gradients gives each process the mean of their gradients, ADA's
p moves by the observations of all processes (the same p everywhere), and check_in_sync tells them apart."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn

WORLD = 2


def _model() -> nn.Module:
    """Parameters of several shapes (the flat buffer's offsets matter) and one that gets no gradient."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    model.unused = nn.Parameter(torch.ones(5))  # never in the graph: its grad stays None
    return model


def _batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each process's own data (different per rank, as data parallelism shards it)."""
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(6, 3, generator=g), torch.randn(6, 2, generator=g)


def _local_grads(model: nn.Module, rank: int) -> None:
    x, y = _batch(rank)
    model.zero_grad(set_to_none=True)
    ((model(x) - y).square().mean() * (1.0 + rank)).backward()  # rank-dependent scale: the mean is not a copy


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    import torch.distributed as dist

    from gantrain.training import distributed

    torch.set_num_threads(1)
    d = distributed.from_env()
    assert (d.rank, d.world, d.enabled) == (rank, WORLD, True)
    device = distributed.init(d, "cpu")
    try:
        model = _model()
        _local_grads(model, rank)
        distributed.average_gradients(model.parameters(), d.world)
        grads = {name: (None if p.grad is None else p.grad.clone()) for name, p in model.named_parameters()}
        torch.save({"device": str(device), "grads": grads}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_hold_the_mean_of_their_gradients(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)

    # the same computation in one process: each rank's gradients, then their mean
    per_rank = []
    for rank in range(WORLD):
        model = _model()
        _local_grads(model, rank)
        per_rank.append({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    expected = {name: (per_rank[0][name] + per_rank[1][name]) / WORLD for name in per_rank[0]}
    assert not torch.allclose(per_rank[0]["0.weight"], per_rank[1]["0.weight"])  # the ranks' gradients differ

    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["device"] == "cpu"
        assert got["grads"]["unused"] is None  # a parameter without a gradient is left alone
        assert set(got["grads"]) == set(expected) | {"unused"}
        for name, mean in expected.items():
            torch.testing.assert_close(got["grads"][name], mean, rtol=1e-6, atol=1e-7,
                                       msg=lambda m, name=name, rank=rank: f"rank {rank} {name}: {m}")


def _ada_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    import torch.distributed as dist

    from gantrain.training import distributed
    from gantrain.training.augment import Augment

    torch.set_num_threads(1)
    d = distributed.from_env()
    distributed.init(d, "cpu")
    try:
        # ada_step = batch x interval / (kimg x 1000) = 0.1. Rank 0's D is sure of every real image
        # (sign mean +1, alone it would raise p), rank 1's of none (-1, alone it would lower p): their mean
        # 0 is below the target 0.6, so p goes down on both.
        shared = Augment(["translation"], p=0.5, ada_target=0.6, ada_interval=1, ada_kimg=0.02, batch_size=2,
                         average=lambda t: distributed.all_sum(t) / d.world)
        alone = Augment(["translation"], p=0.5, ada_target=0.6, ada_interval=1, ada_kimg=0.02, batch_size=2)
        logits = torch.full((4, 1), 1.0 if rank == 0 else -1.0)
        shared.observe(logits)
        alone.observe(logits)
        distributed.check_in_sync([shared.p], "augment/p")  # passes: the same p everywhere
        try:
            distributed.check_in_sync([alone.p], "augment/p")
            caught = ""
        except RuntimeError as exc:
            caught = str(exc)
        torch.save({"shared": shared.p.clone(), "alone": alone.p.clone(), "caught": caught}, Path(out) / f"ada{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ada_moves_one_p_for_all_processes(tmp_path):
    mp.spawn(_ada_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    got = [torch.load(tmp_path / f"ada{rank}.pt", weights_only=True) for rank in range(WORLD)]
    for rank in range(WORLD):
        torch.testing.assert_close(got[rank]["shared"], torch.tensor([0.4]))
    torch.testing.assert_close(got[0]["alone"], torch.tensor([0.6]))  # each process on its own drifts apart
    torch.testing.assert_close(got[1]["alone"], torch.tensor([0.4]))
    assert got[1]["caught"] == "data-parallel processes hold different augment/p"
