"""Starting a run fresh or from a checkpoint, and training it: which checkpoint, whether the config may
continue it, and the config a resumed run continues with."""
from __future__ import annotations

import datetime
import logging
import math
import os
import socket
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from gantrain.training.build import build
from gantrain.training.components import plain_config, unresolved
from gantrain.checkpoint import (as_run_folder, load_checkpoint, newest_good, run_folder_for, run_folder_of,
                                 step_checkpoints)
from gantrain.config import SAFE_RESUME_KEYS, config_differences, flatten, merge_overrides, with_added_keys
from gantrain.training.distributed import Dist
from gantrain.errors import GantrainError, folder_option
from gantrain.training.loop import Loop

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
                          f"or train in another folder ({folder_option()}=...)") from None
        os.ftruncate(fd, 0)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {started}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # no stale holder named after the run
    finally:
        os.close(fd)  # releases the lock


#: what a run writes in its folder besides checkpoints/ (and Hydra's .hydra/ and gantrain.log)
RUN_OUTPUTS = ("metrics.jsonl", "samples", "tb", "eval.json")


def holds_something(path: Path) -> bool:
    """A non-empty file, or a folder with anything in it."""
    if path.is_dir():
        return any(path.iterdir())
    return path.is_file() and path.stat().st_size > 0


def run_outputs(folder: Path) -> list[str]:
    """The outputs of a run (RUN_OUTPUTS) that folder holds, by name."""
    return [name for name in RUN_OUTPUTS if holds_something(Path(folder) / name)]


def run_contents(folder: Path) -> list[str]:
    """What of a run folder holds something: checkpoints, then its outputs (by name); [] for none."""
    return (["checkpoints"] if holds_something(Path(folder) / "checkpoints") else []) + run_outputs(folder)


def find_resume_state(resume: Optional[str], run_dir: Path, main: bool = True) -> Optional[dict]:
    """The checkpoint state to continue from, or None for a fresh start; GantrainError when impossible.

    main: whether this is the process that writes the run's outputs (the only one that checks for those of an
    earlier run: the others may already see what it has begun to write)."""
    has_checkpoints = (run_dir / "checkpoints" / "last.pt").exists() or bool(step_checkpoints(run_dir / "checkpoints"))
    if resume in (None, ""):
        if has_checkpoints:
            raise GantrainError(
                f"{run_dir} already holds a run (checkpoints/); continue it with resume=auto, "
                f"or choose a new {folder_option()}"
            )
        stale = run_outputs(run_dir) if main else []
        if stale:  # a run stopped before its first checkpoint (killed, diverged, interrupted at start-up)
            raise GantrainError(
                f"{run_dir} already holds the outputs of a run that wrote no checkpoint ({', '.join(stale)}); "
                f"choose a new {folder_option()}, or start that run again there with resume=auto (which replaces them)"
            )
        return None
    if resume == "auto":
        found = newest_good(run_dir)
        if found is None:
            log.info("resume=auto: no checkpoint in %s, starting fresh (a relaunch with the same %s "
                     "continues it)", run_dir, folder_option())
            return None
        log.info("resume=auto: continuing from %s", found[0])
        return found[1]
    path = as_run_folder(Path(str(resume)).expanduser())
    if path.is_dir() or path.is_file():
        _refuse_mixing(resume, path if path.is_dir() else run_folder_of(path), run_dir, has_checkpoints, main)
    if path.is_dir():
        found = newest_good(path)
        if found is None:
            raise GantrainError(f"resume={resume}: no checkpoint in {path / 'checkpoints'}; check the run folder")
        log.info("resuming from %s", found[0])
        return found[1]
    if path.is_file():
        log.info("resuming from %s", path)
        state = load_checkpoint(path)
        if run_folder_of(path).resolve() == Path(run_dir).resolve():
            if path.parent.name != "checkpoints":  # a file kept elsewhere: its folder is no run's to write into
                raise GantrainError(f"resume={resume} is a checkpoint outside a run's checkpoints/ folder, so its own "
                                    f"folder is no run folder to continue in: give a new or empty one, e.g. "
                                    f"{folder_option()}=runs/{path.stem}")
            refuse_rewind(resume, path, run_dir, int(state.get("step", 0)))
        return state
    raise GantrainError(f"resume={resume}: no such run folder or checkpoint file")


