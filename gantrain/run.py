"""Starting a run fresh or from a checkpoint, and training it: which checkpoint, whether the config may
continue it, and the config a resumed run continues with."""
from __future__ import annotations

import datetime
import logging
import os
import socket
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from .build import build, plain_config
from .checkpoint import load_checkpoint, newest_good, step_checkpoints
from .config import SAFE_RESUME_KEYS, config_differences, flatten, merge_overrides, with_added_keys
from .distributed import Dist
from .errors import GantrainError
from .loop import Loop

log = logging.getLogger("gantrain")

GROUPS = ("trainer", "dataset", "generator", "discriminator", "optimizer", "loss")
LOCK_FILE = ".gantrain.lock"


class RunBusy(GantrainError):
    """Another process trains in this run folder."""


class BeforeStart(GantrainError):
    """A run that stopped before training began: nothing of the run folder was written but the lock."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on run_dir for the whole run (the OS releases it when the process dies)."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunBusy(f"{run_dir} is in use by {holder}; wait for it to finish or stop it, "
                          f"or train in another folder (hydra.run.dir=...)") from None
        os.ftruncate(fd, 0)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {started}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # no stale holder named after the run
    finally:
        os.close(fd)  # releases the lock


def quote_override_value(value: str) -> str:
    """A value as a quoted string of Hydra's override grammar (paths with spaces, non-ASCII letters, quotes)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


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


def saved_config_with(saved: dict, overrides: Sequence[str], composed: DictConfig) -> DictConfig:
    """The saved config of a run started from Python, with a command line's overrides applied to it.

    key.path=value overrides set that value (YAML-typed); a group choice (loss=hinge) takes that group's
    node from the freshly composed config, so that a real change shows up in the comparison after.
    """
    cfg = OmegaConf.create(saved)
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in GROUPS:
            cfg[key] = composed[key]
        elif key == "experiment":
            raise GantrainError(f"cannot resume with {override}: this run was started from Python with no command "
                                f"line to recompose; change only {', '.join(SAFE_RESUME_KEYS)}")
        else:
            OmegaConf.update(cfg, key, OmegaConf.create(f"v: {value}" if value else "v: null").v, force_add=True)
    cfg.resume = composed.get("resume")
    return cfg


def prepare_run(
    cfg: DictConfig,
    run_dir: Path,
    overrides: Optional[Sequence[str]] = None,
    recompose: Optional[Callable[[list[str]], DictConfig]] = None,
    dist: Optional[Dist] = None,
) -> Loop:
    """A Loop for cfg in run_dir, its state loaded from a checkpoint when cfg.resume asks for one.

    overrides: the command line behind cfg (None: composed in Python). recompose: composes a config
    from overrides; on resume of a command-line run, the run's saved overrides plus the new ones are
    recomposed, so that `gantrain resume=RUN trainer.steps=N` continues RUN's config rather than the
    defaults; a run started from Python continues from its saved config.
    """
    state = find_resume_state(cfg.get("resume"), run_dir)
    if overrides is not None:
        overrides = [o for o in overrides if not o.lstrip("+~").startswith("resume=")]
    if state is not None:
        state = {**state, "config": with_added_keys(state["config"])}  # keys added since the run was written
        if recompose is not None and state.get("overrides") is not None:
            overrides = merge_overrides(list(state["overrides"]), list(overrides or []))
            cfg = recompose(overrides + [f"resume={quote_override_value(str(cfg.resume))}"])
        elif recompose is not None:
            cfg = saved_config_with(state["config"], overrides or [], cfg)
            overrides = None
        current = with_added_keys(plain_config(cfg))  # a config made before those keys existed trains with them off
        differing = config_differences(state["config"], current)
        if differing:
            saved, now = flatten(state["config"]), flatten(current)
            shown = "; ".join(f"{k}: {saved.get(k, '<missing>')!r} -> {now.get(k, '<missing>')!r}" for k in differing[:5])
            raise GantrainError(
                f"cannot resume: the config differs from the checkpoint's in {', '.join(differing)} ({shown}); "
                f"only {', '.join(k for k in SAFE_RESUME_KEYS if k != 'resume')} may change on resume"
            )
    loop = build(cfg, run_dir, dist=dist, overrides=None if overrides is None else list(overrides))
    if state is not None:
        loop.load_state_dict(state)
        log.info("continuing at step %d of %d", loop.step, loop.steps)
    if loop.dist.enabled:
        import torch.distributed

        torch.distributed.barrier()  # every process has read the run folder before any writes to it
    return loop


def train(cfg: DictConfig, run_dir: Path, overrides: Optional[Sequence[str]] = None,
          recompose: Optional[Callable[[list[str]], DictConfig]] = None, dist: Optional[Dist] = None) -> Loop:
    """Train the run described by cfg in run_dir (resuming when cfg.resume says so); returns the finished loop.

    Raises loop.Interrupted when a signal stopped training (a checkpoint of that step was written), and
    RunBusy when another process trains in run_dir.
    """
    main = dist is None or dist.main
    with run_lock(run_dir) if main else nullcontext():
        if main:
            log.info("run folder: %s  (watch it: tensorboard --logdir %s)", run_dir, run_dir)
        try:
            loop = prepare_run(cfg, run_dir, overrides, recompose, dist)
        except RunBusy:
            raise
        except GantrainError as exc:
            raise BeforeStart(str(exc)) from None
        loop.fit()
    log.info("done: %d steps in %s; final samples %s", loop.step, run_dir,
             run_dir / "samples" / f"step_{loop.step:08d}.png")
    return loop
