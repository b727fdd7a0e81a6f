"""Schemas of the config groups that are plain settings (trainer, optimizer) and their checks."""
from __future__ import annotations

import datetime
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gantrain.errors import GantrainError
from gantrain.moved import current_targets


def _yaml_defaults(relative: str, key: Optional[str] = None) -> dict:
    """The values a config file of gantrain's configs/ gives (the node `key` of it): where the defaults of the
    settings below are written, once; the dataclasses hold their types and checks."""
    import importlib.resources

    text = (importlib.resources.files("gantrain.configs") / relative).read_text()
    node = OmegaConf.to_container(OmegaConf.create(text))
    return node[key] if key else node


#: how a conditional discriminator uses the labels (condition.discriminator)
CONDITIONINGS = ("projection", "concat", "ac")
#: sentence encoders of a text-conditioned run (condition.text_encoder; gantrain.nets.text)
TEXT_ENCODERS = ("bag", "gru", "precomputed", "clip")

_TRAINER = _yaml_defaults("trainer/default.yaml")
_PRIMARY = _yaml_defaults("config.yaml")
_CONDITION, _AUGMENT, _STYLEGAN2 = _PRIMARY["condition"], _PRIMARY["augment"], _PRIMARY["stylegan2"]
_TRANSLATION = _yaml_defaults("translation_common.yaml", "translation")


@dataclass
class TrainerConfig:
    """The loop's settings (defaults: configs/trainer/default.yaml). Steps count generator updates."""

    steps: int = _TRAINER["steps"]  # generator updates to train for
    batch_size: int = _TRAINER["batch_size"]  # samples per batch
    n_critic: int = _TRAINER["n_critic"]  # discriminator updates per generator update
    device: str = _TRAINER["device"]  # auto | cpu | cuda | cuda:N
    precision: str = _TRAINER["precision"]  # fp32 | bf16
    cuda_graph: str = _TRAINER["cuda_graph"]  # auto | true | false
    ema_decay: float = _TRAINER["ema_decay"]  # per-step EMA decay of G's weights; 0: no EMA
    log_every: int = _TRAINER["log_every"]  # steps between scalar logs
    sample_every: int = _TRAINER["sample_every"]  # steps between sample grids
    ckpt_every: int = _TRAINER["ckpt_every"]  # steps between checkpoints
    keep_last: int = _TRAINER["keep_last"]  # step checkpoints kept besides last.pt
    eval_every: int = _TRAINER["eval_every"]  # steps between evaluations; 0: never
    metrics: Any = _TRAINER["metrics"]  # list of metric names, or auto
    best_metric: Optional[str] = _TRAINER["best_metric"]  # metric whose best value keeps best.pt
    num_samples: int = _TRAINER["num_samples"]  # samples in each grid / scatter plot
    num_workers: int = _TRAINER["num_workers"]  # DataLoader workers for streamed datasets
    progress: str = _TRAINER["progress"]  # auto | true | false
    on_divergence: str = _TRAINER["on_divergence"]  # stop | rollback (reload the last good checkpoint, halve both learning rates)
    max_rollbacks: int = _TRAINER["max_rollbacks"]  # rollbacks allowed in one run before it stops
    diagnose: bool = _TRAINER["diagnose"]  # plain-language warnings when a known failure shows (console and TensorBoard)


@dataclass
class NetworkOptim:
    """Per-network overrides of the shared optimizer settings; None keeps the shared value."""

    lr: Optional[float] = None
    betas: Optional[list[float]] = None


@dataclass
class OptimizerConfig:
    """One optimizer family for both networks, with per-network learning rates and betas."""

    name: str = "adam"  # adam | adamw | sgd | rmsprop
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = 0.0
    momentum: float = 0.0
    alpha: float = 0.99
    eps: float = 1e-8
    lr_schedule: str = "constant"  # constant | linear (decay to 0 at trainer.steps) | constant_linear (constant, then linear from half way)
    kernel: str = "auto"  # auto (fused Adam/AdamW; SGD fused on CUDA; else foreach) | fused | foreach; a CUDA graph takes capturable foreach
    generator: NetworkOptim = field(default_factory=NetworkOptim)
    discriminator: NetworkOptim = field(default_factory=NetworkOptim)


