"""Component factories of a run: the dataset, the networks, the evaluator and the checks on them, built from
config nodes. Used by the games (each builds its own networks) and by the shared build; nothing here knows a
game or the loop."""
from __future__ import annotations

import collections.abc
import inspect
import logging
import random
import types
import typing
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from gantrain.config import ConditionConfig, TrainerConfig, TranslationConfig
from gantrain.data.base import Dataset
from gantrain.errors import GantrainError
from gantrain.training.losses import GANLoss
from gantrain.nets.base import Generator

log = logging.getLogger("gantrain")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str, key: str = "trainer.device") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' to a torch.device that exists here; errors name the option `key`."""
    name = str(name).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GantrainError(f"{key}={name!r} is not one of auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GantrainError(f"{key}={name} but no CUDA device is available here; use {key}=cpu or auto")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise GantrainError(f"{key}={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise GantrainError(f"{key}={name!r} is not one of auto, cpu, cuda, cuda:N")
    return device


def instantiate_component(node: DictConfig, group: str, **given: Any) -> Any:
    """Instantiate a `_target_` config node, refusing keys its class does not take.

    given: arguments supplied by the builder (shapes); passed only where the class takes them.
    """
    from hydra.utils import get_class, instantiate

    if "_target_" not in node:
        raise GantrainError(f"the {group} config has no _target_; pick an option with {group}=<option>")
    target = node._target_
    try:
        cls = get_class(target)
    except Exception:
        raise GantrainError(f"{group}._target_={target} cannot be imported; check the spelling") from None
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    keys = [k for k in node.keys() if not str(k).startswith("_")]
    unknown = [k for k in keys if k not in params and not takes_any]
    if unknown:
        valid = [k for k in params if k not in ("self", *given)]
        raise GantrainError(
            f"unknown key(s) {', '.join(f'{group}.{k}' for k in unknown)} for {target.rsplit('.', 1)[-1]}; "
            f"valid keys: {', '.join(valid)}"
        )
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that does not evaluate here: no type check, the class checks itself
        hints = {}
    try:
        values = OmegaConf.to_container(node, resolve=True, throw_on_missing=False) if isinstance(node, DictConfig) else dict(node)
    except Exception as exc:
        raise GantrainError(f"the {group} config does not resolve: {str(exc).splitlines()[0]}") from None
    for key in keys:
        if key in hints and values[key] != "???" and not _fits(values[key], hints[key]):
            raise GantrainError(f"{group}.{key}={values[key]!r} must be {_describe(hints[key])}")
    extra = {k: v for k, v in given.items() if k in params or takes_any}
    try:
        return instantiate(node, **extra, _convert_="all")
    except GantrainError:
        raise
    except Exception as exc:
        cause = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, GantrainError):
            raise cause from None
        if isinstance(cause, (ValueError, TypeError)):  # a value the class refuses: the config's doing, cause kept
            raise GantrainError(f"could not build {group} ({target}): {str(cause).splitlines()[0]}") from cause
        raise cause  # anything else is a bug in the class: itself, with its traceback (HYDRA_FULL_ERROR=1: whole)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a config value is of an __init__ annotation's type (ints are floats too; bools are not numbers)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value) if args else True
    return True


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple, collections.abc.Sequence):
        return f"a list of {_describe(args[0]).removeprefix('a ')}s" if args else "a list"
    return {int: "a whole number", float: "a number", bool: "true or false", str: "a string",
            type(None): "null"}.get(hint, str(hint))


def check_combination(loss: GANLoss, cfg: DictConfig) -> None:
    """Refuse combinations that train something other than what the user asked for."""
    if loss.gp_weight > 0 and cfg.discriminator.get("norm") == "batch":
        raise GantrainError(
            "discriminator.norm=batch under a gradient penalty: batch norm mixes samples, so the per-sample penalty "
            "is wrong; set discriminator.norm=layer, instance or none"
        )
    if loss.gp_weight > 0 and loss.clip is not None:
        raise GantrainError("loss.clip and loss.gradient_penalty are both set; WGAN-GP replaces clipping: set loss.clip=null")


