"""Starting a run fresh or from a checkpoint: which checkpoint, and whether the config may continue it."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

from omegaconf import DictConfig

from .build import build, plain_config
from .checkpoint import load_checkpoint, newest_good, step_checkpoints
from .distributed import Dist
from .config import SAFE_RESUME_KEYS, config_differences, flatten
from .errors import GantrainError
from .trainer import Trainer

log = logging.getLogger("gantrain")


def find_resume_state(resume: Optional[str], run_dir: Path) -> Optional[dict]:
    """The checkpoint state to continue from, or None for a fresh start; GantrainError when impossible."""
    has_checkpoints = (run_dir / "checkpoints" / "last.pt").exists() or bool(step_checkpoints(run_dir / "checkpoints"))
    if resume in (None, ""):
        if has_checkpoints:
            raise GantrainError(
                f"{run_dir} already holds a run (checkpoints/); continue it with resume=auto, "
                f"or choose a new hydra.run.dir"
            )
        return None
    if resume == "auto":
        found = newest_good(run_dir)
        if found is None:
            log.info("resume=auto: no checkpoint in %s, starting fresh (a relaunch with the same hydra.run.dir "
                     "continues it)", run_dir)
            return None
        log.info("resume=auto: continuing from %s", found[0])
        return found[1]
    path = Path(str(resume)).expanduser()
    if path.is_dir():
        found = newest_good(path)
        if found is None:
            raise GantrainError(f"resume={resume}: no checkpoint in {path / 'checkpoints'}; check the run folder")
        log.info("resuming from %s", found[0])
        return found[1]
    if path.is_file():
        log.info("resuming from %s", path)
        return load_checkpoint(path)
    raise GantrainError(f"resume={resume}: no such run folder or checkpoint file")


def prepare_run(
    cfg: DictConfig,
    run_dir: Path,
    overrides: Sequence[str] = (),
    recompose: Optional[Callable[[list[str]], DictConfig]] = None,
    dist: Optional[Dist] = None,
) -> Trainer:
    """A Trainer for cfg in run_dir, its state loaded from a checkpoint when cfg.resume asks for one.

    overrides: the command line behind cfg. recompose: see cli.train.
    """
    state = find_resume_state(cfg.get("resume"), run_dir)
    overrides = [o for o in overrides if not o.lstrip("+~").startswith("resume=")]
    if state is not None:
        if recompose is not None:
            from .cli import merge_overrides

            overrides = merge_overrides(list(state.get("overrides", [])), overrides)
            cfg = recompose(overrides + [f"resume={cfg.resume}"])
        current = plain_config(cfg)
        differing = config_differences(state["config"], current)
        if differing:
            saved, now = flatten(state["config"]), flatten(current)
            shown = "; ".join(f"{k}: {saved.get(k, '<missing>')!r} -> {now.get(k, '<missing>')!r}" for k in differing[:5])
            raise GantrainError(
                f"cannot resume: the config differs from the checkpoint's in {', '.join(differing)} ({shown}); "
                f"only {', '.join(k for k in SAFE_RESUME_KEYS if k != 'resume')} may change on resume"
            )
    trainer = build(cfg, run_dir, dist=dist)
    trainer.overrides = list(overrides)
    if state is not None:
        trainer.load_state_dict(state)
        log.info("continuing at step %d of %d", trainer.step, trainer.s.steps)
    if trainer.dist.enabled:
        import torch.distributed

        torch.distributed.barrier()  # every process has read the run folder before any writes to it
    return trainer
