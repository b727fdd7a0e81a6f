"""Games: what differs between kinds of adversarial training.

A game owns its named networks, their optimizers (and learning-rate schedules) and the EMA copies it
samples from; `step(batch)` runs its update phases on one batch from the data stream (a function of
device tensors: no `.item()`, no host sync, so that the loop can capture it as a CUDA graph); it
reports named statistics into `stats`, says what a sample grid shows and which scalars it logs.
Adding a game adds a file here and a line to GAMES; neither the loop nor the shared build changes: a game
builds its own networks and data stream from the run's config (`Game.build`), the shared build does what
every run shares (device, seed, loss, dataset, optimizers, periodic work, checkpoint metadata).
"""
from __future__ import annotations

import copy
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import torch
from torch import Tensor, nn

from gantrain.errors import GantrainError
from gantrain.training.optim import lr_to_float
from gantrain.training.stats import Stats

log = logging.getLogger("gantrain")

#: game name -> "module:Class" (imported on use); `game=NAME` picks one, else model= and conditional= do
GAMES = {"gan": "gantrain.training.games.gan:GAN", "cgan": "gantrain.training.games.gan:ConditionalGAN",
         "pix2pix": "gantrain.training.games.translation:Pix2Pix", "cyclegan": "gantrain.training.games.translation:CycleGAN",
         "stylegan2": "gantrain.training.games.stylegan2:StyleGAN2", "text": "gantrain.training.games.text:TextGAN"}


@dataclass
class RunSetup:
    """What the shared build hands every game's `build`: the run's config and what every run shares."""

    cfg: Any  # the composed config (DictConfig)
    settings: Any  # TrainerConfig
    loss: Any  # GANLoss
    dataset: Any
    seed: int
    device: torch.device
    dist: Any  # distributed.Dist
    stats: Stats
    reduce_gradients: Optional[Callable[[Iterable[nn.Parameter]], None]] = None
    evaluate: bool = True  # whether the run evaluates (False: built to load weights only)
    condition: Any = None  # ConditionConfig of a conditional run
    translation: Any = None  # TranslationConfig of a translation run
    augment: Any = None  # AugmentConfig

    def base(self) -> dict:
        """The Game base's arguments."""
        return dict(stats=self.stats, precision=self.settings.precision, device=self.device,
                    reduce_gradients=self.reduce_gradients)


@dataclass
class Built:
    """What a game's `build` returns: the game, its data stream and what the rest of the run needs of it."""

    game: "Game"
    batches: Any
    #: checkpoint metadata: data_shape, data_kind, num_classes, and any key of the game's own (translation)
    meta: dict
    evaluator: Any = None  # scores the sampled network every trainer.eval_every steps (None: no evaluation)
    reference: Any = None  # data points drawn under the samples of a 2D run's scatter plots
    diagnosis: Any = None  # a batch of real data for the plain-language diagnosis (None: the game has none)


def game_class(name: str) -> type:
    """The Game class registered under `name`."""
    import importlib

    if name not in GAMES:
        raise GantrainError(f"unknown game {name!r}; valid: {', '.join(GAMES)}")
    module, cls = GAMES[name].split(":")
    return getattr(importlib.import_module(module), cls)


