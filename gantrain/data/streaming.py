"""Batch streams: the seeded epoch order, batches kept on the device, batches streamed from disk by
workers, unpaired batches of two domains."""
from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
from torch import Tensor

from gantrain.data.base import Dataset
from gantrain.data.images import ImageFolder
from gantrain.errors import GantrainError

# ---------------------------------------------------------------------------------------------
# Batch streams. The order of epoch e is a permutation seeded by (seed, e), so the position in the
# data order is just (epoch, pos): resuming mid-epoch needs no RNG state.


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The sample order of one epoch: a permutation of range(n) determined by (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class BatchStream:
    """Yields `k` batches of `batch_size` raw samples at a time, epoch by epoch, dropping the last partial batch.

    Under data parallelism (world > 1) every process walks the same order in global batches of
    batch_size * world samples and takes its own slice (rank) of each.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if batch_size * world > size:
            per = f" x {world} processes" if world > 1 else ""
            raise GantrainError(
                f"trainer.batch_size={batch_size}{per} is larger than the dataset ({size} samples); lower trainer.batch_size"
            )
        self.size, self.batch_size, self.seed, self.rank, self.world = size, batch_size, seed, rank, world
        self.global_batch = batch_size * world
        self.epoch, self.pos = 0, 0

    def _indices(self, k: int) -> list[Tensor]:
        out = []
        for _ in range(k):
            if self.pos + self.global_batch > self.size:
                self.epoch, self.pos = self.epoch + 1, 0
            if self.pos == 0 or not hasattr(self, "_perm") or self._perm_epoch != self.epoch:
                self._perm, self._perm_epoch = self._permutation(self.epoch), self.epoch
            start = self.pos + self.rank * self.batch_size
            out.append(self._perm[start : start + self.batch_size])
            self.pos += self.global_batch
        return out

    def _permutation(self, epoch: int) -> Tensor:
        return epoch_permutation(self.size, self.seed, epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "size": self.size}

    def batch_spec(self) -> tuple[tuple[int, ...], torch.dtype]:
        """(shape, dtype) of one raw batch of samples this stream gives."""
        raise NotImplementedError

    labelled = False  # batches are (samples, labels) pairs
    label_shape: tuple[int, ...] = ()  # of one sample's label: () for a class, (K, L) for K captions' token ids

    def empty(self, k: int, device: torch.device) -> Any:
        """Buffers `next(k, out=...)` fills: (k, B, ...) raw samples, with (k, B, *label_shape) int64 labels when
        labelled."""
        shape, dtype = self.batch_spec()
        samples = torch.empty((k, *shape), dtype=dtype, device=device)
        if not self.labelled:
            return samples
        return samples, torch.empty((k, shape[0], *self.label_shape), dtype=torch.int64, device=device)

    def load_state_dict(self, state: dict) -> None:
        """The position in the data order; refused when the data is not the size it was (checkpoints before
        gantrain 0.13.0 did not save the size)."""
        if "size" in state and int(state["size"]) != self.size:
            raise GantrainError(f"the run trained on {int(state['size'])} samples, but its dataset now has {self.size}: "
                                f"resume with the data it trained on (check dataset.root: runs before gantrain 0.13.0 "
                                f"saved a relative one, read from the current folder)")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm_epoch = -1

    def close(self) -> None:
        """Release what the stream holds besides memory (DataLoader worker processes)."""


class DeviceBatches(BatchStream):
    """The whole dataset held on the training device; batches are gathered there with no host copy."""

    def __init__(self, data: Tensor, batch_size: int, seed: int, device: torch.device, rank: int = 0, world: int = 1,
                 labels: Optional[Tensor] = None):
        super().__init__(len(data), batch_size, seed, rank, world)
        self.data = data.to(device)
        self.labels = None if labels is None else labels.to(device)
        self.labelled = labels is not None
        self.label_shape = () if labels is None else tuple(labels.shape[1:])
        self.device = device

    def _permutation(self, epoch: int) -> Tensor:
        return super()._permutation(epoch).to(self.device)

    def batch_spec(self) -> tuple[tuple[int, ...], torch.dtype]:
        return (self.batch_size, *self.data.shape[1:]), self.data.dtype

    def next(self, k: int, out: Any = None) -> Any:
        """k raw batches stacked as (k, batch_size, ...) (with their (k, batch_size) labels when labelled);
        written into `out` (from `empty`) when given."""
        index = torch.cat(self._indices(k))
        samples = out[0] if self.labelled and out is not None else out
        if samples is None:
            samples = self.data.index_select(0, index).view(k, self.batch_size, *self.data.shape[1:])
        else:
            torch.index_select(self.data, 0, index, out=samples.view(k * self.batch_size, *self.data.shape[1:]))
        if self.labels is None:
            return samples
        if out is None:
            return samples, self.labels.index_select(0, index).view(k, self.batch_size, *self.label_shape)
        torch.index_select(self.labels, 0, index, out=out[1].view(-1, *self.label_shape))
        return out


class StreamedBatches(BatchStream):
    """Batches decoded by DataLoader workers (large image folders), copied to the device from pinned memory."""

    def __init__(self, dataset: ImageFolder, batch_size: int, seed: int, device: torch.device, num_workers: int,
                 rank: int = 0, world: int = 1, labelled: bool = False, labels: Optional[Tensor] = None):
        super().__init__(len(dataset), batch_size, seed, rank, world)
        self.dataset, self.device, self.num_workers = dataset, device, num_workers
        self.labelled = labelled or labels is not None
        self.labels = labels if labels is not None else (dataset.labels() if labelled else None)
        self.label_shape = () if self.labels is None else tuple(self.labels.shape[1:])
        self._iter: Optional[Iterator[Tensor]] = None

    def batch_spec(self) -> tuple[tuple[int, ...], torch.dtype]:
        return (self.batch_size, *self.dataset.shape), torch.uint8

    def _loader(self) -> Iterator[Tensor]:
        from torch.utils.data import DataLoader

        while True:
            epoch, start = self.epoch, self.pos
            order = epoch_permutation(self.size, self.seed, epoch).tolist()
            usable = (self.size // self.global_batch) * self.global_batch
            mine = [i for g in range(start, usable, self.global_batch)
                    for i in order[g + self.rank * self.batch_size : g + (self.rank + 1) * self.batch_size]]
            loader = DataLoader(
                _Indexed(self.dataset, self.labels),
                batch_size=self.batch_size,
                sampler=mine,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                drop_last=True,
                persistent_workers=False,
                # its workers' seeds from a generator of its own: each new iterator (an epoch, a resume) would
                # otherwise draw one from torch's global generator, and a resumed run's noise would not be a
                # straight run's
                generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch),
            )
            yield from loader  # then the next epoch, from its start

    def next(self, k: int, out: Any = None) -> Any:
        if self._iter is None:
            self._iter = self._loader()
        batches = []
        for _ in range(k):
            if self.pos + self.global_batch > self.size:
                self.epoch, self.pos = self.epoch + 1, 0
            batches.append(next(self._iter))
            self.pos += self.global_batch
        if self.labelled:
            stacked: Any = tuple(torch.stack([b[i] for b in batches]).to(self.device, non_blocking=True) for i in (0, 1))
        else:
            stacked = torch.stack(batches).to(self.device, non_blocking=True)
        if out is None:
            return stacked
        for buffer, values in zip(out, stacked) if self.labelled else ((out, stacked),):
            buffer.copy_(values)
        return out

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.close()

    def close(self) -> None:
        # the workers are forked processes holding copies of every open file, the run folder's lock among
        # them: shut them down now rather than whenever the iterator is collected
        if self._iter is not None:
            self._iter.close()  # type: ignore[attr-defined]
            self._iter = None


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, dataset: ImageFolder, labels: Optional[Tensor] = None):
        self.dataset, self.labels = dataset, labels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        image = self.dataset.item(index)
        return image if self.labels is None else (image, self.labels[index])


def make_batches(dataset: Dataset, batch_size: int, seed: int, device: torch.device, num_workers: int,
                 rank: int = 0, world: int = 1, labelled: bool = False, labels: Optional[Tensor] = None) -> BatchStream:
    """The batch stream for a dataset (this process's share of it): on the device when it fits, streamed otherwise.

    labelled: batches are (samples, labels) pairs (conditional training). labels: what each sample is paired
    with in place of its class (a text run's caption tokens (N, K, L)); implies labelled."""
    if labels is not None:
        labelled = True
    on_device = str(dataset.on_device).lower()
    if on_device not in ("auto", "true", "false"):
        raise GantrainError(f"dataset.on_device={dataset.on_device!r} is not one of auto, true, false")
    if dataset.streamed and on_device != "true":
        return StreamedBatches(dataset, batch_size, seed, device, num_workers, rank, world,  # type: ignore[arg-type]
                               labelled=labelled, labels=labels)
    return DeviceBatches(dataset.tensor(), batch_size, seed, device, rank, world,
                         labels=labels if labels is not None else (dataset.labels() if labelled else None))


class UnpairedBatches:
    """Two batch streams walked together (the two domains of unpaired translation): `next(k)` gives
    (a, b), each (k, batch_size, C, H, W) raw; each stream keeps its own order and position."""

    labelled = False

    def __init__(self, a: BatchStream, b: BatchStream):
        self.a, self.b = a, b

    def next(self, k: int, out: Any = None) -> Any:
        if out is None:
            return self.a.next(k), self.b.next(k)
        self.a.next(k, out[0])
        self.b.next(k, out[1])
        return out

    def empty(self, k: int, device: torch.device) -> Any:
        return self.a.empty(k, device), self.b.empty(k, device)

    def state_dict(self) -> dict:
        return {"a": self.a.state_dict(), "b": self.b.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.a.load_state_dict(state["a"])
        self.b.load_state_dict(state["b"])

    def close(self) -> None:
        self.a.close()
        self.b.close()
