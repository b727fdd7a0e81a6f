"""Turn a composed config into the objects of one training run. Nothing here reads Hydra globals."""
from __future__ import annotations

import inspect
import logging
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from . import __version__
from .config import OptimizerConfig, TrainerConfig, check_top_level, optimizer_settings, trainer_settings
from . import distributed
from .data import Dataset, make_batches
from .distributed import Dist
from .errors import GantrainError
from .losses import GANLoss
from .models import Generator
from .trainer import Trainer, make_ema

log = logging.getLogger("gantrain")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' to a torch.device that exists here."""
    name = str(name).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GantrainError(f"trainer.device={name!r} is not one of auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GantrainError(f"trainer.device={name} but no CUDA device is available here; use trainer.device=cpu or auto")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise GantrainError(f"trainer.device={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise GantrainError(f"trainer.device={name!r} is not one of auto, cpu, cuda, cuda:N")
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
        raise GantrainError(f"could not build {group} ({target}): {str(cause).splitlines()[0]}") from None


def check_combination(loss: GANLoss, discriminator: torch.nn.Module, cfg: DictConfig) -> None:
    """Refuse combinations that train something other than what the user asked for."""
    if getattr(discriminator, "sigmoid", False):
        if loss.critic:
            raise GantrainError(
                f"discriminator.sigmoid=true under loss={loss.name}: a {loss.name} critic must output unbounded "
                f"scores, a sigmoid cripples it; set discriminator.sigmoid=false"
            )
        raise GantrainError(
            f"discriminator.sigmoid=true under loss={loss.name}: gantrain's losses take raw logits and apply the "
            f"sigmoid themselves in the stable softplus form; set discriminator.sigmoid=false"
        )
    if loss.gp_weight > 0 and cfg.discriminator.get("norm") == "batch":
        raise GantrainError(
            "discriminator.norm=batch under a gradient penalty: batch norm mixes samples, so the per-sample penalty "
            "is wrong; set discriminator.norm=layer, instance or none"
        )
    if loss.gp_weight > 0 and loss.clip is not None:
        raise GantrainError("loss.clip and loss.gradient_penalty are both set; WGAN-GP replaces clipping: set loss.clip=null")


def make_optimizer(params: Any, o: OptimizerConfig, who: str, device: torch.device, capturable: bool) -> torch.optim.Optimizer:
    """The optimizer `o.name` for one network (who: 'generator' | 'discriminator')."""
    own = getattr(o, who)
    lr = own.lr if own.lr is not None else o.lr
    betas = tuple(own.betas if own.betas is not None else o.betas)
    cuda = device.type == "cuda"
    # capturable keeps the step counters on the device so a CUDA graph can replay the update;
    # otherwise fused kernels are the fastest on CUDA and foreach on the CPU.
    fast = {"capturable": True, "foreach": True} if capturable else ({"fused": True} if cuda else {"foreach": True})
    if o.name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=o.eps, weight_decay=o.weight_decay, **fast)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=o.eps, weight_decay=o.weight_decay, **fast)
    if o.name == "rmsprop":
        fast = {"capturable": True, "foreach": True} if capturable else {"foreach": True}
        return torch.optim.RMSprop(params, lr=lr, alpha=o.alpha, eps=o.eps, momentum=o.momentum, weight_decay=o.weight_decay, **fast)
    fast = {"fused": True} if cuda and not capturable else {"foreach": True}
    return torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, **fast)