@dataclass
class ConditionConfig:
    """How a conditional run (conditional=true) uses the labels (defaults: configs/config.yaml, condition)."""

    discriminator: str = _CONDITION["discriminator"]  # projection | concat | ac (CONDITIONINGS)
    ac_weight: float = _CONDITION["ac_weight"]  # weight of the auxiliary classifier's cross-entropy (ac)
    fake_labels: str = _CONDITION["fake_labels"]  # uniform | data
    grid_classes: int = _CONDITION["grid_classes"]  # classes shown in sample grids, one row each
    text_encoder: Optional[str] = _CONDITION["text_encoder"]  # bag | gru | precomputed | clip; null: class labels
    text_dim: int = _CONDITION["text_dim"]  # size of the sentence embedding and of G's condition
    text_length: int = _CONDITION["text_length"]  # tokens kept per caption
    text_augment: bool = _CONDITION["text_augment"]  # conditioning augmentation (StackGAN)
    kl_weight: float = _CONDITION["kl_weight"]  # weight of conditioning augmentation's KL term in G's loss
    mismatch: bool = _CONDITION["mismatch"]  # matching-aware D: real images with mismatched captions count as fake
    text_embeddings: Optional[str] = _CONDITION["text_embeddings"]  # precomputed: .npz with texts and embeddings
    mode_seeking: float = _CONDITION["mode_seeking"]  # text runs: weight of MSGAN's mode-seeking term in G's loss
    clip_model: str = _CONDITION["clip_model"]  # text_encoder=clip: open_clip's model name
    clip_weights: str = _CONDITION["clip_weights"]  # text_encoder=clip: open_clip's pretrained tag (none: untrained)


@dataclass
class TranslationConfig:
    """Image-to-image translation (model=pix2pix or model=cyclegan); null trains an ordinary GAN (defaults:
    configs/translation_common.yaml)."""

    kind: str = _TRANSLATION["kind"]  # pix2pix (paired data) | cyclegan (unpaired)
    l1_weight: float = _TRANSLATION["l1_weight"]  # pix2pix: weight of |G(a) - b|
    cycle_weight: float = _TRANSLATION["cycle_weight"]  # cyclegan: weight of the cycle-consistency L1 terms
    cycle_weight_b: Optional[float] = _TRANSLATION["cycle_weight_b"]  # cyclegan: weight of |G(F(b)) - b| alone; null: cycle_weight
    identity_weight: float = _TRANSLATION["identity_weight"]  # cyclegan: weight of the identity terms, as a fraction of their domain's cycle weight
    pool_size: int = _TRANSLATION["pool_size"]  # cyclegan: generated images kept for the discriminators; 0: none
    load_size: Optional[int] = _TRANSLATION["load_size"]  # resize to this before the random crop; null: image_size x 286/256
    flip: bool = _TRANSLATION["flip"]  # random left-right flips (the same for both images of a pair)
    grid_images: int = _TRANSLATION["grid_images"]  # held-out images in each sample grid
    channels: Optional[int] = _TRANSLATION["channels"]  # convert both domains to 1 or 3 channels; null: each keeps its own


@dataclass
class AugmentConfig:
    """Differentiable augmentation of everything the discriminator sees (real and generated, both updates;
    defaults: configs/config.yaml, augment)."""

    policy: Any = _AUGMENT["policy"]  # DiffAugment transforms: a list [color,translation,cutout] or a string 'color,cutout'; null: none
    p: float = _AUGMENT["p"]  # probability each transform is applied to each sample (ignored with ada)
    ada: bool = _AUGMENT["ada"]  # adapt p (from 0) towards ada_target = E[sign(D(real))] (Karras et al. 2020)
    ada_target: float = _AUGMENT["ada_target"]  # the overfitting heuristic r_t that p is steered to
    ada_interval: int = _AUGMENT["ada_interval"]  # steps between adjustments of p
    ada_kimg: float = _AUGMENT["ada_kimg"]  # thousands of real images for p to move from 0 to 1 at the fastest


