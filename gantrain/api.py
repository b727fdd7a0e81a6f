"""The Python API: compose a config, train it, load a trained generator."""
from __future__ import annotations

import shutil
import weakref
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from omegaconf import DictConfig, OmegaConf

from gantrain.training.components import build_generator, build_translator, resolve_device
from gantrain.checkpoint import game_meta, open_run_or_checkpoint
from gantrain.config import flatten, register_resolvers
from gantrain.errors import _FROM_PYTHON, GantrainError
from gantrain.overrides import check_overrides, check_roots
from gantrain.nets.base import Generator, fixed_noise
from gantrain.training.distributed import from_env, leave
from gantrain.training.run import BeforeStart, PythonChanges
from gantrain.training.run import train as _train
from gantrain.eval.projection import project  # noqa: F401 (gantrain.project: GAN inversion of images)


def _device(device: Union[str, torch.device]) -> torch.device:
    """A device to load onto: a CUDA one is checked against the GPUs present; others (cpu, mps, ...) as torch
    names them; a name torch does not know is one line."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise GantrainError(f"device={device!r} is not a device torch knows (cpu, cuda, cuda:N, mps, ...)") from None
    return resolve_device(str(parsed), "device") if parsed.type == "cuda" else parsed


def _moved(network: Any, device: torch.device) -> Any:
    try:
        return network.to(device)
    except RuntimeError as exc:  # a device torch names but this build or machine lacks (mps here, say)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GantrainError(f"cannot load onto device={device} ({first}); use device=cpu") from None


def load_generator(path: Union[str, Path], device: Union[str, torch.device] = "cpu", ema: bool = True) -> Generator:
    """The generator of a run folder (its newest good checkpoint) or of a checkpoint file, in eval mode.

    ema: use the EMA generator when the run kept one. `.sample(n)` then gives n samples in data space:
    images (n, C, H, W) in [-1, 1], 2D points (n, 2); a conditional run's generator has `num_classes`
    and takes `.sample(n, labels=...)`; a text run's takes `.sample(n, text="a thick 3")` (or a list of n
    prompts); one trained on an image folder's class subfolders names them in `class_names` (label k is the k-th).
    Loading runs no code from the file, and runs
    written by earlier gantrain versions load too.
    """
    device = _device(device)
    _, state = open_run_or_checkpoint(Path(path))
    if game_meta(state).get("translation"):
        raise GantrainError(f"{path} is a {state['game_meta']['translation']['kind']} (image translation) run: translate images with "
                            f"gantrain-translate or gantrain.load_translator")
    text = game_meta(state).get("text")
    if text:  # a text-conditioned run: its generator with the caption encoder and vocabulary it trained with
        from gantrain.training.games.text import text_networks

        generator, _ = text_networks(state["config"]["generator"], None, tuple(state["data_shape"]), text)
    else:
        generator = build_generator(state["config"]["generator"], tuple(state["data_shape"]), state["data_kind"],
                                    state.get("num_classes"))
    weights = state["ema"]["generator"] if ema and "generator" in state["ema"] else state["networks"]["generator"]
    generator.load_state_dict(weights)
    if game_meta(state).get("class_names"):  # an image folder's classes: label k is its k-th class folder
        generator.class_names = list(game_meta(state)["class_names"])
    return fixed_noise(_moved(generator, device).eval())


def load_translator(path: Union[str, Path], device: Union[str, torch.device] = "cpu", ema: bool = True) -> Any:
    """The translating networks of a pix2pix or CycleGAN run (folder or checkpoint file), in eval mode.

    `.translate(x, direction="AtoB")` maps (N, C, S, S) images in [-1, 1] at the trained size S
    (`.image_size`) to the other domain; `.directions` says which directions were trained (CycleGAN:
    AtoB and BtoA), `.channels(direction)` their (input, output) channels.
    """
    device = _device(device)
    _, state = open_run_or_checkpoint(Path(path))
    meta = game_meta(state).get("translation")
    if not meta:
        raise GantrainError(f"{path} is not an image translation run (it trains a GAN from noise): use "
                            f"gantrain-sample or gantrain.load_generator")
    translator = build_translator(state["config"]["generator"], meta["kind"], meta["channels_a"], meta["channels_b"],
                                  meta["image_size"])
    weights = state["ema"]["generator"] if ema and "generator" in state.get("ema", {}) else state["networks"]["generator"]
    translator.load_state_dict(weights)
    return _moved(translator, device).eval()


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config `gantrain <overrides>` would train, composed without running anything.

    Example: compose(["loss=wgan_gp", "dataset=digits", "trainer.steps=100"]).
    """
    from gantrain.config import hydra_compose

    if isinstance(overrides, (str, bytes)) or not all(isinstance(o, str) for o in overrides):
        raise GantrainError(f"compose takes a list of overrides such as [\"loss=hinge\", \"trainer.steps=100\"], not "
                            f"{overrides!r}")
    hydra_keys = [o for o in overrides if o.lstrip("+~").startswith("hydra.") or o.lstrip("+~").startswith("hydra/")]
    if hydra_keys:  # Hydra's own settings (run folder, sweeper, launcher) belong to the command line
        raise GantrainError(f"{hydra_keys[0]} is a setting of the gantrain command, not of the config; from Python, "
                            f"give the run folder to gantrain.train(cfg, run_dir) (sweeps: the gantrain command's -m)")
    if any(o.lstrip("+~").split("=", 1)[0] == "resume" and not o.split("=", 1)[1].strip("'\" ") for o in overrides
           if "=" in o):
        raise GantrainError("resume= is empty; give the run folder or checkpoint to continue, resume=auto, or leave "
                            "resume out for a new run")
    register_resolvers()
    check_overrides(list(overrides))
    check_roots(list(overrides))
    try:
        cfg = hydra_compose(overrides)
    except Exception as exc:  # what the checks above do not foresee: Hydra's first line, and its cause kept
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise GantrainError(f"cannot compose {' '.join(overrides)}: {'; '.join(lines[:2]) or type(exc).__name__}") from exc
    for key in [k for k, (ref, _, _) in _COMPOSED.items() if ref() is None]:
        del _COMPOSED[key]
    _COMPOSED[id(cfg)] = (weakref.ref(cfg), list(overrides), _flat(cfg))
    return cfg