def unresolved(exc: Exception) -> GantrainError:
    """The one-line error of a config whose interpolations do not resolve (`exc`: what OmegaConf raised)."""
    return GantrainError(f"the config does not resolve: {str(exc).splitlines()[0]}")


def plain_config(cfg: DictConfig) -> dict:
    """The resolved config as plain Python containers (what checkpoints store)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except Exception as exc:
        raise unresolved(exc) from None


def build_dataset_quietly(node: Any) -> Dataset:
    """build_dataset for a command that only reads what the run's data is (its domain classifier): what the build
    warns of (unreadable training images skipped) concerns training, not the command's own inputs."""
    logger = logging.getLogger("gantrain")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return build_dataset(node)
    finally:
        logger.setLevel(level)


def build_dataset(node: Any, seed: Optional[int] = None) -> Dataset:
    """The dataset of a `dataset` config node; with seed, the training subset dataset.subset asks for (if any).

    Without seed (evaluation, reference points) the full dataset, whatever dataset.subset says.
    """
    node = node if isinstance(node, DictConfig) else OmegaConf.create(node)
    subset = node.get("subset")
    if "subset" in node:
        node = node.copy()
        with open_dict(node):
            del node["subset"]
    dataset = instantiate_component(node, "dataset")
    if subset is None or seed is None:
        return dataset
    if getattr(dataset, "paired", None) is not None:
        raise GantrainError(f"dataset.subset is not supported for translation datasets ({dataset.name}); set "
                            f"dataset.subset=null")
    from gantrain.data.images import Subset

    return Subset(dataset, subset, seed)


def reference_batch(dataset: Dataset, seed: int, n: int = 256) -> torch.Tensor:
    """Up to n training samples in data space, drawn with the seed (the scale diagnostics compare samples to)."""
    from gantrain.data.base import normalize

    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + 7))[:n]
    if dataset.streamed:
        return normalize(torch.stack([dataset.item(int(i)) for i in order]))  # type: ignore[attr-defined]
    return normalize(dataset.tensor()[order])


def build_generator(gen_cfg: Any, data_shape: tuple[int, ...], data_kind: str, num_classes: Optional[int] = None) -> Generator:
    """The generator of a config node, sized for data of `data_shape` (conditional on num_classes classes)."""
    node = gen_cfg if isinstance(gen_cfg, DictConfig) else OmegaConf.create(gen_cfg)
    given: dict[str, Any] = {"num_classes": num_classes} if num_classes else {}
    generator = instantiate_component(node, "generator", out_shape=tuple(data_shape), bounded=data_kind == "image", **given)
    if num_classes and getattr(generator, "num_classes", None) != num_classes:
        raise GantrainError(f"generator {node._target_} does not take num_classes, so it cannot be conditional; "
                            f"use generator=dcgan, sngan or mlp, or conditional=false")
    return generator


def build_discriminator(cfg: DictConfig, dataset: Dataset, condition: Optional[ConditionConfig]) -> Any:
    """The discriminator of cfg for dataset's samples (conditional when `condition` is set)."""
    given: dict[str, Any] = {}
    if condition is not None:
        given = {"num_classes": dataset.num_classes, "conditioning": condition.discriminator}
    discriminator = instantiate_component(cfg.discriminator, "discriminator", in_shape=tuple(dataset.shape), **given)
    if condition is not None and getattr(discriminator, "num_classes", None) != dataset.num_classes:
        raise GantrainError(f"discriminator {cfg.discriminator._target_} does not take num_classes, so it cannot be "
                            f"conditional; use discriminator=dcgan, sngan or mlp, or conditional=false")
    if condition is not None and condition.discriminator == "ac" and \
            "classes" not in inspect.signature(discriminator.forward).parameters:
        raise GantrainError(f"condition.discriminator=ac needs a discriminator with a classifier head "
                            f"(forward(x, y, classes=True)); {cfg.discriminator._target_} has none")
    return discriminator