@dataclass
class StyleGAN2Config:
    """StyleGAN2's training game (defaults: configs/config.yaml, stylegan2)."""

    r1_gamma: Optional[float] = _STYLEGAN2["r1_gamma"]  # R1 weight; null: 0.0002 x image_size^2 / batch_size
    r1_interval: int = _STYLEGAN2["r1_interval"]  # steps between (lazy) R1 updates of D
    pl_weight: float = _STYLEGAN2["pl_weight"]  # path-length penalty weight; 0: off
    pl_interval: int = _STYLEGAN2["pl_interval"]  # steps between (lazy) path-length updates of G
    pl_decay: float = _STYLEGAN2["pl_decay"]  # decay of the path lengths' running mean
    pl_batch_shrink: int = _STYLEGAN2["pl_batch_shrink"]  # the penalty's batch is batch_size / pl_batch_shrink
    mixing_prob: float = _STYLEGAN2["mixing_prob"]  # probability of style mixing per batch
    ema_kimg: Optional[float] = _STYLEGAN2["ema_kimg"]  # EMA half-life in thousands of images; null: trainer.ema_decay
    ema_rampup: Optional[float] = _STYLEGAN2["ema_rampup"]  # half-life at most ema_rampup x images seen; null: none


TRANSLATIONS = ("pix2pix", "cyclegan")
DIVERGENCE_ACTIONS = ("stop", "rollback")
LR_SCHEDULES = ("constant", "linear", "constant_linear")

TOP_LEVEL_KEYS = {"seed", "resume", "trainer", "dataset", "generator", "discriminator", "optimizer", "loss",
                  "conditional", "condition", "optimized_metric", "translation", "augment", "game", "stylegan2"}
#: top-level keys added after 0.2.0, with the value that reproduces what earlier runs trained
ADDED_KEYS: dict[str, Any] = {"conditional": False, "condition": dict(vars(ConditionConfig())),
                               "optimized_metric": None, "translation": None,
                               "augment": dict(vars(AugmentConfig())), "game": None,  # game: 0.8.0
                               "stylegan2": dict(vars(StyleGAN2Config()))}  # 0.10.0 (used by the stylegan2 game only)
#: keys inside groups added since, with the value that reproduces what earlier runs trained
ADDED_NESTED_KEYS: dict[str, Any] = {"dataset.subset": None, "translation.cycle_weight_b": None,  # (0.5.0, 0.7.0)
                                     "optimizer.kernel": "auto",  # 0.7.0; auto now fuses Adam on the CPU too
                                     # 0.11.0: text conditioning (off for every earlier run)
                                     "condition.text_encoder": None, "condition.text_dim": 128,
                                     "condition.text_length": 16, "condition.text_augment": True,
                                     "condition.kl_weight": 1.0, "condition.mismatch": True,
                                     "condition.text_embeddings": None,
                                     "condition.mode_seeking": 0.0,  # 0.12.0
                                     "condition.clip_model": "ViT-B-32", "condition.clip_weights": "openai",
                                     "loss.matching_penalty": 0.0, "loss.matching_power": 6.0}
#: keys added since to one dataset's group (by its _target_), with the value that reproduces what earlier runs trained
ADDED_DATASET_KEYS: dict[str, dict[str, Any]] = {
    "gantrain.data.translation.Edges2MNIST": {"edge_styles": "sobel", "seed": 0},  # 0.8.0: mixed outline styles
    # 0.15.0: hidden files skipped, EXIF orientation applied
    **{target: {"skip_hidden": False, "upright": False} for target in (
        "gantrain.data.images.ImageFolder", "gantrain.data.translation.PairedFolder",
        "gantrain.data.translation.UnpairedFolder")},
}
#: keys added since to one generator's group (by its _target_), with the value that reproduces what earlier runs trained
ADDED_GENERATOR_KEYS: dict[str, dict[str, Any]] = {
    "gantrain.nets.dcgan.DCGANGenerator": {"label_input": False},  # 0.8.0: the label also goes in beside z
}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
# Keys that may differ between a checkpoint's config and the resumed run's.
SAFE_RESUME_KEYS = (
    "resume",
    "trainer.steps",
    "trainer.device",
    "trainer.log_every",
    "trainer.sample_every",
    "trainer.ckpt_every",
    "trainer.keep_last",
    "trainer.eval_every",
    "trainer.metrics",
    "trainer.best_metric",
    "trainer.num_samples",
    "trainer.num_workers",
    "trainer.progress",
    "trainer.cuda_graph",
    "trainer.on_divergence",
    "trainer.max_rollbacks",
    "trainer.diagnose",
    "condition.grid_classes",
    "optimized_metric",
    "dataset.root",
    "dataset.download",
    "dataset.on_device",
)