def _refuse_mixing(resume: str, source: Path, run_dir: Path, has_checkpoints: bool, main: bool) -> None:
    """Refuse to continue the run in `source` inside run_dir when run_dir holds another run (its checkpoints, or
    the outputs of one that wrote none): the two would be mixed in one folder."""
    if Path(source).resolve() == Path(run_dir).resolve():
        return
    held = ["checkpoints/"] if has_checkpoints else []
    held += run_outputs(run_dir) if main else []
    if held:
        raise GantrainError(f"{run_dir} already holds another run ({', '.join(held)}); resume={resume} would mix the run "
                            f"of {source} into it: continue that run in its own folder, {source}, or branch it into a new, "
                            f"empty {folder_option()} (the run in {run_dir} continues with resume={run_dir})")


def refuse_rewind(resume: str, path: Path, run_dir: Path, step: int) -> None:
    """Refuse to continue a run in its own folder from a checkpoint (`path`, given as resume=...) behind its later
    checkpoints, which it would replace. (Rows logged after the newest checkpoint, as a crash leaves them, are
    purged as on any resume.)"""
    folder = Path(run_dir) / "checkpoints"
    latest = max([s for s, _ in step_checkpoints(folder)] + [step])
    last = folder / "last.pt"
    if latest <= step and last.is_file() and not path.samefile(last):
        try:
            latest = max(latest, int(load_checkpoint(last).get("step", 0)))
        except GantrainError:  # a damaged last.pt holds nothing to keep
            pass
    if latest > step:
        raise GantrainError(f"resume={resume} is at step {step}, but this run has a checkpoint of step {latest}: "
                            f"continuing it in {run_dir} would replace what it wrote after step {step}; branch from "
                            f"it into a new folder with {folder_option()}=NEW_FOLDER (the run stays as it is), or "
                            f"continue the run from its newest checkpoint with resume={run_dir}")


#: the config's paths to data, saved absolute
DATA_PATHS = ("dataset.root", "condition.text_embeddings")


def _absolute_root(cfg: DictConfig) -> None:
    """dataset.root (and a precomputed-embedding file) as absolute paths, what checkpoints save, so that a resume
    from another folder reads the same data; in place."""
    for key in DATA_PATHS:
        try:
            value = OmegaConf.select(cfg, key, default=None)
        except Exception as exc:  # an interpolation that does not resolve
            raise unresolved(exc) from None
        if isinstance(value, (str, Path)) and str(value):
            full = os.path.expanduser(str(value))  # ~ expanded too: another user's home differs
            full = full if os.path.isabs(full) else os.path.abspath(full)  # (an absolute path kept as written)
            if full != str(value):
                OmegaConf.update(cfg, key, full)


def _adopt_launch_record(run_dir: Path) -> None:
    """resume=auto starting a run again from step 0 in a folder an earlier attempt left (no checkpoint): this
    launch's Hydra record (written below .hydra/<time>, as a folder with a record gets) becomes the folder's own,
    so that a later resume reads this run's group choices, not the attempt's."""
    import shutil

    record = Path(run_dir) / ".hydra"
    launches = sorted(p for p in record.iterdir() if p.is_dir() and (p / "overrides.yaml").is_file()) \
        if record.is_dir() else []
    if not launches or not (record / "config.yaml").is_file():
        return
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        if (launches[-1] / name).is_file():
            tmp = record / f".{name}.tmp"
            shutil.copyfile(launches[-1] / name, tmp)
            os.replace(tmp, record / name)


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _restated_groups_left_out(changes: list[str], saved_overrides: Optional[Sequence[str]]) -> list[str]:
    """The command line's changes without group choices that pick what the run already trains with
    (`generator=dcgan` on a run of the default generator): composed on the run's own command line, such a choice
    gives the group the run has, so it is no change (taking today's preset node for it would drop the run's own
    keys of that group and refuse the resume over them)."""
    groups = [o for o in changes if _override_key(o) in GROUPS]
    if not groups or saved_overrides is None:
        return changes
    from gantrain.config import hydra_compose as compose

    own = [o for o in saved_overrides if not o.lstrip("+~").startswith(("hydra", "resume="))]
    try:
        before = compose(own)
    except Exception:  # the run's command line no longer composes (presets changed): compare as given
        return changes
    kept = []
    for change in changes:
        key = _override_key(change)
        if key in GROUPS:
            try:
                if compose([*own, change])[key] == before[key]:
                    continue
            except Exception:
                pass
        kept.append(change)
    return kept