#: the configs compose() made: id -> (the config, its overrides, its values then), so that train() resumes a run
#: from the changes given, as the command line does
_COMPOSED: dict[int, tuple[Any, list[str], dict[str, Any]]] = {}


def _flat(cfg: DictConfig) -> dict[str, Any]:
    return flatten(OmegaConf.to_container(cfg, resolve=False))


def _changes(cfg: DictConfig) -> Optional[list[str]]:
    """The overrides compose() made cfg from, plus a `key=value` for each value changed or added on cfg since; None
    for a config compose() did not make."""
    record = _COMPOSED.get(id(cfg))
    if record is None or record[0]() is not cfg:
        return None
    _, overrides, values = record
    now = _flat(cfg)
    # a key deleted from cfg is no change: such a config is one written before the key existed, which trains
    # with the value that reproduces it (config.with_added_keys)
    edited = [k for k in sorted(now) if values.get(k, _MISSING) != now[k]]
    return [*overrides, *(f"{k}={now[k]}" for k in edited)]


_MISSING = object()


def train(cfg: DictConfig, run_dir: Union[str, Path]) -> Path:
    """Train (or resume, per cfg.resume) the run of a composed config in run_dir; returns run_dir.

    A signal (SIGINT/SIGTERM) stops training after the current step with a checkpoint and raises
    gantrain.training.loop.Interrupted.
    """
    if not isinstance(run_dir, (str, Path)) or not str(run_dir):
        raise GantrainError(f"run_dir={run_dir!r} must be the path of the run's folder")
    run_dir = Path(run_dir).expanduser()
    existed, had_lock = run_dir.exists(), (run_dir / ".gantrain.lock").exists()
    made = run_dir  # the outermost folder this call makes (parents included), removed again if refused
    while not made.parent.exists() and made.parent != made:
        made = made.parent
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GantrainError(f"cannot create the run folder {run_dir} ({exc.strerror or exc}); choose another run_dir") from None
    # a resume of a config compose() made continues the run's own config with the changes given (as
    # `gantrain resume=RUN trainer.steps=N` does); any other config is compared with the saved one as it is
    changes = _changes(cfg) if cfg.get("resume") not in (None, "") else None
    overrides = None if changes is None else PythonChanges(changes)
    dist = from_env()  # under torchrun: this process's place in the job (the main one writes the run)
    from_python = _FROM_PYTHON.set(True)  # messages name run_dir, not the command's hydra.run.dir
    try:
        _train(cfg, run_dir, overrides, dist if dist.enabled else None)
    except BeforeStart:  # refused before training began: the folder is left as it was
        if dist.main and not existed:
            shutil.rmtree(made, ignore_errors=True)
        elif dist.main and not had_lock:
            (run_dir / ".gantrain.lock").unlink(missing_ok=True)
        raise
    finally:
        _FROM_PYTHON.reset(from_python)
        leave()  # under torchrun: the process group train joined (one the caller joined stays)
    return run_dir