class Game:
    """Base of every game. Subclasses set `networks`, `optimizers`, `ema` and implement `step`.

    networks: name -> module. optimizers: name of the network it updates -> optimizer.
    schedules: name -> learning-rate schedule (stepped once per step, outside the captured update).
    ema: name of a network -> its exponential moving average copy. sampled: the network samples come from.
    reduce_gradients: averages gradients across processes (data parallelism), or None.
    """

    name = "game"
    sampled = "generator"

    @classmethod
    def build(cls, setup: RunSetup) -> Built:
        """The game of a run, its networks and data stream made from setup.cfg (optimizers come after)."""
        raise NotImplementedError

    def __init__(self, stats: Stats, precision: str = "fp32", device: torch.device = torch.device("cpu"),
                 reduce_gradients: Optional[Callable[[Iterable[nn.Parameter]], None]] = None):
        self.stats, self.device, self.reduce_gradients = stats, device, reduce_gradients
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedules: dict[str, Any] = {}
        self.ema: dict[str, nn.Module] = {}
        self.ema_decay = 0.0
        # bf16 autocast needs no gradient scaler; the cache is off so that a CUDA graph can capture it
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
                         if precision == "bf16" else nullcontext())

    def set_networks(self, networks: dict[str, nn.Module], ema: Optional[nn.Module] = None,
                     ema_decay: float = 0.0) -> None:
        """The game's named networks, and the EMA copy of the sampled one (None: no EMA; ema_decay per step)."""
        self.networks = dict(networks)
        self.ema = {self.sampled: ema} if ema is not None else {}
        self.ema_decay = float(ema_decay)

    # ---- what a step is ----------------------------------------------------------------------

    def batches_per_step(self) -> int:
        """How many batches of the data stream one step consumes."""
        return 1

    def step(self, batch: Tensor) -> None:
        """One training step on `batch` ((batches_per_step, B, ...) raw data), on the device, no host sync."""
        raise NotImplementedError

    def update(self, network: str, loss: Tensor, stat: Optional[str] = None) -> None:
        """Backpropagate `loss` into one network's weights and take its optimizer step; the gradient norm is
        logged as `stat` (default grad/NAME)."""
        optimizer = self.optimizers[network]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.reduce_gradients is not None:
            self.reduce_gradients(self.networks[network].parameters())
        self.stats.add(stat or f"grad/{self.stat_name(network)}", self.gradient_norm(network))
        optimizer.step()

    def gradient_norm(self, network: str) -> Tensor:
        """The 2-norm of one network's gradient, all its weights together (a device scalar, no sync)."""
        grads = [p.grad for p in self.networks[network].parameters() if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())

    def clip_weights(self, network: str, clip: Optional[float]) -> None:
        """Clamp every weight of a network to [-clip, clip] (weight clipping of a WGAN critic); None: nothing."""
        if clip is None:
            return
        with torch.no_grad():
            params = list(self.networks[network].parameters())
            torch._foreach_clamp_min_(params, -clip)
            torch._foreach_clamp_max_(params, clip)

    def update_ema(self) -> None:
        """Move each EMA copy towards its network by 1 - ema_decay (buffers are copied)."""
        for name, ema in self.ema.items():
            net = self.networks[name]
            torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1.0 - self.ema_decay)
            buffers = list(ema.buffers())
            if buffers:  # a network without norm layers has none (and _foreach_ refuses empty lists)
                torch._foreach_copy_(buffers, list(net.buffers()))

    def step_schedules(self) -> None:
        for schedule in self.schedules.values():
            schedule.step()

    # ---- what is shown and logged -------------------------------------------------------------

    def sampler(self) -> nn.Module:
        """The network samples come from: its EMA copy when kept."""
        return self.ema.get(self.sampled, self.networks[self.sampled])

    @torch.no_grad()
    def sample_grid(self) -> Tensor:
        """What the periodic sample grid shows, in data space: `grid` of the sampler, in eval mode."""
        net = self.sampler()
        was_training = net.training
        net.eval()
        try:
            with self.autocast:
                return self.grid(net)
        finally:
            net.train(was_training)

    def grid(self, sampler: nn.Module) -> Tensor:
        """The sample grid drawn from `sampler` (in eval mode, under the game's autocast)."""
        raise NotImplementedError

    #: the statistics report() logs when present (None: every statistic), besides the penalty of a loss with
    #: one, the diagnostics and the learning rates
    reported: Optional[tuple[str, ...]] = None

    def report(self, means: dict[str, float]) -> dict[str, float]:
        """The scalars to log, from the means of the named statistics since the last log."""
        values = dict(means) if self.reported is None else {k: means[k] for k in self.reported if k in means}
        loss = getattr(self, "loss", None)
        if loss is not None and loss.has_penalty and "loss/penalty" in means:
            values["loss/penalty"] = means["loss/penalty"]
        values.update(self.derived(means))
        values.update(self.diagnostics(means))
        values.update(self.learning_rates())
        return values

    def derived(self, means: dict[str, float]) -> dict[str, float]:
        """Scalars computed from the statistics (a Wasserstein estimate, say); none by default."""
        return {}

    #: short statistic names of the two classic networks: grad/g, lr/d, ... (logs of earlier runs stay comparable)
    SHORT_NAMES = {"generator": "g", "discriminator": "d"}

    def stat_name(self, network: str) -> str:
        """How statistics name a network: g and d for the generator and discriminator, else its own name."""
        return self.SHORT_NAMES.get(network, network)

    def gradient_stats(self) -> tuple[str, ...]:
        """The gradient-norm statistics of the networks the game updates (what the divergence guard watches)."""
        return tuple(f"grad/{self.stat_name(n)}" for n in self.networks if n in self.optimizers)

    #: logged statistics that every game may report (diagnostics) besides its gradient norms, when present
    DIAGNOSTICS = ("d/acc_real", "d/acc_fake", "augment/p")

    def diagnostics(self, means: dict[str, float]) -> dict[str, float]:
        """The diagnostic statistics among `means`: gradient norms, D's accuracy, the augmentation probability."""
        return {k: means[k] for k in self.gradient_stats() + self.DIAGNOSTICS if k in means}

    def learning_rates(self) -> dict[str, float]:
        return {f"lr/{self.stat_name(name)}": float(opt.param_groups[0]["lr"])
                for name, opt in sorted(self.optimizers.items())}

    #: the statistics whose non-finite mean means training diverged
    watched: tuple[str, ...] = ()

    def train(self, mode: bool = True) -> None:
        for net in self.networks.values():
            net.train(mode)

    # ---- checkpoint state -----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The checkpoint entries of the game: its networks, EMA copies, optimizers and schedules by name, and
        under game_state whatever else it keeps (own_state)."""
        state = {
            "networks": {k: v.state_dict() for k, v in self.networks.items()},
            "ema": {k: v.state_dict() for k, v in self.ema.items()},
            "optimizers": {k: lr_to_float(v.state_dict()) for k, v in self.optimizers.items()},
            "schedules": {k: v.state_dict() for k, v in self.schedules.items()},
        }
        own = self.own_state()
        return {**state, "game_state": own} if own else state

    def own_state(self) -> dict:
        """The game's state besides its networks, optimizers and schedules (ADA's p, history pools): the
        checkpoint keeps it under game_state. Empty: none."""
        return {}

    def load_own_state(self, state: dict) -> None:
        """Restore own_state() from a checkpoint's game_state ({} when the checkpoint has none)."""

    def shared_tensors(self) -> list:
        """State besides the weights that every data-parallel process must hold alike (checked at the end)."""
        return []

    def rank_state_dict(self) -> dict:
        """What each data-parallel process keeps for itself (a CycleGAN's history pools); the checkpoint
        holds the other processes' (key game_ranks; the main process's is the game state). Empty: every
        process holds the same state. Empty or not alike on every process (a collective depends on it)."""
        return {}

    def load_rank_state_dict(self, state: dict) -> None:
        """This process's part of game_ranks, when resuming with the same number of processes."""

    def load_state_dict(self, state: dict) -> None:
        self.load_own_state(dict(state.get("game_state") or {}))
        for name, net in self.networks.items():
            net.load_state_dict(state["networks"][name])
        for name, ema in self.ema.items():
            if name not in state["ema"]:
                raise GantrainError(f"the checkpoint has no EMA {name}; resume with trainer.ema_decay=0")
            ema.load_state_dict(state["ema"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            for group in opt.param_groups:  # a float again on any device; the loop makes it a tensor to capture
                if isinstance(group["lr"], Tensor):
                    group["lr"] = float(group["lr"])
        for name, schedule in self.schedules.items():
            if name not in state["schedules"]:
                raise GantrainError(f"the checkpoint has no learning-rate schedule for {name}; resume with "
                                    f"optimizer.lr_schedule=constant")
            schedule.load_state_dict(state["schedules"][name])
        if self.schedules:
            _say_stretched_schedule(next(iter(self.schedules.values())), state)


def _say_stretched_schedule(schedule: Any, state: dict) -> None:
    """A run resumed with another trainer.steps under a linear schedule follows the schedule of its new length
    from here on (the rate a run of that length has at this step, as the schedules of other trainers do): one line
    says what that does to the rate."""
    config = state.get("config") or {}
    trained = (config.get("trainer") or {}).get("steps")
    if not isinstance(trained, int) or trained == schedule.total or trained < 1 or getattr(schedule, "said", False):
        return
    schedule.said = True  # once per process: a rollback reloads a checkpoint of the earlier length again
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return
    kind = (config.get("optimizer") or {}).get("lr_schedule")
    before = schedule.factor_at(schedule.done, trained, trained // 2 if kind == "constant_linear" else 0)
    after = schedule.factor()
    log.warning("optimizer.lr_schedule=%s now ends at step %d instead of %d: from step %d on the rates are those of a "
                "%d-step run, x%.3g of the base rate at this step where the %d-step run was at x%.3g",
                kind, schedule.total, trained, schedule.done, schedule.total, after, trained, before)


def make_ema(network: nn.Module) -> nn.Module:
    """A frozen copy of a network whose weights the game averages."""
    ema = copy.deepcopy(network)
    ema.requires_grad_(False)
    return ema