def saved_config_with(saved: dict, overrides: Sequence[str], composed: DictConfig) -> DictConfig:
    """A run's saved config with a command line's own changes applied to it: what a resumed run trains.

    key.path=value takes the value Hydra composed for it (parsed by Hydra's grammar); a group choice
    (loss=hinge) takes that group's node from the composed config, so that a real change shows up in the
    comparison after. Whatever the presets say today, nothing else changes.
    """
    cfg = OmegaConf.create(saved)
    for override in overrides:
        key = _override_key(override)
        if key in GROUPS:
            cfg[key] = composed[key]
        elif key in ("experiment", "model", "hparams_search"):
            raise GantrainError(f"cannot resume with {override}: {key}= picks a preset, and a resumed run keeps the one it was trained with; "
                                f"change only {', '.join(k for k in SAFE_RESUME_KEYS if k != 'resume')}")
        elif override.startswith("~"):
            OmegaConf.update(cfg, key, None, force_add=True)
        else:
            value = OmegaConf.select(composed, key, default=None)
            OmegaConf.update(cfg, key, OmegaConf.to_container(value) if OmegaConf.is_config(value) else value,
                             force_add=True)
    cfg.resume = composed.get("resume")
    return cfg


#: groups whose settings the components check with messages of their own (optimizer.lr=nan: "must be a positive
#: number (e.g. 2e-4)"): the first check of every setting leaves them to those
_CHECKED_BY_COMPONENTS = ("optimizer", "loss", "trainer", "stylegan2", "condition", "augment")