def _typed(schema: type, node: DictConfig, group: str) -> Any:
    try:
        if OmegaConf.is_config(node):  # ${...} resolved in the whole config (the schema alone knows no other key)
            node = OmegaConf.to_container(node, resolve=True)
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        raise GantrainError(
            f"bad value in {group}: {str(exc).splitlines()[0]}"
            + (f" (key {group}.{key})" if key and not key.startswith(group) else "")
            + f"; `gantrain --cfg job` shows the {group} keys and their values"
        ) from None


def trainer_settings(cfg: DictConfig) -> TrainerConfig:
    """Typed, checked trainer settings; raises GantrainError naming the bad key."""
    t: TrainerConfig = _typed(TrainerConfig, cfg.trainer, "trainer")
    for key in ("steps", "batch_size", "n_critic", "log_every", "sample_every", "ckpt_every", "num_samples"):
        if getattr(t, key) <= 0:
            raise GantrainError(f"trainer.{key}={getattr(t, key)} must be a positive integer")
    for key in ("keep_last", "eval_every", "num_workers", "max_rollbacks"):
        if getattr(t, key) < 0:
            raise GantrainError(f"trainer.{key}={getattr(t, key)} must be 0 or more")
    if not 0.0 <= t.ema_decay < 1.0:
        raise GantrainError(f"trainer.ema_decay={t.ema_decay} must be in [0, 1); 0 disables the EMA generator")
    if t.precision not in ("fp32", "bf16"):
        raise GantrainError(f"trainer.precision={t.precision!r} is not one of fp32, bf16")
    if t.on_divergence not in DIVERGENCE_ACTIONS:
        raise GantrainError(f"trainer.on_divergence={t.on_divergence!r} is not one of {', '.join(DIVERGENCE_ACTIONS)}")
    for key in ("cuda_graph", "progress"):
        value = str(getattr(t, key)).lower()
        if value not in ("auto", "true", "false"):
            raise GantrainError(f"trainer.{key}={getattr(t, key)!r} is not one of auto, true, false")
        setattr(t, key, value)
    return t


def _mode_seeking_off_text(value: Any) -> GantrainError:
    return GantrainError(f"condition.mode_seeking={value} is a term of text-conditioned runs (condition.text_encoder, "
                         f"e.g. experiment=text_mnist); set condition.mode_seeking=0 for this run")


