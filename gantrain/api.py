"""The Python API: load a trained generator from a run folder or checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

import torch

from .checkpoint import open_run_or_checkpoint
from .models import Generator

if TYPE_CHECKING:
    from omegaconf import DictConfig


def load_generator(path: Union[str, Path], device: Union[str, torch.device] = "cpu", ema: bool = True) -> Generator:
    """The generator of a run folder (its newest good checkpoint) or of a checkpoint file, in eval mode.

    ema: use the EMA generator when the run kept one. `.sample(n)` then gives n samples in data space:
    images (n, C, H, W) in [-1, 1], 2D points (n, 2). Loading runs no code from the file.
    """
    from .build import build_generator

    _, state = open_run_or_checkpoint(Path(path))
    generator = build_generator(state["config"]["generator"], tuple(state["data_shape"]), state["data_kind"])
    weights = state["generator_ema"] if ema and state.get("generator_ema") is not None else state["generator"]
    generator.load_state_dict(weights)
    return generator.to(device).eval()


def compose(overrides: Sequence[str] = ()) -> "DictConfig":
    """The config `gantrain <overrides>` would train, composed without running anything.

    Example: compose(["loss=wgan_gp", "dataset=digits", "trainer.steps=100"]).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from .cli import register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="gantrain.configs", version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def train(cfg: "DictConfig", run_dir: Union[str, Path]) -> Path:
    """Train (or resume, per cfg.resume) the run of a composed config in run_dir; returns run_dir."""
    from .cli import train as _train

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return _train(cfg, run_dir)