def check_labelled(dataset: Dataset, condition: Optional[ConditionConfig]) -> Optional[int]:
    """The number of classes a conditional run trains on (None when unconditional); refuses unlabelled data."""
    if condition is None:
        return None
    if not dataset.num_classes:
        why = getattr(getattr(dataset, "base", dataset), "no_classes", "")
        if why:
            raise GantrainError(f"conditional=true needs labels, and {dataset.name} has none: {why}; put every image "
                                f"in one subfolder per class (two or more), or set conditional=false")
        raise GantrainError(
            f"conditional=true needs labels, and {dataset.name} has none; use a labelled dataset (mnist, "
            f"fashion_mnist, cifar10, digits, ring, grid, or image_folder with one subfolder per class) "
            f"or conditional=false")
    if dataset.num_classes < 2:
        raise GantrainError(f"conditional=true needs two classes or more; {dataset.name} has {dataset.num_classes}")
    labels = dataset.labels()
    if labels.dtype != torch.int64 or labels.dim() != 1 or len(labels) != len(dataset):
        raise GantrainError(f"{dataset.name}.labels() must give one int64 class per sample ({len(dataset)}), "
                            f"not {labels.dtype} of shape {tuple(labels.shape)}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= dataset.num_classes):
        raise GantrainError(f"{dataset.name}'s labels run from {int(labels.min())} to {int(labels.max())}, outside "
                            f"0..{dataset.num_classes - 1} (num_classes={dataset.num_classes})")
    return int(dataset.num_classes)


def make_evaluator(dataset: Dataset, settings: TrainerConfig, device: torch.device,
                   conditional: bool = False) -> Optional[Any]:
    """The evaluator of trainer.metrics, or None when trainer.metrics=[] (a wrong choice is an error).

    conditional: the run is class-conditional (metrics=auto adds the control metrics)."""
    from gantrain.eval.evaluator import Evaluator

    metrics = settings.metrics
    if isinstance(metrics, str) and metrics != "auto":
        metrics = [m.strip() for m in metrics.strip("[]").split(",") if m.strip()]
    if metrics is not None and not isinstance(metrics, str) and len(metrics) == 0:
        log.info("evaluation during training is off: trainer.metrics=[] names no metric")
        return None
    evaluator = Evaluator(dataset, metrics, device=device, conditional=conditional)  # checks the choice; the costly set-up waits for first use
    if settings.best_metric and settings.best_metric not in evaluator.names:
        raise GantrainError(f"trainer.best_metric={settings.best_metric} is not among the evaluated metrics "
                            f"({', '.join(evaluator.names)}); pick one of them or set trainer.best_metric=null")
    return evaluator


def available_memory(device: torch.device) -> int:
    """Bytes free for training on `device` (CUDA: free device memory; CPU: MemAvailable of /proc/meminfo)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown: do not refuse


def estimate_memory(cfg: DictConfig, dataset: Dataset, settings: TrainerConfig,
                    condition: Optional[ConditionConfig] = None) -> tuple[int, int, int]:
    """(parameters, parameter bytes, activation bytes) of one training step, from the networks built on the
    meta device (nothing allocated). Parameters count 5 copies (weights, gradients, two optimizer moments,
    EMA); activations are every module output of one batch through G and D, kept for backward, x3 (D sees
    real and generated data, and penalties differentiate twice)."""
    num_classes = check_labelled(dataset, condition)
    with torch.device("meta"):
        g = build_generator(cfg.generator, dataset.shape, dataset.kind, num_classes)
        d = build_discriminator(cfg, dataset, condition)
        sizes: list[int] = []
        hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel() if isinstance(o, torch.Tensor) else 0))
                 for net in (g, d) for m in net.modules() if not list(m.children())]
        z = torch.empty(settings.batch_size, g.latent_dim)
        if num_classes:
            y = torch.zeros(settings.batch_size, dtype=torch.int64)
            d(g(z, y), y)
        else:
            d(g(z))
        for hook in hooks:
            hook.remove()
    params = sum(p.numel() for net in (g, d) for p in net.parameters())
    return params, 4 * 5 * params, 4 * 3 * sum(sizes)


def check_fits(cfg: DictConfig, dataset: Dataset, settings: TrainerConfig, device: torch.device,
               condition: Optional[ConditionConfig] = None) -> None:
    """Refuse, with the numbers and the keys to change, networks that cannot fit in the device's memory."""
    params, weights, activations = estimate_memory(cfg, dataset, settings, condition)
    free = available_memory(device)
    if weights + activations > free:
        gib = 1024**3
        raise GantrainError(
            f"the networks would need about {(weights + activations) / gib:.1f} GiB on {device} ({params / 1e6:.1f}M "
            f"parameters: {weights / gib:.1f} GiB with gradients and optimizer state; activations of a batch: "
            f"{activations / gib:.1f} GiB) but {free / gib:.1f} GiB are free; lower trainer.batch_size, "
            f"dataset.image_size, generator.latent_dim, generator/discriminator.base_channels or .hidden"
        )


def translation_channels(dataset: Any, translation: TranslationConfig) -> tuple[int, int, int, int, int]:
    """(A's channels in the data, A's channels trained, B's in the data, B's trained, image size) of a
    translation dataset."""
    if translation.kind == "pix2pix" and not getattr(dataset, "paired", False):
        raise GantrainError(f"model=pix2pix needs paired data (dataset=edges2mnist or paired_folder); {dataset.name} "
                            f"is unpaired: use model=cyclegan")
    if getattr(dataset, "paired", False):
        ca, cb, size = dataset.channels_a, dataset.channels_b, dataset.shape[-1]
    else:
        a, b = dataset.domain_a(), dataset.domain_b()
        if a.shape[-1] != b.shape[-1]:
            raise GantrainError(f"the domains of {dataset.name} have different image sizes ({a.shape[-1]} and {b.shape[-1]}); "
                                f"set dataset.image_size")
        ca, cb, size = a.shape[0], b.shape[0], a.shape[-1]
    want = translation.channels
    return ca, want or ca, cb, want or cb, size


def build_translator(gen_cfg: Any, kind: str, channels_a: int, channels_b: int, image_size: int) -> Any:
    """The translating networks of a translation config: A -> B, and B -> A for CycleGAN."""
    from gantrain.nets.translation import Translator

    node = gen_cfg if isinstance(gen_cfg, DictConfig) else OmegaConf.create(gen_cfg)

    if not _takes(node, "in_channels"):
        raise GantrainError(f"generator {node.get('_target_')} does not translate images; use generator=unet (pix2pix) "
                            f"or generator=resnet (CycleGAN)")

    def one(c_in: int, c_out: int) -> Any:
        return instantiate_component(node, "generator", in_channels=c_in, out_channels=c_out, image_size=image_size)

    ab = one(channels_a, channels_b)
    ba = one(channels_b, channels_a) if kind == "cyclegan" else None
    return Translator(ab, ba, channels_a, channels_b, image_size)


def _takes(node: DictConfig, argument: str) -> bool:
    """Whether the class a config node names takes `argument` (False when it cannot be imported)."""
    from hydra.utils import get_class

    try:
        return argument in inspect.signature(get_class(str(node.get("_target_"))).__init__).parameters
    except Exception:  # instantiate_component reports a bad _target_ in its own words
        return True


def _patch_discriminator(cfg: DictConfig, channels: int, image_size: int) -> Any:
    if not _takes(cfg.discriminator, "in_channels"):
        raise GantrainError(f"discriminator {cfg.discriminator.get('_target_')} cannot judge translated images; use "
                            f"discriminator=patchgan")
    return instantiate_component(cfg.discriminator, "discriminator", in_channels=channels, image_size=image_size)


def _grid_images(dataset: Any, count: int) -> tuple[Any, Any]:
    """Held-out (test split) images of both domains for the sample grids, normalised; the first training
    images when there is no test split."""
    from gantrain.data.base import normalize

    def first(source: Any) -> tuple[Any, Any]:
        if getattr(source, "paired", False):
            images = source.tensor()[:count]
            return normalize(images[:, : source.channels_a]), normalize(images[:, source.channels_a :])
        half = max(1, count // 2)
        return normalize(source.domain_a().tensor()[:half]), normalize(source.domain_b().tensor()[:half])

    if hasattr(dataset, "split"):
        try:
            return first(dataset.split(train=False))
        except GantrainError as exc:
            log.info("sample grids show training images (no test split: %s)", exc)
    return first(dataset)