def condition_settings(cfg: DictConfig) -> Optional[ConditionConfig]:
    """Typed, checked settings of a conditional run; None when conditional=false."""
    switch = cfg.get("conditional", False)
    if not isinstance(switch, bool):
        raise GantrainError(f"conditional={switch!r} must be true or false")
    node = cfg.get("condition", {})
    if not switch:
        if isinstance(node, (DictConfig, dict)) and node.get("text_encoder") is not None:
            raise GantrainError(f"condition.text_encoder={node.get('text_encoder')} conditions on captions: add "
                                f"conditional=true (experiment=text_mnist sets both)")
        if isinstance(node, (DictConfig, dict)) and node.get("mode_seeking", 0) not in (0, 0.0, None):
            raise _mode_seeking_off_text(node.get("mode_seeking"))
        return None
    if not isinstance(node, (DictConfig, dict)):
        raise GantrainError(f"condition={node!r} must be a group of settings: condition.discriminator, "
                            f"condition.ac_weight, condition.fake_labels, condition.grid_classes")
    c: ConditionConfig = _typed(ConditionConfig, node, "condition")
    if c.discriminator not in CONDITIONINGS:
        raise GantrainError(f"condition.discriminator={c.discriminator!r} is not one of {', '.join(CONDITIONINGS)}")
    if c.fake_labels not in ("uniform", "data"):
        raise GantrainError(f"condition.fake_labels={c.fake_labels!r} is not one of uniform, data")
    if not c.ac_weight >= 0:
        raise GantrainError(f"condition.ac_weight={c.ac_weight} must be 0 or more")
    if c.grid_classes < 1:
        raise GantrainError(f"condition.grid_classes={c.grid_classes} must be 1 or more")
    if c.text_encoder is not None:
        if c.text_encoder not in TEXT_ENCODERS:
            raise GantrainError(f"condition.text_encoder={c.text_encoder!r} is not one of {', '.join(TEXT_ENCODERS)} "
                                f"(or null: class labels)")
        for key in ("text_dim", "text_length"):
            if getattr(c, key) < 1:
                raise GantrainError(f"condition.{key}={getattr(c, key)} must be 1 or more")
        if not c.kl_weight >= 0:
            raise GantrainError(f"condition.kl_weight={c.kl_weight} must be 0 or more")
        if not c.mode_seeking >= 0:
            raise GantrainError(f"condition.mode_seeking={c.mode_seeking} must be 0 (off) or more")
        if c.text_encoder == "clip":
            try:
                import open_clip  # noqa: F401
            except ImportError:
                raise GantrainError("condition.text_encoder=clip needs open_clip: pip install 'gantrain[clip]' (or "
                                    "open_clip_torch; its weights download on first use); offline, use "
                                    "text_encoder=bag, gru or precomputed") from None
    if c.mode_seeking != 0 and c.text_encoder is None:
        raise _mode_seeking_off_text(c.mode_seeking)
    if c.text_embeddings is not None and c.text_encoder != "precomputed":
        raise GantrainError("condition.text_embeddings is read by condition.text_encoder=precomputed only; add it, or "
                            "set condition.text_embeddings=null")
    return c


def translation_settings(cfg: DictConfig) -> Optional[TranslationConfig]:
    """Typed, checked settings of a translation run; None for an ordinary GAN."""
    node = cfg.get("translation")
    if node is None:
        return None
    if not isinstance(node, DictConfig):
        raise GantrainError(f"translation={node!r} must be null or a mapping; pick model=pix2pix or model=cyclegan")
    t: TranslationConfig = _typed(TranslationConfig, node, "translation")
    if t.kind not in TRANSLATIONS:
        raise GantrainError(f"translation.kind={t.kind!r} is not one of {', '.join(TRANSLATIONS)}")
    for key in ("l1_weight", "cycle_weight", "cycle_weight_b", "identity_weight"):
        if getattr(t, key) is not None and getattr(t, key) < 0:
            raise GantrainError(f"translation.{key}={getattr(t, key)} must be 0 or more")
    if t.pool_size < 0:
        raise GantrainError(f"translation.pool_size={t.pool_size} must be 0 (no pool) or more")
    if t.channels not in (None, 1, 3):
        raise GantrainError(f"translation.channels={t.channels} must be 1, 3 or null (each domain keeps its own)")
    if t.grid_images < 1:
        raise GantrainError(f"translation.grid_images={t.grid_images} must be 1 or more")
    if cfg.get("conditional"):
        raise GantrainError("conditional=true and a translation model together are not supported; the input image is "
                            "the condition: set conditional=false")
    return t


def stylegan2_settings(cfg: DictConfig) -> StyleGAN2Config:
    """Typed, checked settings of the stylegan2 game."""
    node = cfg.get("stylegan2")
    if node is None:
        return StyleGAN2Config()
    if not isinstance(node, DictConfig):
        raise GantrainError(f"stylegan2={node!r} must be a mapping of the stylegan2 game's settings")
    s: StyleGAN2Config = _typed(StyleGAN2Config, node, "stylegan2")
    for key in ("r1_interval", "pl_interval", "pl_batch_shrink"):
        if getattr(s, key) < 1:
            raise GantrainError(f"stylegan2.{key}={getattr(s, key)} must be 1 or more (1: every step / the whole batch)")
    for key in ("r1_gamma", "pl_weight"):
        if getattr(s, key) is not None and getattr(s, key) < 0:
            raise GantrainError(f"stylegan2.{key}={getattr(s, key)} must be 0 (off) or more")
    for key in ("mixing_prob", "pl_decay"):
        if not 0 <= getattr(s, key) <= 1:
            raise GantrainError(f"stylegan2.{key}={getattr(s, key)} must be in [0, 1]")
    for key in ("ema_kimg", "ema_rampup"):
        if getattr(s, key) is not None and not getattr(s, key) > 0:
            raise GantrainError(f"stylegan2.{key}={getattr(s, key)} must be above 0 or null")
    return s


