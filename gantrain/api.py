"""The Python API: compose a config, train it, load a trained generator."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import torch
from omegaconf import DictConfig

from .build import build_generator
from .checkpoint import open_run_or_checkpoint
from .config import register_resolvers
from .models import Generator
from .run import train as _train


def load_generator(path: Union[str, Path], device: Union[str, torch.device] = "cpu", ema: bool = True) -> Generator:
    """The generator of a run folder (its newest good checkpoint) or of a checkpoint file, in eval mode.

    ema: use the EMA generator when the run kept one. `.sample(n)` then gives n samples in data space:
    images (n, C, H, W) in [-1, 1], 2D points (n, 2); a conditional run's generator has `num_classes`
    and takes `.sample(n, labels=...)`. Loading runs no code from the file, and runs
    written by earlier gantrain versions load too.
    """
    _, state = open_run_or_checkpoint(Path(path))
    generator = build_generator(state["config"]["generator"], tuple(state["data_shape"]), state["data_kind"],
                                state.get("num_classes"))
    weights = state["ema"]["generator"] if ema and "generator" in state["ema"] else state["networks"]["generator"]
    generator.load_state_dict(weights)
    return generator.to(device).eval()


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config `gantrain <overrides>` would train, composed without running anything.

    Example: compose(["loss=wgan_gp", "dataset=digits", "trainer.steps=100"]).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="gantrain.configs", version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def train(cfg: DictConfig, run_dir: Union[str, Path]) -> Path:
    """Train (or resume, per cfg.resume) the run of a composed config in run_dir; returns run_dir.

    A signal (SIGINT/SIGTERM) stops training after the current step with a checkpoint and raises
    gantrain.loop.Interrupted.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _train(cfg, run_dir)
    return run_dir
