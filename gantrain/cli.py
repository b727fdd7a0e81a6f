"""The `gantrain` command: compose the config with Hydra, build the run, train it."""
from __future__ import annotations

import datetime
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from omegaconf import DictConfig, OmegaConf

from .errors import GantrainError

if TYPE_CHECKING:
    from .distributed import Dist

log = logging.getLogger("gantrain")


def _run_dir_for(resume: Optional[str], default: str) -> str:
    """hydra.run.dir: the resumed run's folder when resume names one, else the default pattern.

    Under torchrun only rank 0 owns the run folder (the others are told it); their Hydra output goes
    to a temporary folder.
    """
    rank = int(os.environ.get("RANK", "0"))
    if rank > 0:
        import tempfile

        return tempfile.mkdtemp(prefix=f"gantrain-rank{rank}-")
    if resume in (None, "", "auto", "null"):
        return default
    from .checkpoint import run_folder_of

    path = Path(str(resume)).expanduser()
    return str(run_folder_of(path) if path.is_file() or path.suffix == ".pt" else path)


def _hydra_subdir_for(resume: Optional[str], run_dir: str) -> Optional[str]:
    """Keep an existing run's .hydra/ files: a second launch in the same folder writes below .hydra/<time>.

    Under torchrun only rank 0 records the config (None: Hydra writes nothing).
    """
    if int(os.environ.get("RANK", "0")) > 0:
        return None
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
    dist: Optional["Dist"] = None,
) -> Path:
    """Train the run described by cfg in run_dir (resuming when cfg.resume says so); returns run_dir.

    overrides: the command line that composed cfg (stored in checkpoints). recompose: composes a config
    from overrides; on resume the run's saved overrides plus the new ones are recomposed, so that
    `gantrain resume=RUN trainer.steps=N` continues RUN's config rather than the defaults.
    """
    from .resume import prepare_run

    trainer = prepare_run(cfg, run_dir, overrides or [], recompose, dist)
    from .trainer import Interrupted

    try:
        trainer.fit()
    except Interrupted as stop:
        if trainer.dist.main:
            launcher = "torchrun ... -m gantrain.cli" if trainer.dist.enabled else "gantrain"
            print(
                f"gantrain: stopped at step {stop.step}; checkpoint {run_dir / 'checkpoints' / 'last.pt'}. "
                f"Resume with: {launcher} resume={run_dir}",
                file=sys.stderr,
            )
        sys.exit(128 + stop.signum)
    final = run_dir / "samples" / f"step_{trainer.step:08d}.png"
    log.info("done: %d steps in %s; final samples %s", trainer.step, run_dir, final)
    return run_dir


def _remove_rank_folder(folder: Path) -> None:
    """Delete the temporary Hydra folder of a process other than rank 0 (see _run_dir_for)."""
    import shutil
    import tempfile

    if folder.name.startswith("gantrain-rank") and folder.parent == Path(tempfile.gettempdir()):
        for handler in logging.getLogger().handlers:  # Hydra's log file lives there
            if getattr(handler, "baseFilename", "").startswith(str(folder)):
                handler.close()
                logging.getLogger().removeHandler(handler)
        shutil.rmtree(folder, ignore_errors=True)


def _task(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from hydra import compose

    from . import distributed

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    dist = distributed.from_env()
    try:
        if dist.enabled:  # join the job and take rank 0's run folder
            distributed.init(dist, str(cfg.trainer.device))
            own_dir, run_dir = run_dir, Path(distributed.broadcast_object(str(run_dir)))
            if not dist.main:
                logging.getLogger("gantrain").setLevel(logging.WARNING)
                _remove_rank_folder(own_dir)
        train(cfg, run_dir, overrides, lambda ovs: compose(config_name="config", overrides=ovs), dist)
    except GantrainError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if dist.main:
            print(f"gantrain: error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        if dist.enabled:
            import torch.distributed

            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()


def main() -> None:
    """Entry point of the `gantrain` command."""
    import hydra

    register_resolvers()
    entry = hydra.main(config_path="pkg://gantrain.configs", config_name="config", version_base="1.3")(_task)
    entry()


if __name__ == "__main__":
    main()