def with_added_keys(config: dict) -> dict:
    """A run config written by an earlier version, with the top-level keys added since at the values it trained
    with and its `_target_` paths as today's (gantrain.moved)."""
    import copy

    config = current_targets(config)
    missing = {k: copy.deepcopy(v) for k, v in ADDED_KEYS.items() if k not in config}
    config = {**config, **missing} if missing else config
    for dotted, value in ADDED_NESTED_KEYS.items():
        group, key = dotted.split(".")
        if isinstance(config.get(group), dict) and key not in config[group]:
            config = {**config, group: {**config[group], key: copy.deepcopy(value)}}
    for group, added in (("dataset", ADDED_DATASET_KEYS), ("generator", ADDED_GENERATOR_KEYS)):
        node = config.get(group)
        if isinstance(node, dict) and node.get("_target_") in added:
            missing = {k: copy.deepcopy(v) for k, v in added[node["_target_"]].items() if k not in node}
            config = {**config, group: {**node, **missing}} if missing else config
    for group, schema in (("trainer", TrainerConfig), ("optimizer", OptimizerConfig)):
        # the typed groups' other keys added since train at their schema's default: written out, so that a
        # resumed run's saved config says what it trains with
        node = config.get(group)
        if isinstance(node, dict):
            defaults = OmegaConf.to_container(OmegaConf.structured(schema))
            missing = {k: v for k, v in defaults.items() if k not in node}
            config = {**config, group: {**node, **missing}} if missing else config
    return config


#: the transforms augment.policy may name, in DiffAugment's order
POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: Union[None, str, Sequence[str]]) -> tuple[str, ...]:
    """The transforms of config key augment.policy, in order: None, "" or [] -> (); "color,translation"
    or ["color", "translation"] -> ("color", "translation"). An unknown name is a GantrainError."""
    if policy is None:
        return ()
    if isinstance(policy, str):
        names = [name.strip() for name in policy.split(",")]
    elif isinstance(policy, Sequence) and all(isinstance(name, str) for name in policy):
        names = [name.strip() for name in policy]
    else:
        raise GantrainError(f"augment.policy={policy!r} must be a comma-separated string or a list of names "
                            f"from {', '.join(POLICIES)}")
    names = [name for name in names if name]  # "color," and "" carry no empty transform
    for name in names:
        if name not in POLICIES:
            raise GantrainError(f"augment.policy has unknown transform {name!r}; valid: {', '.join(POLICIES)}")
    return tuple(names)


def augment_settings(cfg: DictConfig) -> Optional[AugmentConfig]:
    """Typed, checked augmentation settings; None when augment.policy names no transform."""
    node = cfg.get("augment")
    if node is None:
        return None
    if not isinstance(node, DictConfig):
        raise GantrainError(f"augment={node!r} must be a group of settings: augment.policy, augment.p, augment.ada, "
                            f"augment.ada_target, augment.ada_interval, augment.ada_kimg")
    a: AugmentConfig = _typed(AugmentConfig, node, "augment")
    a.policy = parse_policy(a.policy) or None
    if a.policy is None:
        if a.ada:
            raise GantrainError("augment.ada=true needs transforms to apply: set augment.policy=color,translation,cutout")
        return None
    return a