def plain_config(cfg: DictConfig) -> dict:
    """The resolved config as plain Python containers (what checkpoints store)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except Exception as exc:
        raise GantrainError(f"the config does not resolve: {str(exc).splitlines()[0]}") from None


def build_dataset(cfg: DictConfig) -> Dataset:
    return instantiate_component(cfg.dataset, "dataset")


def build_generator(gen_cfg: Any, data_shape: tuple[int, ...], data_kind: str) -> Generator:
    """The generator of a config node, sized for data of `data_shape`."""
    node = gen_cfg if isinstance(gen_cfg, DictConfig) else OmegaConf.create(gen_cfg)
    return instantiate_component(node, "generator", out_shape=tuple(data_shape), bounded=data_kind == "image")


def make_evaluator(dataset: Dataset, settings: TrainerConfig, device: torch.device) -> Optional[Any]:
    """The evaluator of trainer.metrics, or None (with a warning) when its metrics cannot run here."""
    from .evaluate import Evaluator

    metrics = settings.metrics
    if isinstance(metrics, str) and metrics != "auto":
        metrics = [m.strip() for m in metrics.strip("[]").split(",") if m.strip()]
    try:
        return Evaluator(dataset, metrics, device=device)
    except GantrainError as exc:
        if "unknown metric" in str(exc) or "are for the" in str(exc) or "asked for on 2D" in str(exc):
            raise
        log.warning("evaluation during training is off: %s", exc)
        return None


def build(cfg: DictConfig, run_dir: Path, evaluate: bool = True, dist: Optional[Dist] = None) -> Trainer:
    """Every object of a run, wired into a Trainer ready to fit (fresh weights; resume loads state after).

    dist: this process's place in a torchrun job (None: a single process).
    """
    dist = dist or Dist()
    check_top_level(cfg)
    settings: TrainerConfig = trainer_settings(cfg)
    optim = optimizer_settings(cfg)
    device = distributed.init(dist, str(settings.device)) if dist.enabled else resolve_device(settings.device)
    if settings.precision == "bf16" and device.type != "cuda":
        raise GantrainError("trainer.precision=bf16 needs a CUDA device; use trainer.precision=fp32 on the CPU")
    seed = int(cfg.seed)
    seed_everything(seed)

    loss: GANLoss = instantiate_component(cfg.loss, "loss")
    dataset = build_dataset(cfg)
    generator = build_generator(cfg.generator, dataset.shape, dataset.kind)
    discriminator = instantiate_component(cfg.discriminator, "discriminator", in_shape=tuple(dataset.shape))
    check_combination(loss, discriminator, cfg)
    batches = make_batches(dataset, settings.batch_size, seed, device, settings.num_workers, dist.rank, dist.world)
    log.info("data: %s", dataset.describe())

    generator.to(device)
    discriminator.to(device)
    if device.type == "cuda" and dataset.kind == "image":
        generator.to(memory_format=torch.channels_last)
        discriminator.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    if dist.enabled:
        distributed.broadcast_state(generator)
        distributed.broadcast_state(discriminator)
        seed_everything(seed + 1_000_003 * dist.rank)  # the same weights everywhere, different noise per process
    capturable = (device.type == "cuda" and settings.cuda_graph in ("auto", "true") and not dist.enabled
                  and optim.lr_schedule == "constant")
    opt_g = make_optimizer(generator.parameters(), optim, "generator", device, capturable)
    opt_d = make_optimizer(discriminator.parameters(), optim, "discriminator", device, capturable)
    ema = make_ema(generator) if settings.ema_decay > 0 else None
    schedulers = None
    if optim.lr_schedule == "linear":  # the rate of the step after `done` generator updates
        total = settings.steps
        schedulers = tuple(torch.optim.lr_scheduler.LambdaLR(opt, lambda done: max(0.0, 1.0 - done / total)) for opt in (opt_g, opt_d))

    reference = dataset.tensor()[:2500] if dataset.kind == "points" else None
    evaluate = evaluate and settings.eval_every > 0 and dist.main
    evaluator = make_evaluator(dataset, settings, device) if evaluate else None
    return Trainer(
        generator=generator,
        discriminator=discriminator,
        loss=loss,
        opt_g=opt_g,
        opt_d=opt_d,
        batches=batches,
        settings=settings,
        device=device,
        run_dir=run_dir,
        seed=seed,
        config=plain_config(cfg),
        data_kind=dataset.kind,
        data_shape=tuple(dataset.shape),
        ema=ema,
        reference=reference,
        evaluate=evaluator,
        versions={"gantrain": __version__, "torch": str(torch.__version__)},
        dist=dist,
        schedulers=schedulers,
    )
