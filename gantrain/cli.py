"""The `gantrain` command: compose the config with Hydra, build the run, train it."""
from __future__ import annotations

import datetime
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from omegaconf import DictConfig, OmegaConf

from .errors import GantrainError

log = logging.getLogger("gantrain")


def _run_dir_for(resume: Optional[str], default: str) -> str:
    """hydra.run.dir: the resumed run's folder when resume names one, else the default pattern."""
    if resume in (None, "", "auto", "null"):
        return default
    path = Path(str(resume)).expanduser()
    if path.is_file() or path.suffix == ".pt":
        folder = path.parent
        return str(folder.parent if folder.name == "checkpoints" else folder)
    return str(path)


def _hydra_subdir_for(resume: Optional[str], run_dir: str) -> str:
    """Keep an existing run's .hydra/ files: a second launch in the same folder writes below .hydra/<time>."""
    if (Path(run_dir) / ".hydra" / "config.yaml").exists():
        return f".hydra/{datetime.datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}"
    return ".hydra"


def register_resolvers() -> None:
    for name, fn in (("gantrain_run_dir", _run_dir_for), ("gantrain_hydra_subdir", _hydra_subdir_for)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def merge_overrides(saved: list[str], new: list[str]) -> list[str]:
    """Command-line overrides of a resumed run: the saved ones, each replaced by a new one of the same key."""
    def key(override: str) -> str:
        return override.lstrip("+~").split("=", 1)[0]

    new_keys = {key(o) for o in new}
    return [o for o in saved if key(o) not in new_keys] + list(new)


def train(
    cfg: DictConfig,
    run_dir: Path,
    overrides: Optional[list[str]] = None,
    recompose: Optional[Callable[[list[str]], DictConfig]] = None,
) -> Path:
    """Train the run described by cfg in run_dir (resuming when cfg.resume says so); returns run_dir.

    overrides: the command line that composed cfg (stored in checkpoints). recompose: composes a config
    from overrides; on resume the run's saved overrides plus the new ones are recomposed, so that
    `gantrain resume=RUN trainer.steps=N` continues RUN's config rather than the defaults.
    """
    from .resume import prepare_run

    trainer = prepare_run(cfg, run_dir, overrides or [], recompose)
    from .trainer import Interrupted

    try:
        trainer.fit()
    except Interrupted as stop:
        print(
            f"gantrain: stopped at step {stop.step}; checkpoint {stop.checkpoint}. "
            f"Resume with: gantrain resume={run_dir}",
            file=sys.stderr,
        )
        sys.exit(128 + stop.signum)
    final = run_dir / "samples" / f"step_{trainer.step:08d}.png"
    log.info("done: %d steps in %s; final samples %s", trainer.step, run_dir, final)
    return run_dir


def _task(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from hydra import compose

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    try:
        train(cfg, run_dir, overrides, lambda ovs: compose(config_name="config", overrides=ovs))
    except GantrainError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"gantrain: error: {exc}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Entry point of the `gantrain` command."""
    import hydra

    register_resolvers()
    entry = hydra.main(config_path="pkg://gantrain.configs", config_name="config", version_base="1.3")(_task)
    entry()


if __name__ == "__main__":
    main()
