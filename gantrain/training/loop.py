"""The training loop: next batch, the game's step, count it, do the periodic work that is due. Repeat.

The loop knows nothing of generators or discriminators: a game (gantrain.training.games) says what one step
does. Here live the step counter, the data position, RNG states, signals (and, under torchrun, the
processes agreeing when to stop), CUDA-graph capture of the step, and checkpoint state.
"""
from __future__ import annotations

import logging
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from gantrain.training import distributed
from gantrain.checkpoint import FORMAT, FORMAT_VERSION, CheckpointWriter, game_meta
from gantrain.data.streaming import BatchStream
from gantrain.training.distributed import Dist
from gantrain.errors import GantrainError
from gantrain.training.games import Game
from gantrain.training.optim import lr_to_device
from gantrain.training.periodic import Periodic

log = logging.getLogger("gantrain")


#: the metadata every checkpoint holds; a game's build may add keys of its own (Built.meta)
STANDARD_META = ("config", "overrides", "versions", "data_shape", "data_kind", "num_classes")


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after writing a checkpoint."""

    def __init__(self, signum: int, step: int, checkpoint: Optional[Path]):
        super().__init__(f"stopped by signal {signum} at step {step}")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


def rng_state(device: torch.device) -> dict:
    """Every RNG state that training draws from, in checkpoint-safe types."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class NullLogger:
    """The logger of processes other than the main one under data parallelism: they log nothing."""

    def step_done(self, n: int = 1) -> None: ...
    def scalars(self, step: int, values: dict) -> None: ...
    def text(self, *args: Any) -> None: ...
    def images(self, *args: Any, **kwargs: Any) -> None: ...
    def close(self) -> None: ...


