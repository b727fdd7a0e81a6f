"""Turn a composed config into the objects of one training run (a Loop). Nothing here reads Hydra globals."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig

from gantrain.training import distributed
from gantrain.training.components import (build_dataset, instantiate_component, plain_config, resolve_device, seed_everything)
from gantrain.config import (TrainerConfig, TranslationConfig, augment_settings, check_seed, check_top_level, condition_settings, optimizer_settings, trainer_settings, translation_settings)
from gantrain.training.distributed import Dist
from gantrain.errors import GantrainError
from gantrain.training.games import GAMES, RunSetup, game_class
from gantrain.training.loop import Loop, stdout_is_tty
from gantrain.training.losses import GANLoss
from gantrain.training.optim import LinearDecay, make_optimizer
from gantrain.training.periodic import Checkpointing, DivergenceCheck, Evaluation, Samples, ScalarLog
from gantrain.training.stats import Stats
from gantrain.version import __version__

log = logging.getLogger("gantrain")


def graph_plan(settings: TrainerConfig, device: torch.device, dist: Dist) -> tuple[bool, str]:
    """(capture the step as a CUDA graph, why not): the one place this is decided.

    The optimizers are made capturable exactly when the answer is yes.
    """
    mode = settings.cuda_graph
    if device.type != "cuda":
        if mode == "true":
            raise GantrainError("trainer.cuda_graph=true needs a CUDA device; use trainer.cuda_graph=auto")
        return False, "not a CUDA device"
    if dist.enabled:
        reason = "data-parallel training all-reduces gradients between the updates"
        if mode == "true":
            raise GantrainError(f"trainer.cuda_graph=true is not possible: {reason}; use auto")
        return False, reason
    if mode == "false":
        return False, "trainer.cuda_graph=false"
    return True, ""


def game_name(cfg: DictConfig, translation: Optional[TranslationConfig], condition: Any) -> str:
    """The game a config trains: `game=NAME` when given, else pix2pix / cyclegan (model=), cgan (conditional=true)
    or gan."""
    chosen = cfg.get("game")
    if chosen is not None:
        if chosen not in GAMES:
            raise GantrainError(f"game={chosen} is not a game; valid: {', '.join(GAMES)} (or null: chosen by model= and "
                                f"conditional=)")
        return str(chosen)
    if translation is not None:
        return translation.kind
    if condition is not None and condition.text_encoder is not None:
        return "text"
    if str(cfg.generator.get("_target_", "")).endswith("StyleGAN2Generator"):
        return "stylegan2"
    return "gan" if condition is None else "cgan"


def build(cfg: DictConfig, run_dir: Path, evaluate: bool = True, dist: Optional[Dist] = None,
          overrides: Optional[list[str]] = None) -> Loop:
    """Every object of a run, wired into a Loop ready to fit (fresh weights; resume loads state after).

    The game (GAMES) builds its networks and data stream; this builds what every run shares: device, seed,
    loss, dataset, optimizers and schedules, periodic work, checkpoint metadata. dist: this process's place
    in a torchrun job (None: a single process). overrides: the command line that composed cfg, recorded in
    checkpoints (None: composed in Python; the saved config is used on resume).
    """
    dist = dist or Dist()
    check_top_level(cfg)
    settings: TrainerConfig = trainer_settings(cfg)
    optim = optimizer_settings(cfg)
    device = distributed.init(dist, str(settings.device)) if dist.enabled else resolve_device(settings.device)
    if settings.precision == "bf16" and device.type != "cuda":
        raise GantrainError("trainer.precision=bf16 needs a CUDA device; use trainer.precision=fp32 on the CPU")
    seed = check_seed(cfg.seed)
    seed_everything(seed)

    loss: GANLoss = instantiate_component(cfg.loss, "loss")
    condition = condition_settings(cfg)
    translation = translation_settings(cfg)
    augment = augment_settings(cfg)
    if augment is not None and translation is not None:
        raise GantrainError("augment.policy is for GAN runs; translation runs augment with random crops and flips "
                            "(translation.load_size, translation.flip): set augment.policy=null")
    name = game_name(cfg, translation, condition)
    if condition is not None and condition.text_encoder is not None and name != "text":
        raise GantrainError(f"condition.text_encoder={condition.text_encoder} trains the text game, not game={name}: "
                            f"leave game= and model= out, or set condition.text_encoder=null")
    if loss.matching_weight > 0 and name != "text":
        raise GantrainError("loss.matching_penalty is the matching-aware penalty of text-conditioned runs "
                            "(condition.text_encoder); set loss.matching_penalty=0 for this run")
    dataset = build_dataset(cfg.dataset, seed)
    use_graph, graph_reason = graph_plan(settings, device, dist)
    reduce = (lambda params: distributed.average_gradients(params, dist.world)) if dist.enabled else None
    setup = RunSetup(cfg=cfg, settings=settings, loss=loss, dataset=dataset, seed=seed, device=device, dist=dist,
                     stats=Stats(device), reduce_gradients=reduce, evaluate=evaluate, condition=condition,
                     translation=translation, augment=augment)
    built = game_class(name).build(setup)
    game = built.game
    log.info("data: %s", dataset.describe())
    if use_graph and getattr(game, "graph_reason", ""):  # a game whose step changes with the step number
        if settings.cuda_graph == "true":
            raise GantrainError(f"trainer.cuda_graph=true is not possible: {game.graph_reason}; use auto")
        use_graph, graph_reason = False, game.graph_reason
    _optimizers(game, optim, settings, device, use_graph)

    periodic: list = [DivergenceCheck(settings.log_every, settings.on_divergence, settings.max_rollbacks)]
    diagnosis = None
    if built.diagnosis is not None:
        from gantrain.training.diagnosis import Diagnosis

        diagnosis = Diagnosis(settings.log_every, loss.name, loss.estimates_distance, built.diagnosis)
        periodic.append(diagnosis)
    periodic += [ScalarLog(settings.log_every), Samples(settings.sample_every, built.reference)]
    if built.evaluator is not None:
        periodic.append(Evaluation(settings.eval_every, built.evaluator, settings.best_metric,
                                   diagnosis.coverage if diagnosis is not None else None))
    periodic.append(Checkpointing(settings.ckpt_every))
    meta = {"config": plain_config(cfg), "overrides": None if overrides is None else list(overrides),
            "versions": {"gantrain": __version__, "torch": str(torch.__version__)}, **built.meta}
    return _loop(game, built.batches, periodic, settings, run_dir, device, meta, use_graph, graph_reason, dist)


def _optimizers(game: Any, optim: Any, settings: TrainerConfig, device: torch.device, use_graph: bool) -> None:
    """One optimizer per network of the game, and their learning-rate schedules."""
    game.optimizers = {who: make_optimizer(net.parameters(), optim, who, device, capturable=use_graph)
                       for who, net in game.networks.items()}
    if optim.lr_schedule in ("linear", "constant_linear"):
        hold = settings.steps // 2 if optim.lr_schedule == "constant_linear" else 0
        game.schedules = {who: LinearDecay(opt, settings.steps, hold) for who, opt in game.optimizers.items()}


def _loop(game: Any, batches: Any, periodic: list, settings: TrainerConfig, run_dir: Path, device: torch.device,
          meta: dict, use_graph: bool, graph_reason: str, dist: Dist) -> Loop:
    progress = settings.progress == "true" or (settings.progress == "auto" and stdout_is_tty())
    return Loop(game=game, batches=batches, periodic=periodic, steps=settings.steps, run_dir=run_dir, device=device,
                meta=meta, keep_last=settings.keep_last, use_graph=use_graph, graph_reason=graph_reason,
                progress=progress, agree_every=settings.log_every, dist=dist)
