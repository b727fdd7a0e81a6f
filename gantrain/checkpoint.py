"""Crash-safe checkpoint files: atomic writes, pruning after success, and loading that runs no code.

A checkpoint is a dict of tensors, numbers, strings, lists, tuples and dicts, written with torch.save
and read with torch.load(weights_only=True), whose unpickler refuses every global outside PyTorch's
tensor allow-list; the top-level keys are then checked against CHECKPOINT_KEYS.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional

import torch

from gantrain.errors import GantrainError
from gantrain.moved import current_target

log = logging.getLogger("gantrain")

FORMAT = "gantrain-checkpoint"
FORMAT_VERSION = 2
CHECKPOINT_KEYS = {
    "format", "format_version", "step", "config", "overrides", "versions", "data_shape", "data_kind", "game",
    "networks", "ema", "optimizers", "schedules", "data_state", "rng", "rng_ranks", "world_size", "stats", "periodic",
    "num_classes",  # classes of a conditional run (None or absent: unconditional; absent before 0.3.0)
    "game_ranks",  # what each data-parallel process keeps for itself, e.g. its history pools (0.7.0)
    "game_state",  # the game's own state besides its networks, e.g. ADA's p, a CycleGAN's history pools (0.9.0)
    "game_meta",  # the game's own metadata, e.g. a translation run's kind, channels and size (0.9.0)
}
#: where the game's own entries of gantrain 0.4.0-0.8.0 (top-level keys) live today; moved on load, and still
#: read by their old names (Checkpoint)
LEGACY_GAME_KEYS = {"pools": "game_state", "augment": "game_state", "translation": "game_meta"}


class Checkpoint(dict):
    """A loaded checkpoint: a dict, in which the game's own entries that gantrain 0.8.0 and earlier kept at the
    top (`pools`, `augment`, `translation`) still read by those names (state["pools"] is
    state["game_state"]["pools"]), so that code written against the old layout keeps working."""

    def __missing__(self, key: Any) -> Any:
        owner = LEGACY_GAME_KEYS.get(key)
        if owner is not None and isinstance(dict.get(self, owner), dict) and key in dict.get(self, owner):
            return dict.__getitem__(self, owner)[key]
        raise KeyError(key)

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default
# What gantrain 0.1.0 wrote (format version 1); migrated on load by _migrate_v1.
CHECKPOINT_KEYS_V1 = {
    "format", "format_version", "step", "config", "overrides", "versions", "data_shape", "data_kind",
    "generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d", "scaler",
    "scheduler_g", "scheduler_d", "data_state", "rng", "rng_ranks", "world_size", "stats", "metrics",
}
STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in path's folder, fsync, then rename over path.

    On any failure the temporary file is removed and a file already at `path` is untouched. A loaded
    Checkpoint is written as the plain dict it is (its class is not in a checkpoint's allow-list).
    """
    if isinstance(obj, Checkpoint):
        obj = dict(obj)
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def file_mode() -> int:
    """The permissions a new file gets under this process's umask (mkstemp's files are 0600 otherwise)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_write(path: Path, write: Callable[[BinaryIO], None], exclusive: bool = False) -> None:
    """write(f) into a temporary file in path's folder, fsync, then rename over path (see atomic_save).

    exclusive: never replace a file at path, also one another process makes meanwhile (FileExistsError).
    The file's permissions follow the umask, as a plain open() would.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)  # fails if path exists: the check and the write are one step
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


atomic_write = _atomic_write  # for other writers of files that must never be seen half written


def _atomic_copy(src: Path, dst: Path) -> None:
    """Make dst an independent copy of src, atomically: a later write through one name never changes the other."""
    with open(src, "rb") as source:
        _atomic_write(dst, lambda f: shutil.copyfileobj(source, f))


