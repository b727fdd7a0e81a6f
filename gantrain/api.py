"""The Python API: load a trained generator from a run folder or checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import torch

from .checkpoint import load_checkpoint, newest_good
from .errors import GantrainError
from .models import Generator


def load_generator(path: Union[str, Path], device: Union[str, torch.device] = "cpu", ema: bool = True) -> Generator:
    """The generator of a run folder (its newest good checkpoint) or of a checkpoint file, in eval mode.

    ema: use the EMA generator when the run kept one. `.sample(n)` then gives n samples in data space:
    images (n, C, H, W) in [-1, 1], 2D points (n, 2). Loading runs no code from the file.
    """
    from .build import build_generator

    path = Path(path)
    if path.is_dir():
        found = newest_good(path)
        if found is None:
            raise GantrainError(f"{path} holds no checkpoints/ with a checkpoint; pass a run folder or a .pt file")
        state = found[1]
    else:
        state = load_checkpoint(path)
    generator = build_generator(state["config"]["generator"], tuple(state["data_shape"]), state["data_kind"])
    weights = state["generator_ema"] if ema and state.get("generator_ema") is not None else state["generator"]
    generator.load_state_dict(weights)
    return generator.to(device).eval()
