"""The training loop: sample real, generate fake, update D n_critic times, update G, repeat."""
from __future__ import annotations

import copy
import logging
import math
import random
import signal
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn

from . import distributed
from .checkpoint import FORMAT, FORMAT_VERSION, CheckpointWriter
from .config import TrainerConfig
from .data import BatchStream, normalize
from .distributed import Dist
from .errors import GantrainError
from .logger import RunLogger
from .losses import GANLoss
from .models import Generator

log = logging.getLogger("gantrain")

# Slots of the on-device statistics accumulator (sums since the last log).
D_LOSS, D_REAL, D_FAKE, PENALTY, G_LOSS = range(5)
N_STATS = 5


class NullLogger:
    """The logger of processes other than the main one under data parallelism: they log nothing."""

    def step_done(self, n: int = 1) -> None: ...
    def scalars(self, step: int, values: dict) -> None: ...
    def text(self, *args: Any) -> None: ...
    def images(self, *args: Any) -> None: ...
    def close(self) -> None: ...


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after writing a checkpoint."""

    def __init__(self, signum: int, step: int, checkpoint: Path):
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


class Trainer:
    """Runs one GAN training from step `self.step` to `settings.steps`, with logging and checkpoints.

    generator, discriminator: the networks (on `device`). loss: the objective with its penalties.
    opt_g, opt_d: their optimizers. batches: the real-data stream. ema: a copy of G averaged over steps.
    evaluate: optional callable(generator) -> {metric: value} run every eval_every steps.
    """

    def __init__(
        self,
        *,
        generator: Generator,
        discriminator: nn.Module,
        loss: GANLoss,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        batches: BatchStream,
        settings: TrainerConfig,
        device: torch.device,
        run_dir: Path,
        seed: int,
        config: dict,
        data_kind: str,
        data_shape: tuple[int, ...],
        ema: Optional[Generator] = None,
        reference: Optional[Tensor] = None,
        evaluate: Optional[Callable[[Generator], dict[str, float]]] = None,
        versions: Optional[dict] = None,
        dist: Optional[Dist] = None,
        schedulers: Optional[tuple[Any, Any]] = None,
    ):
        self.G, self.D, self.loss = generator, discriminator, loss
        self.opt_g, self.opt_d, self.batches, self.ema = opt_g, opt_d, batches, ema
        self.s, self.device, self.run_dir, self.seed = settings, device, Path(run_dir), seed
        self.config, self.data_kind, self.data_shape = config, data_kind, tuple(data_shape)
        self.reference, self.evaluate, self.versions = reference, evaluate, versions or {}
        self.dist = dist or Dist()
        self.schedulers = schedulers  # (G's, D's) learning-rate schedules, stepped once per generator update
        self.overrides: list[str] = []  # the command line that made this run (stored in checkpoints)
        self.step = 0
        self.stats = torch.zeros(N_STATS, device=device)
        self.steps_in_stats = 0
        self.best: dict[str, float] = {}
        self.fixed_z = torch.randn(settings.num_samples, generator.latent_dim, generator=torch.Generator().manual_seed(seed + 1)).to(device)
        self.autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False) if settings.precision == "bf16" else nullcontext()
        )
        self._stop_signal: Optional[int] = None
        self.graph: Optional[Any] = None
        self.graph_reason = "not a CUDA device" if device.type != "cuda" else ""

    # ---- one training step: a function of device tensors only (no host sync) -------------------

    def train_step(self, real_raw: Tensor) -> None:
        """One generator update after n_critic discriminator updates; real_raw: (n_critic, B, ...) raw batches."""
        G, D, loss, B = self.G, self.D, self.loss, self.s.batch_size
        n_critic = real_raw.shape[0]
        for i in range(n_critic):
            real = normalize(real_raw[i])
            z = torch.randn(B, G.latent_dim, device=real.device)
            last = i == n_critic - 1
            with self.autocast, (nullcontext() if last else torch.no_grad()):
                fake = G(z)  # the last critic step keeps G's graph for the generator update
            with self.autocast:
                real_logits = D(real).float()
                fake_logits = D(fake.detach()).float()
                d_loss = loss.d_loss(real_logits, fake_logits)
                penalty = loss.penalty(D, real, fake) if loss.has_penalty else d_loss.new_zeros(())
            self.opt_d.zero_grad(set_to_none=True)
            (d_loss + penalty).backward()
            if self.dist.enabled:
                distributed.average_gradients(D.parameters(), self.dist.world)
            self.opt_d.step()
            if loss.clip is not None:
                with torch.no_grad():
                    params = list(D.parameters())
                    torch._foreach_clamp_min_(params, -loss.clip)
                    torch._foreach_clamp_max_(params, loss.clip)
            self.stats[:PENALTY + 1].add_(
                torch.stack([d_loss.detach(), real_logits.detach().mean(), fake_logits.detach().mean(), penalty.detach()])
            )

        D.requires_grad_(False)  # G's update needs gradients through D, not of D's weights
        with self.autocast:
            g_loss = loss.g_loss(D(fake).float())
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        if self.dist.enabled:
            distributed.average_gradients(G.parameters(), self.dist.world)
        self.opt_g.step()
        D.requires_grad_(True)
        if self.ema is not None:
            torch._foreach_lerp_(list(self.ema.parameters()), list(G.parameters()), 1.0 - self.s.ema_decay)
            torch._foreach_copy_(list(self.ema.buffers()), list(G.buffers()))
        self.stats[G_LOSS].add_(g_loss.detach())

    # ---- the loop ---------------------------------------------------------------------------------

    def _use_graph(self) -> bool:
        mode = self.s.cuda_graph
        if self.schedulers is not None:
            self.graph_reason = "optimizer.lr_schedule=linear changes the learning rates between steps"
            if mode == "true":
                raise GantrainError(f"trainer.cuda_graph=true is not possible: {self.graph_reason}; use auto")
            return False
        if self.dist.enabled:
            self.graph_reason = "data-parallel training all-reduces gradients between the updates"
            if mode == "true":
                raise GantrainError(f"trainer.cuda_graph=true is not possible: {self.graph_reason}; use auto")
            return False
        if self.device.type != "cuda":
            if mode == "true":
                raise GantrainError("trainer.cuda_graph=true needs a CUDA device; use trainer.cuda_graph=auto")
            return False
        if getattr(self.batches, "data", None) is None:
            self.graph_reason = "the dataset streams from a DataLoader (dataset.on_device=false)"
            if mode == "true":
                raise GantrainError(f"trainer.cuda_graph=true is not possible: {self.graph_reason}")
            return False
        return mode in ("auto", "true")

    def _run_step(self) -> None:
        n_critic = self.s.n_critic
        if self.graph is not None:
            self.batches.next(n_critic, out=self.static_raw)
            self.graph.replay()
        else:
            self.train_step(self.batches.next(n_critic))
            if self.schedulers is not None:
                for scheduler in self.schedulers:
                    scheduler.step()
        self.step += 1
        self.steps_in_stats += 1

    def fit(self) -> None:
        """Train until settings.steps; SIGINT/SIGTERM stop after the current step with a checkpoint."""
        s = self.s
        if self.step >= s.steps:
            log.info("nothing to train: the run is at step %d and trainer.steps=%d; raise trainer.steps to train longer",
                     self.step, s.steps)
            return
        progress = s.progress == "true" or (s.progress == "auto" and _stdout_is_tty())
        self.logger = RunLogger(self.run_dir, s.steps, self.step, progress) if self.dist.main else NullLogger()
        self.writer = CheckpointWriter(self.run_dir, s.keep_last)
        if self.step == 0:
            self.logger.text("config", "```\n" + _yaml(self.config) + "\n```")
        log.info("training %s -> step %d on %s", "from step %d" % self.step if self.step else "from scratch", s.steps, self.device)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.G.train()
        self.D.train()
        self._tick = (time.perf_counter(), self.step)
        try:
            if self.step < s.steps and self._use_graph():
                self._warm_and_capture()
            elif self.device.type == "cuda" and self.graph_reason:
                log.info("CUDA graph off: %s", self.graph_reason)
            while self.step < s.steps:
                self._run_step()
                self._after_step()
            if self.step % s.log_every and self.steps_in_stats:
                self.log_scalars(reset=False)  # the final partial interval; a resumed run still logs it in full
            if self.step % s.sample_every:
                self.sample()
            if self.step % s.ckpt_every:
                self.save()
            if self.dist.enabled:
                distributed.check_in_sync(self.G)
                distributed.check_in_sync(self.D)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.logger.close()

    def _warm_and_capture(self) -> None:
        try:
            self._capture_with_state()
        except GantrainError:
            raise
        except Exception as exc:  # capture failures are config-specific: fall back to eager, say why
            self.graph = None
            self.graph_reason = f"capture failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
            log.warning("CUDA graph off: %s; training eagerly", self.graph_reason)

    def _capture_with_state(self) -> None:
        warmup = 3
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                if self.step >= self.s.steps:
                    return
                self._run_step()
                self._after_step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        shape = (self.s.n_critic, self.s.batch_size, *self.batches.data.shape[1:])  # type: ignore[attr-defined]
        self.static_raw = torch.empty(shape, dtype=self.batches.data.dtype, device=self.device)  # type: ignore[attr-defined]
        graph = torch.cuda.CUDAGraph()
        self.opt_d.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            self.train_step(self.static_raw)
        self.graph = graph
        log.info("training step captured as one CUDA graph")

    def _after_step(self) -> None:
        s, step = self.s, self.step
        self.logger.step_done()
        if step % s.log_every == 0:
            self.log_scalars()
        if step % s.sample_every == 0:
            self.sample()
        if s.eval_every and step % s.eval_every == 0 and self.evaluate is not None:
            self.run_eval()
        if step % s.ckpt_every == 0:
            self.save()
        if self.dist.enabled:  # every process must stop at the same step: agree at logging steps
            if step % s.log_every == 0:
                flag = torch.tensor([float(self._stop_signal or 0)], device=self.device)
                stop = distributed.all_max(flag).item()
                self._stop_signal = int(stop) if stop else None
            else:
                return
        if self._stop_signal is not None:
            path = self.save()
            raise Interrupted(self._stop_signal, step, path)

    # ---- hooks: logging, samples, evaluation, checkpoints -----------------------------------------

    def log_scalars(self, reset: bool = True) -> dict[str, float]:
        """Read the device accumulators (the only host sync), log their means and (by default) reset them."""
        n = max(self.steps_in_stats, 1)
        sums = (distributed.all_sum(self.stats) / self.dist.world if self.dist.enabled else self.stats).tolist()
        if reset:
            self.stats.zero_()
            self.steps_in_stats = 0
        nd = n * self.s.n_critic
        now = time.perf_counter()
        rate = (self.step - self._tick[1]) / max(now - self._tick[0], 1e-9)
        self._tick = (now, self.step)
        values = {
            "loss/d": sums[D_LOSS] / nd,
            "loss/g": sums[G_LOSS] / n,
            "d/real": sums[D_REAL] / nd,
            "d/fake": sums[D_FAKE] / nd,
        }
        if self.loss.has_penalty:
            values["loss/penalty"] = sums[PENALTY] / nd
        if self.loss.critic:
            values["loss/wasserstein"] = (sums[D_REAL] - sums[D_FAKE]) / nd
        values["lr/d"] = float(self.opt_d.param_groups[0]["lr"])
        values["lr/g"] = float(self.opt_g.param_groups[0]["lr"])
        values["steps_per_s"] = rate
        bad = [k for k in ("loss/d", "loss/g", "loss/penalty") if k in values and not math.isfinite(values[k])]
        if bad:
            raise GantrainError(
                f"training diverged: {', '.join(bad)} became {values[bad[0]]} by step {self.step}; the last good "
                f"checkpoint is in {self.run_dir / 'checkpoints'}; lower optimizer.lr or add a penalty (loss=wgan_gp)"
            )
        self.logger.scalars(self.step, values)
        return values

    def sample_generator(self) -> Generator:
        return self.ema if self.ema is not None else self.G

    @torch.no_grad()
    def sample(self) -> Optional[Path]:
        """Write the fixed-noise sample grid (or 2D scatter) of the current step (the main process only)."""
        if not self.dist.main:
            return None
        g = self.sample_generator()
        was_training = g.training
        g.eval()
        with self.autocast:
            samples = g(self.fixed_z).float()
        g.train(was_training)
        return self.logger.images(self.step, samples, self.reference)

    def run_eval(self) -> dict[str, float]:
        assert self.evaluate is not None
        g = self.sample_generator()
        was_training = g.training
        g.eval()
        try:
            results = self.evaluate(g)
        except GantrainError as exc:  # an evaluation problem never ends a training run
            log.warning("evaluation at step %d failed: %s", self.step, exc)
            return {}
        finally:
            g.train(was_training)
        floor = getattr(self.evaluate, "floor", {})
        self.logger.scalars(self.step, {**{f"eval/{k}": float(v) for k, v in results.items()},
                                        **{f"floor/{k}": float(v) for k, v in floor.items() if k in results}})
        name = self.s.best_metric
        if name and name in results:
            value = float(results[name])
            better = self.best.get(name) is None or (value > self.best[name] if higher_is_better(name) else value < self.best[name])
            if better:
                self.best[name] = value
                self.writer.save_named(self.state_dict(gather=False), "best")
        return results

    def state_dict(self, gather: bool = True) -> dict:
        """Everything needed to continue as if never stopped (see checkpoint.CHECKPOINT_KEYS).

        gather: under data parallelism, collect every process's RNG state (a collective call).
        """
        rng = rng_state(self.device)
        extra = {}
        if self.dist.enabled and gather:
            extra = {"rng_ranks": distributed.gather_objects(rng, self.dist.world)}
        return {
            **extra,
            "world_size": self.dist.world,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "step": self.step,
            "config": self.config,
            "overrides": list(self.overrides),
            "versions": self.versions,
            "data_shape": list(self.data_shape),
            "data_kind": self.data_kind,
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "generator_ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict(),
            "scheduler_g": self.schedulers[0].state_dict() if self.schedulers else None,
            "scheduler_d": self.schedulers[1].state_dict() if self.schedulers else None,
            "data_state": self.batches.state_dict(),
            "rng": rng,
            "stats": {"sums": self.stats.detach().cpu().clone(), "steps": self.steps_in_stats},
            "metrics": {"best": dict(self.best)},
        }

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        if self.ema is not None:
            if state.get("generator_ema") is None:
                raise GantrainError("the checkpoint has no EMA generator; resume with trainer.ema_decay=0")
            self.ema.load_state_dict(state["generator_ema"])
        self.opt_g.load_state_dict(state["optimizer_g"])
        self.opt_d.load_state_dict(state["optimizer_d"])
        if self.schedulers is not None:
            self.schedulers[0].load_state_dict(state["scheduler_g"])
            self.schedulers[1].load_state_dict(state["scheduler_d"])
        self.batches.load_state_dict(state["data_state"])
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.dist.world:
            log.warning("the checkpoint was written by %d process(es), this run has %d: training continues from the "
                        "same data position but not bit-identically", saved_world, self.dist.world)
        rng = state["rng_ranks"][self.dist.rank] if saved_world == self.dist.world and "rng_ranks" in state else state["rng"]
        set_rng_state(rng, self.device)
        self.stats.copy_(state["stats"]["sums"].to(self.device))
        self.steps_in_stats = int(state["stats"]["steps"])
        self.best = dict(state.get("metrics", {}).get("best", {}))
        self.step = int(state["step"])

    def save(self) -> Optional[Path]:
        """Write a checkpoint of this step (the main process writes; all take part under data parallelism)."""
        bad = (~torch.isfinite(self.stats)).sum().float().reshape(1)
        if self.dist.enabled:
            bad = distributed.all_sum(bad)
        if bool(bad.item()):
            raise GantrainError(
                f"training diverged (non-finite losses before step {self.step}); not writing a checkpoint of NaN "
                f"weights; the last good one is in {self.run_dir / 'checkpoints'}; lower optimizer.lr"
            )
        state = self.state_dict()
        return self.writer.save(state, self.step) if self.dist.main else None

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None:  # a second Ctrl-C: stop now, the last checkpoint stays
            raise KeyboardInterrupt
        self._stop_signal = signum
        log.warning("signal %d: stopping after this step and writing a checkpoint", signum)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of the metric is better (FID, KL and the like are lower-better)."""
    lower = ("fid", "kid", "kl", "loss")
    return not any(token in metric.lower() for token in lower)


def make_ema(generator: Generator) -> Generator:
    """A frozen copy of G whose weights the trainer averages."""
    ema = copy.deepcopy(generator)
    ema.requires_grad_(False)
    return ema


def _stdout_is_tty() -> bool:
    import sys

    return sys.stdout.isatty()


def _yaml(config: dict) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(config))