def _is_torchscript(path: Path) -> bool:
    """Whether a zip file is a TorchScript archive (torch.jit.save writes code/ and constants.pkl into it)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict:
    """Load a gantrain checkpoint without running code from it; GantrainError names a bad file."""
    path = Path(path)
    if not path.is_file():
        raise GantrainError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise GantrainError(f"cannot read checkpoint {path} ({exc.strerror or exc}); check its permissions") from None
    if head != b"PK\x03\x04":  # torch.save writes a zip archive; anything else is some other file
        raise GantrainError(f"{path} is not a gantrain checkpoint (not a PyTorch checkpoint file); "
                            f"give a run folder or one of its checkpoints/*.pt")
    if _is_torchscript(path):
        raise GantrainError(f"{path} is a TorchScript export (gantrain-export), not a checkpoint: load it with "
                            f"torch.jit.load; here, give a run folder or one of its checkpoints/*.pt")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        # torch's weights-only message: the cause is on the line naming the operand or global, not the first
        first = next((line for line in lines if "Unsupported" in line or "unsupported" in line), lines[0] if lines else
                     "unpickling failed")
        if "GLOBAL" in str(exc) or "Unsupported global" in str(exc):  # it names a function to call: never run it
            raise GantrainError(
                f"checkpoint {path} was refused: it holds objects outside a checkpoint's allow-list "
                f"(loading it could run code); only load checkpoints written by gantrain"
            ) from None
        raise GantrainError(f"checkpoint {path} is corrupt ({_sentence(first)}); use another checkpoint") from None
    except Exception as exc:  # a damaged archive or pickle fails in many ways (KeyError, struct.error, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GantrainError(f"checkpoint {path} is truncated or corrupt ({_sentence(first)}); use another checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GantrainError(f"{path} is not a gantrain checkpoint (no '{FORMAT}' marker)")
    return Checkpoint(migrate(state, path))


def migrate(state: dict, path: Path) -> dict:
    """The checkpoint in today's format (FORMAT_VERSION); older formats are converted, newer ones refused."""
    version = state.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise GantrainError(f"checkpoint {path} has an unknown format version {version!r}; it was not written by gantrain")
    if version > FORMAT_VERSION:
        raise GantrainError(
            f"checkpoint {path} has format version {version}, newer than this gantrain reads "
            f"({FORMAT_VERSION}); upgrade gantrain"
        )
    keys = CHECKPOINT_KEYS_V1 if version == 1 else CHECKPOINT_KEYS | set(LEGACY_GAME_KEYS)
    unknown = set(state) - keys
    if unknown:
        versions = state.get("versions")
        written = versions.get("gantrain") if isinstance(versions, dict) else None
        from gantrain.version import __version__

        newer = f" (written by gantrain {written}, this is {__version__}: pip install -U gantrain)" if written and written != __version__ else ""
        raise GantrainError(f"checkpoint {path} holds unexpected entries {sorted(unknown)}; refusing to load it{newer}")
    if version == 1:
        state = _migrate_v1(state, path)
    return _game_keys_inside(state)


def game_meta(state: dict) -> dict:
    """The game's own metadata of a checkpoint (a translation run's under "translation"); {} when it has none."""
    return state.get("game_meta") or {}


def _game_keys_inside(state: dict) -> dict:
    """A checkpoint of gantrain 0.4.0-0.8.0 with its game's own top-level entries moved under game_state and
    game_meta (LEGACY_GAME_KEYS); today's checkpoints are returned as they are."""
    if not any(key in state for key in LEGACY_GAME_KEYS):
        return state
    state = dict(state)
    for key, owner in LEGACY_GAME_KEYS.items():
        if key in state:
            value = state.pop(key)
            if value is not None:
                state[owner] = {**state.get(owner, {}), key: value}
    return state


# The statistics slots of format 1 and how many additions each got per step (D's: n_critic).
_V1_STATS = (("loss/d", True), ("d/real", True), ("d/fake", True), ("loss/penalty", True), ("loss/g", False))


def _migrate_v1(old: dict, path: Path) -> dict:
    """Format 1 (gantrain 0.1.0: fixed generator/discriminator keys) to format 2 (named networks)."""
    try:
        config = migrate_config_v1(old["config"])
        n_critic = int(config["trainer"]["n_critic"])
        steps = int(old["stats"]["steps"])
        has_penalty = float(config["loss"].get("gradient_penalty") or 0) > 0 or float(config["loss"].get("r1_gamma") or 0) > 0
        kept = [(i, name, steps * (n_critic if per_critic else 1)) for i, (name, per_critic) in enumerate(_V1_STATS)
                if name != "loss/penalty" or has_penalty]
        sums = old["stats"]["sums"]
        state = {k: old[k] for k in ("format", "step", "overrides", "versions", "data_shape", "data_kind",
                                     "data_state", "rng", "world_size") if k in old}
        state.update({
            "format_version": FORMAT_VERSION,
            "config": config,
            "game": "gan",
            "networks": {"generator": old["generator"], "discriminator": old["discriminator"]},
            "ema": {"generator": old["generator_ema"]} if old.get("generator_ema") is not None else {},
            "optimizers": {"generator": old["optimizer_g"], "discriminator": old["optimizer_d"]},
            "schedules": ({"generator": old["scheduler_g"], "discriminator": old["scheduler_d"]}
                          if old.get("scheduler_g") is not None else {}),
            "stats": {"names": [name for _, name, _ in kept], "sums": sums[[i for i, _, _ in kept]].clone(),
                      "counts": torch.tensor([float(c) for _, _, c in kept]), "steps": steps},
            "periodic": {"evaluation": {"best": dict(old.get("metrics", {}).get("best", {}))}},
        })
        if "rng_ranks" in old:
            state["rng_ranks"] = old["rng_ranks"]
    except GantrainError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise GantrainError(f"checkpoint {path} (format 1) is incomplete ({type(exc).__name__}: {exc}); "
                            f"use another checkpoint") from None
    return state