def optimizer_settings(cfg: DictConfig) -> OptimizerConfig:
    """Typed, checked optimizer settings."""
    o: OptimizerConfig = _typed(OptimizerConfig, cfg.optimizer, "optimizer")
    if o.lr_schedule not in LR_SCHEDULES:
        raise GantrainError(f"optimizer.lr_schedule={o.lr_schedule!r} is not one of {', '.join(LR_SCHEDULES)}")
    if o.name not in OPTIMIZERS:
        raise GantrainError(f"optimizer.name={o.name!r} is not one of {', '.join(OPTIMIZERS)}")
    if o.kernel not in ("auto", "fused", "foreach"):
        raise GantrainError(f"optimizer.kernel={o.kernel!r} is not one of auto, fused, foreach")
    if o.kernel == "fused" and o.name not in ("adam", "adamw"):
        raise GantrainError(f"optimizer.kernel=fused: gantrain fuses adam and adamw only, not {o.name}; "
                            f"set optimizer.kernel=auto")
    # each optimizer's own settings (the others are not read: an earlier run's unused value stays allowed)
    for key, value, low, high, what, users in (
            ("weight_decay", o.weight_decay, 0.0, math.inf, ">= 0 (0: off)", OPTIMIZERS),
            ("momentum", o.momentum, 0.0, 1.0, "in [0, 1) (0: off)", ("sgd", "rmsprop")),
            ("alpha", o.alpha, 0.0, 1.0, "in [0, 1) (RMSprop's smoothing, e.g. 0.99)", ("rmsprop",))):
        if o.name in users and not low <= value < high:
            raise GantrainError(f"optimizer.{key}={value} must be a number {what}")
    if o.name != "sgd" and not 0.0 < o.eps < math.inf:
        raise GantrainError(f"optimizer.eps={o.eps} must be a positive number (e.g. 1e-8)")
    for who in ("", "generator.", "discriminator."):
        node = o if not who else getattr(o, who[:-1])
        if node.lr is not None and not 0.0 < node.lr < math.inf:
            raise GantrainError(f"optimizer.{who}lr={node.lr} must be a positive number (e.g. 2e-4)")
        if node.betas is not None and (len(node.betas) != 2 or not all(0.0 <= b < 1.0 for b in node.betas)):
            raise GantrainError(f"optimizer.{who}betas={list(node.betas)} must be two numbers in [0, 1)")
    return o


SEED_LIMIT = 2**32  # numpy's seeds are 32-bit, and the data order derives per-epoch seeds from it


def check_seed(value: Any) -> int:
    """The run's seed: a whole number in [0, 2**32); refused in one line otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise GantrainError(f"seed={value!r} must be a whole number from 0 to {SEED_LIMIT - 1}")
    return value


def check_top_level(cfg: DictConfig) -> None:
    """Refuse unknown top-level keys (a misspelled group in an experiment file, say)."""
    unknown = sorted(set(cfg.keys()) - TOP_LEVEL_KEYS)
    if unknown:
        raise GantrainError(
            f"unknown top-level config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(TOP_LEVEL_KEYS))}"
        )


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {'a.b.c': value}."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ between two resolved configs, except those safe to change on resume."""
    a, b = flatten(saved), flatten(current)
    keys = sorted(set(a) | set(b))
    return [k for k in keys if a.get(k, "<missing>") != b.get(k, "<missing>") and not k.startswith(SAFE_RESUME_KEYS)]


def merge_overrides(saved: list[str], new: list[str]) -> list[str]:
    """Command-line overrides of a resumed run: the saved ones, each replaced by a new one of the same key."""
    def key(override: str) -> str:
        return override.lstrip("+~").split("=", 1)[0]

    new_keys = {key(o) for o in new}
    return [o for o in saved if key(o) not in new_keys] + list(new)


# ---- Hydra resolvers of configs/config.yaml ------------------------------------------------------


def run_dir_for(resume: Optional[str], default: str) -> str:
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
    from gantrain.checkpoint import run_folder_for

    return str(run_folder_for(Path(str(resume)).expanduser()))


def hydra_subdir_for(resume: Optional[str], run_dir: str) -> Optional[str]:
    """Keep an existing run's .hydra/ files: a second launch in the same folder writes below .hydra/<time>.

    Under torchrun only rank 0 records the config (None: Hydra writes nothing).
    """
    if int(os.environ.get("RANK", "0")) > 0:
        return None
    if (Path(run_dir) / ".hydra" / "config.yaml").exists():
        return f".hydra/{datetime.datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}"
    return ".hydra"


def register_resolvers() -> None:
    """The resolvers configs/config.yaml uses (idempotent)."""
    for name, fn in (("gantrain_run_dir", run_dir_for), ("gantrain_hydra_subdir", hydra_subdir_for)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def hydra_compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config Hydra composes from gantrain's configs and these overrides, unchecked (gantrain.api.compose is
    the checked one that users call; this one serves modules below the API)."""
    from hydra import compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="gantrain.configs", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))