def _non_finite(node: Any) -> bool:
    if isinstance(node, float):
        return not math.isfinite(node)
    if isinstance(node, dict):
        return any(_non_finite(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(_non_finite(v) for v in node)
    return False


def _check_finite(config: dict, skip: Sequence[str] = ()) -> None:
    """A setting that is no finite number (nan, inf) is refused, whatever its key: a weight or penalty of nan would
    read as off (nan > 0 is false), an EMA half-life of nan would average the generator into NaN. skip: top-level
    groups left out."""
    def walk(node: Any, key: str) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{key}.{k}" if key else str(k))
        elif _non_finite(node):  # a number, or a list holding one (at any depth)
            yield key, node

    for key, value in walk({k: v for k, v in config.items() if k not in skip}, ""):
        raise GantrainError(f"{key}={value} is not a finite number: give a number (0 turns a weight or penalty "
                            f"off; `gantrain --cfg job` shows every key's value)")


class PythonChanges(list):
    """The overrides compose() was given for a config resumed from Python (see prepare_run)."""


def prepare_run(
    cfg: DictConfig,
    run_dir: Path,
    overrides: Optional[Sequence[str]] = None,
    dist: Optional[Dist] = None,
) -> Loop:
    """A Loop for cfg in run_dir, its state loaded from a checkpoint when cfg.resume asks for one.

    overrides: the command line behind cfg (None: composed in Python). A resumed command-line run trains
    its saved config with the command line's own changes applied (so `gantrain resume=RUN trainer.steps=N`
    continues what RUN trained, whatever its preset says today); a config composed in Python is compared
    with the saved one as it is, or, given as PythonChanges (what compose was given) and unequal to it, with
    the saved one those changes made. Either way, only SAFE_RESUME_KEYS may differ.
    """
    main = dist is None or dist.main
    if Path(run_dir).name == "checkpoints" and (step_checkpoints(Path(run_dir)) or (Path(run_dir) / "last.pt").exists()):
        raise GantrainError(f"{run_dir} is the checkpoints folder of the run in {Path(run_dir).parent}: a run there would "
                            f"be mixed into it; give a folder of its own ({folder_option()}=NEW_FOLDER)")
    state = find_resume_state(cfg.get("resume"), run_dir, main=main)
    if isinstance(overrides, PythonChanges):
        if state is None:
            overrides = None  # a new run from Python: it records no command line
        elif not config_differences(with_added_keys(state["config"]), with_added_keys(plain_config(cfg))):
            # the run's own overrides repeated: its preset picks are no change (the rest apply as given)
            overrides = [o for o in overrides if _override_key(o) not in ("experiment", "model", "hparams_search")]
    if state is None:
        try:
            missing = sorted(OmegaConf.missing_keys(cfg))  # a preset's `???`: a value only the user can give
        except Exception as exc:  # an interpolation that does not resolve
            raise unresolved(exc) from None
        if missing:
            example = {"dataset.root": "dataset.root=/path/to/your/images"}.get(missing[0], f"{missing[0]}=VALUE")
            raise GantrainError(f"{', '.join(missing)} must be given on the command line, e.g. {example}")
        if cfg.get("resume") == "auto" and main:
            _adopt_launch_record(run_dir)
    if overrides is not None:
        overrides = [o for o in overrides if not o.lstrip("+~").startswith("resume=")]
    if state is not None:
        state = {**state, "config": with_added_keys(state["config"])}  # keys added since the run was written
        if overrides is not None:
            # the run continues with the config it was trained with (presets may have changed since); only the
            # command line's own changes apply, and are checked below
            saved_overrides = state.get("overrides")
            given = list(overrides or [])
            changes = _restated_groups_left_out([o for o in given if o not in (saved_overrides or [])], saved_overrides)
            cfg = saved_config_with(state["config"], changes, cfg)
            overrides = merge_overrides(list(saved_overrides), given) if saved_overrides is not None else None
        current = with_added_keys(plain_config(cfg))  # a config made before those keys existed trains with them off
        differing = config_differences(state["config"], current)
        if differing:
            saved, now = flatten(state["config"]), flatten(current)
            shown = "; ".join(f"{k}: {saved.get(k, '<missing>')!r} -> {now.get(k, '<missing>')!r}" for k in differing[:5])
            raise GantrainError(
                f"cannot resume: the config differs from the checkpoint's in {', '.join(differing)} ({shown}); "
                f"only {', '.join(k for k in SAFE_RESUME_KEYS if k != 'resume')} may change on resume"
            )
    _absolute_root(cfg)
    if state is None:  # before anything is loaded or built (a resumed run keeps the config it was trained with)
        _check_finite(plain_config(cfg), skip=_CHECKED_BY_COMPONENTS)
    loop = build(cfg, run_dir, dist=dist, overrides=None if overrides is None else list(overrides))
    if state is None:  # what the components' own checks leave
        _check_finite(plain_config(cfg))
    else:  # a resume: the settings it may change (the rest are the run's own, compared above)
        _check_finite({k: v for k, v in flatten(plain_config(cfg)).items() if k in SAFE_RESUME_KEYS})
    if state is not None:
        loop.load_state_dict(state)
        resume = cfg.get("resume")
        if loop.step > loop.steps and resume != "auto":  # (a relaunch with resume=auto just ends)
            raise GantrainError(f"the run is at step {loop.step}, past trainer.steps={loop.steps}: there is nothing to "
                                f"train; give a trainer.steps above {loop.step} to train it longer")
        if loop.step >= loop.steps and resume != "auto" and \
                run_folder_for(Path(str(resume)).expanduser()).resolve() != Path(run_dir).resolve():
            raise GantrainError(f"the checkpoint is at step {loop.step} and trainer.steps={loop.steps}: a branch into "
                                f"{run_dir} would train nothing and hold no checkpoint; give a trainer.steps above "
                                f"{loop.step}")
        log.info("continuing at step %d of %d", loop.step, loop.steps)
    if loop.dist.enabled:
        import torch.distributed

        torch.distributed.barrier()  # every process has read the run folder before any writes to it
    return loop


def train(cfg: DictConfig, run_dir: Path, overrides: Optional[Sequence[str]] = None,
          dist: Optional[Dist] = None) -> Loop:
    """Train the run described by cfg in run_dir (resuming when cfg.resume says so); returns the finished loop.

    Raises loop.Interrupted when a signal stopped training (a checkpoint of that step was written), and
    RunBusy when another process trains in run_dir.
    """
    main = dist is None or dist.main
    with run_lock(run_dir) if main else nullcontext():
        if main:
            log.info("run folder: %s  (watch it: tensorboard --logdir %s)", run_dir, run_dir)
        try:
            loop = prepare_run(cfg, run_dir, overrides, dist)
        except RunBusy:
            raise
        except GantrainError as exc:
            raise BeforeStart(str(exc)) from exc
        loop.fit()
    log.info("done: %d steps in %s; final samples %s", loop.step, run_dir,
             run_dir / "samples" / f"step_{loop.step:08d}.png")
    return loop