def migrate_config_v1(config: dict) -> dict:
    """A run config of gantrain 0.1.0 in today's schema (options removed since are dropped)."""
    import copy

    config = copy.deepcopy(config)
    discriminator = config.get("discriminator", {})
    if discriminator.pop("sigmoid", False):
        raise GantrainError("this run was configured with discriminator.sigmoid=true, which gantrain never trained; "
                            "start a new run")
    dataset = config.get("dataset", {})
    if current_target(dataset.get("_target_")) == "gantrain.data.images.Digits":
        dataset.pop("root", None)
    if current_target(dataset.get("_target_")) == "gantrain.data.images.ImageFolder":
        dataset.setdefault("skip_bad_images", True)  # what 0.1.0 did not have; today's default
    return config


def step_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the step checkpoints in folder, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_FILE.match(p.name))]
    return sorted(found)


def _sentence(text: str, limit: int = 160) -> str:
    """The first sentence of a library's message, cut at a word with "..." when still longer than `limit`."""
    first = text.split(". ", 1)[0].rstrip(".")
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0] + "..."


def newest_good(run_dir: Path) -> Optional[tuple[Path, dict]]:
    """The newest checkpoint of a run that loads: last.pt, else step files newest first (with a warning)."""
    folder = Path(run_dir) / "checkpoints"
    candidates = [folder / "last.pt"] + [p for _, p in reversed(step_checkpoints(folder))]
    first_error: Optional[str] = None
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            state = load_checkpoint(candidate)
        except GantrainError as exc:
            first_error = first_error or str(exc)
            log.warning("skipping unreadable checkpoint: %s", exc)
            continue
        if first_error:
            log.warning("using %s instead", candidate)
        return candidate, state
    if first_error:
        raise GantrainError(f"no readable checkpoint in {folder}: {first_error}")
    return None


def run_folder_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint file belongs to (the parent of its checkpoints/ folder)."""
    folder = Path(checkpoint).parent
    return folder.parent if folder.name == "checkpoints" else folder


def as_run_folder(path: Path) -> Path:
    """A folder given for a run: RUN/checkpoints (the run's own checkpoint folder) is RUN; anything else as given."""
    path = Path(path)
    if path.is_dir() and path.name == "checkpoints" and not (path / "checkpoints").is_dir():
        return path.parent
    return path


def run_folder_for(path: Path) -> Path:
    """The run folder a resume= path names: a run folder as given (RUN/checkpoints is RUN), or the run a checkpoint
    file (a .pt, existing or not) belongs to."""
    path = as_run_folder(Path(path))
    return run_folder_of(path) if path.is_file() or path.suffix == ".pt" else path


def open_run_or_checkpoint(path: Path) -> tuple[Path, dict]:
    """(checkpoint file, state): a run folder's newest good checkpoint, or the given checkpoint file."""
    path = as_run_folder(Path(path))
    if path.is_dir():
        found = newest_good(path)
        if found is None:
            if any((path / name).exists() for name in ("metrics.jsonl", "samples", "tb")):
                raise GantrainError(f"the run in {path} stopped before its first checkpoint: there is nothing to load; "
                                    f"train it again there with its own command plus resume=auto "
                                    f"hydra.run.dir={path}")
            raise GantrainError(f"{path} holds no checkpoint in checkpoints/; pass a run folder or a .pt file")
        return found
    return path, load_checkpoint(path)


class CheckpointWriter:
    """Writes step_<N>.pt and last.pt into run_dir/checkpoints; keeps the newest `keep_last` step files."""

    def __init__(self, run_dir: Path, keep_last: int = 3):
        self.folder = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    def save(self, state: dict, step: int) -> Path:
        """Write the checkpoint of `step`; raise GantrainError (old checkpoints intact) when the write fails."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(".*.tmp"):  # left by a process killed mid-write
            try:
                stale.unlink()
            except OSError:
                pass
        path = self.folder / f"step_{step:08d}.pt"
        try:
            atomic_save(state, path)
            _atomic_copy(path, self.folder / "last.pt")
        except OSError as exc:
            raise GantrainError(
                f"could not write checkpoint {path} ({exc.strerror or exc}); the previous checkpoints are intact; "
                f"free disk space and resume"
            ) from None
        self._prune(keep=path)
        return path

    def save_named(self, state: dict, name: str) -> Path:
        """Write checkpoints/<name>.pt atomically (best.pt, say)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}.pt"
        try:
            atomic_save(state, path)
        except OSError as exc:
            raise GantrainError(f"could not write checkpoint {path} ({exc.strerror or exc}); free disk space") from None
        return path

    def _prune(self, keep: Path) -> None:
        steps = step_checkpoints(self.folder)
        for _, old in steps[: max(0, len(steps) - self.keep_last)]:
            if old != keep:
                old.unlink(missing_ok=True)