class Loop:
    """Runs a game from step `self.step` to `steps`, with periodic work and checkpoints.

    game: what one step does. batches: the data stream. periodic: work after steps, in order.
    steps: total training steps (generator updates for a GAN). use_graph: capture the step as a CUDA
    graph (decided by build.graph_plan; the optimizers were made capturable for it). meta: what a
    checkpoint records about the run (config, overrides, versions, data_shape, data_kind).
    agree_every: under torchrun, the processes agree every that many steps whether a signal stops them.
    """

    def __init__(self, *, game: Game, batches: BatchStream, periodic: Sequence[Periodic], steps: int,
                 run_dir: Path, device: torch.device, meta: dict, keep_last: int = 3, use_graph: bool = False,
                 graph_reason: str = "", progress: bool = False, agree_every: int = 1, dist: Optional[Dist] = None):
        self.game, self.batches, self.periodic = game, batches, list(periodic)
        self.steps, self.run_dir, self.device, self.meta = int(steps), Path(run_dir), device, dict(meta)
        self.use_graph, self.graph_reason, self.progress = use_graph, graph_reason, progress
        self.dist, self.agree_every = dist or Dist(), max(1, int(agree_every))
        self.stats = game.stats
        self.step = 0
        self.start_step = 0
        self.started_at = time.perf_counter()
        self.writer = CheckpointWriter(self.run_dir, keep_last)
        self.graph: Optional[Any] = None
        self._logger: Optional[Any] = None
        self._stop_signal: Optional[int] = None
        self._stats_cache: Optional[tuple[tuple[int, int], dict[str, float]]] = None
        self._recapture = False
        self._rolled_back = False
        #: scalars periodic work computed for the next scalar log row (diagnostics)
        self.pending_scalars: dict[str, float] = {}

    # ---- the loop ---------------------------------------------------------------------------------

    def fit(self) -> None:
        """Train until `steps`; SIGINT/SIGTERM stop after the current step with a checkpoint (Interrupted)."""
        if self.step >= self.steps:
            log.info("nothing to train: the run is at step %d and trainer.steps=%d; raise trainer.steps to train longer",
                     self.step, self.steps)
            return
        # the logger opens at the step training resumes from: rows a crash left past the checkpoint are dropped
        self.start_step = self.step
        if self.step == 0:
            self.logger.text("config", "```\n" + _yaml(self.meta.get("config", {})) + "\n```")
        log.info("training %s -> step %d on %s", "from step %d" % self.step if self.step else "from scratch",
                 self.steps, self.device)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.game.train()
        self.started_at = time.perf_counter()
        try:
            _ = self.logger  # opened now, at start_step, not at the end of the first step
            for work in self.periodic:
                work.before_training(self)
            self._prepare_graph()
            while self.step < self.steps:
                while self.step < self.steps:
                    self._step_and_due_work()
                for work in self.periodic:  # the last step, where it was not a multiple of `every`
                    if work.at_end and not work.due(self.step):
                        work(self, final=True)
                    if self._rolled_back:  # back to an earlier step: train on from there
                        self._rolled_back = False
                        break
            if self.dist.enabled:
                for network in self.game.networks.values():
                    distributed.check_in_sync(network.parameters())
                distributed.check_in_sync(self.game.shared_tensors(), "game state (augment/p)")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()

    def run_step(self) -> None:
        """One training step: the next batches through the game's phases (or the captured graph)."""
        k = self.game.batches_per_step()
        if self.graph is not None:
            self.batches.next(k, out=self.static_batch)
            self.graph.replay()
        else:
            self.game.step(self.batches.next(k))
        self.game.step_schedules()
        self.step += 1
        self.stats.steps += 1

    def _step_and_due_work(self) -> None:
        """The loop's body: one step, then the periodic work due at the new step, then a stop if asked."""
        if self._recapture:  # a rollback replaced the optimizers' state tensors the graph had captured
            self._recapture = False
            self._prepare_graph()
            if self.step >= self.steps:
                return
        self.run_step()
        self.logger.step_done()
        for work in self.periodic:
            if work.due(self.step):
                work(self)
            if self._rolled_back:  # the work of the restored step was done before it was saved
                self._rolled_back = False
                break
        self._stop_if_asked()

    def train_steps(self, n: int) -> None:
        """Run n training steps with no periodic work (benchmarks, checks); captures the graph first if planned."""
        self._prepare_graph()
        for _ in range(n):
            self.run_step()

    def _stop_if_asked(self) -> None:
        if self.dist.enabled:  # every process must stop at the same step: they agree at logging steps
            if self.step % self.agree_every:
                return
            flag = torch.tensor([float(self._stop_signal or 0)], device=self.device)
            stop = distributed.all_max(flag).item()
            self._stop_signal = int(stop) if stop else None
        if self._stop_signal is not None:
            path = self.save()
            raise Interrupted(self._stop_signal, self.step, path)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None:  # a second Ctrl-C: stop now, the last checkpoint stays
            raise KeyboardInterrupt
        self._stop_signal = signum
        log.warning("signal %d: stopping after this step and writing a checkpoint", signum)

    # ---- CUDA graph -------------------------------------------------------------------------------

    def _prepare_graph(self) -> None:
        if self.graph is not None or self.step >= self.steps:
            return
        if not self.use_graph:
            if self.device.type == "cuda" and self.graph_reason:
                log.info("CUDA graph off: %s", self.graph_reason)
            return
        try:
            self._capture()
        except (GantrainError, Interrupted):
            raise
        except Exception as exc:  # capture failures are config-specific: fall back to eager, say why
            self.graph = None
            for optimizer in self.game.optimizers.values():
                for group in optimizer.param_groups:
                    group["lr"] = float(group["lr"])
            self.graph_reason = f"capture failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
            log.warning("CUDA graph off: %s; training eagerly", self.graph_reason)

    def _capture(self) -> None:
        """Three eager warm-up steps on a side stream (real steps of the run), then capture one step."""
        if self.game.schedules:  # a schedule writes the rate into the tensor the graph reads
            for optimizer in self.game.optimizers.values():
                lr_to_device(optimizer, self.device)
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(3):
                if self.step >= self.steps:
                    break
                self._step_and_due_work()  # real steps of the run, with their logging and checkpoints
        current.wait_stream(side)
        if self.step >= self.steps:
            return
        self.static_batch = self.batches.empty(self.game.batches_per_step(), self.device)
        for optimizer in self.game.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.game.step(self.static_batch)
        self.graph = graph
        log.info("training step captured as one CUDA graph")

    # ---- what periodic work uses ------------------------------------------------------------------

    @property
    def logger(self) -> Any:
        """The run's logger (TensorBoard, metrics.jsonl, console), opened on first use at the current step."""
        if self._logger is None:
            if self.dist.main:
                from gantrain.training.logger import RunLogger

                self._logger = RunLogger(self.run_dir, self.steps, self.start_step, self.progress)
            else:
                self._logger = NullLogger()
        return self._logger

    def close(self) -> None:
        self.batches.close()
        if self._logger is not None:
            self._logger.close()
            self._logger = None

    def read_stats(self) -> dict[str, float]:
        """Means of the named statistics since the last reset (one host sync per step at most)."""
        key = (self.step, self.stats.steps)
        if self._stats_cache is None or self._stats_cache[0] != key:
            reduce = distributed.all_sum if self.dist.enabled else None
            self._stats_cache = (key, self.stats.read(reduce, self.dist.world))
        return self._stats_cache[1]

    def save(self) -> Optional[Path]:
        """Write a checkpoint of this step (the main process writes; all take part under data parallelism)."""
        bad = 1.0 - self.stats.all_finite()
        if self.dist.enabled:
            bad = distributed.all_sum(bad)
        if bool(bad.item()):
            raise GantrainError(
                f"training diverged (non-finite losses before step {self.step}); not writing a checkpoint of NaN "
                f"weights; the last good one is in {self.run_dir / 'checkpoints'}; lower optimizer.lr"
            )
        state = self.state_dict()
        return self.writer.save(state, self.step) if self.dist.main else None

    def save_named(self, name: str) -> Optional[Path]:
        """Write checkpoints/<name>.pt of this step (best.pt, say), from the main process."""
        return self.writer.save_named(self.state_dict(gather=False), name) if self.dist.main else None

    def last_checkpoint(self) -> Optional[Path]:
        """checkpoints/last.pt when the run has one."""
        path = self.run_dir / "checkpoints" / "last.pt"
        return path if path.exists() else None

    def roll_back(self) -> float:
        """Go back to the last checkpoint (trainer.on_divergence=rollback): its weights, optimizer and data
        state, RNG and step; the logs restart from its step. Returns the learning-rate scale it was written with."""
        from gantrain.checkpoint import load_checkpoint

        path = self.last_checkpoint()
        if path is None:
            raise GantrainError(f"training diverged before the first checkpoint and there is none in "
                                f"{self.run_dir / 'checkpoints'} to roll back to; lower optimizer.lr")
        state = load_checkpoint(path)
        self.load_state_dict(state)
        self._stats_cache = None
        if self._logger is not None:  # rows logged past the checkpoint are about to be logged again
            self._logger.close()
            self._logger = None
        _ = self.logger
        self.started_at = time.perf_counter()
        for work in self.periodic:
            work.on_rollback(self)
        self._rolled_back = True
        if self.graph is not None:
            self.graph = None
            self._recapture = True
        return float(state.get("periodic", {}).get("divergence", {}).get("lr_scale", 1.0))

    def scale_learning_rates(self, factor: float) -> None:
        """Multiply every optimizer's learning rate (and its schedule's base rates) by factor."""
        for optimizer in self.game.optimizers.values():
            for group in optimizer.param_groups:
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].mul_(factor)
                else:
                    group["lr"] = float(group["lr"]) * factor
        for schedule in self.game.schedules.values():
            schedule.base_lrs = [lr * factor for lr in schedule.base_lrs]

    # ---- checkpoint state ---------------------------------------------------------------------------

    def state_dict(self, gather: bool = True) -> dict:
        """Everything needed to continue as if never stopped (see checkpoint.CHECKPOINT_KEYS).

        gather: under data parallelism, collect every process's RNG state (a collective call).
        """
        rng = rng_state(self.device)
        extra = {}
        if self.dist.enabled and gather:
            extra = {"rng_ranks": distributed.gather_objects(rng, self.dist.world)}
            ranked = self.game.rank_state_dict()  # empty on every process or on none (the same game everywhere)
            if ranked:  # rank 0's own is the game state already: None in its place
                extra["game_ranks"] = distributed.gather_to_main(None if self.dist.main else ranked, self.dist)
        return {
            **extra,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "world_size": self.dist.world,
            "step": self.step,
            **{k: self.meta[k] for k in ("config", "overrides", "versions", "data_shape", "data_kind")},
            "num_classes": self.meta.get("num_classes"),
            # the rest of the metadata (a translation run's kind, channels and size: whatever the game's build gave)
            **({"game_meta": own_meta} if (own_meta := {k: v for k, v in self.meta.items()
                                                         if k not in STANDARD_META and v}) else {}),
            "game": self.game.name,
            **self.game.state_dict(),
            "data_state": self.batches.state_dict(),
            "rng": rng,
            "stats": self.stats.state_dict(),
            "periodic": {w.name: w.state_dict() for w in self.periodic if hasattr(w, "state_dict")},
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("game", "gan") != self.game.name:
            raise GantrainError(f"the checkpoint is of a {state.get('game')} run, this config trains a {self.game.name}")
        if state.get("num_classes") != self.meta.get("num_classes"):
            raise GantrainError(f"the checkpoint was trained on {state.get('num_classes')} classes, the dataset now has "
                                f"{self.meta.get('num_classes')} (a class folder added or removed?); resume with the "
                                f"data it was trained on, or start a new run")
        saved_names = game_meta(state).get("class_names")
        names = self.meta.get("class_names")
        if saved_names and names and list(saved_names) != list(names):
            changed = next(i for i, (a, b) in enumerate(zip(saved_names, names)) if a != b)
            raise GantrainError(f"the class folders differ from those the run was trained on: label {changed} was "
                                f"{saved_names[changed]!r} and would now be {names[changed]!r} (a folder renamed?); "
                                f"resume with the folders it was trained on, or start a new run")
        self.game.load_state_dict(state)
        self.batches.load_state_dict(state["data_state"])
        saved_world = int(state.get("world_size", 1))
        # exact: the same number of processes, and the state of each of them (best.pt holds the main one's only)
        exact = saved_world == self.dist.world and (self.dist.world == 1 or "rng_ranks" in state)
        if saved_world != self.dist.world:
            log.warning("the checkpoint was written by %d process(es), this run has %d: training continues from the "
                        "same data position but not bit-identically", saved_world, self.dist.world)
        elif not exact:
            log.warning("the checkpoint holds the main process's state only (as best.pt does): training continues "
                        "from it, each process with noise of its own, but not bit-identically")
        set_rng_state(state["rng_ranks"][self.dist.rank] if exact and self.dist.enabled else state["rng"], self.device)
        if not exact and not self.dist.main:  # not the main process's noise again
            torch.manual_seed(int(state["step"]) * 1_000_003 + self.dist.rank)
        ranked = state.get("game_ranks") if exact else None
        if ranked is not None and ranked[self.dist.rank] is not None:  # the main process's is the game state
            self.game.load_rank_state_dict(ranked[self.dist.rank])
        self.stats.load_state_dict(state["stats"])
        for work in self.periodic:
            if hasattr(work, "load_state_dict") and work.name in state.get("periodic", {}):
                work.load_state_dict(state["periodic"][work.name])
        self.step = self.start_step = int(state["step"])


def _yaml(config: dict) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(config))


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()
