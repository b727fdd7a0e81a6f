"""Periodic work of a training run: small objects with an `every`, called by the loop after a step.

Each gets the loop and uses its public interface only (step, game, stats, logger, save, save_named,
read_stats, pending_scalars, last_checkpoint, roll_back, scale_learning_rates). `at_end`: also run after the last step when that step was not a multiple of `every`.
Objects with a `state_dict` are saved in checkpoints under their `name`.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Optional

from gantrain.errors import GantrainError, folder_option

# The loop (gantrain.training.loop.Loop) is passed in and used through its public attributes only; it is not
# imported here, so that the loop may import its periodic work without a cycle.
Loop = Any

log = logging.getLogger("gantrain")


class Periodic:
    """Work due every `every` steps (0: never)."""

    name = "periodic"
    at_end = True

    def __init__(self, every: int):
        self.every = int(every)

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def __call__(self, loop: Loop, final: bool = False) -> None:
        raise NotImplementedError

    def before_training(self, loop: Loop) -> None:
        """Called once when fit() starts, before the first step."""

    def on_rollback(self, loop: Loop) -> None:
        """Called after the loop went back to an earlier checkpoint (trainer.on_divergence=rollback)."""


class DivergenceCheck(Periodic):
    """Catch divergence at each log step (runs before the scalar log): a watched loss no longer finite, or a
    gradient norm exploding (non-finite, or EXPLOSION times its median over the earlier logs).

    action stop: end the run with a clear message (the last good checkpoint stays). rollback: reload the last
    good checkpoint, halve both learning rates and continue, at most max_rollbacks times; every rollback is
    logged and kept (with the learning-rate scale) in the checkpoint, so that resuming stays exact.
    """

    name = "divergence"
    EXPLOSION = 1000.0
    GRADIENTS = ("grad/g", "grad/d")  # the GAN games' gradient norms; a game says its own (Game.gradient_stats)
    HISTORY = 20  # logs of gradient norms remembered

    def __init__(self, every: int, action: str = "stop", max_rollbacks: int = 3):
        super().__init__(every)
        self.action, self.max_rollbacks = action, int(max_rollbacks)
        self.rollbacks: list[dict] = []
        self.lr_scale = 1.0
        self.history: dict[str, list[float]] = {}

    def problem(self, watched: tuple[str, ...], means: dict[str, float], step: int,
                gradients: tuple[str, ...] = GRADIENTS) -> Optional[str]:
        """What diverged, in words (None: nothing): a watched loss not finite, or one of `gradients` exploding."""
        bad = [k for k in watched if k in means and not math.isfinite(means[k])]
        if bad:
            return f"{', '.join(bad)} became {means[bad[0]]} by step {step}"
        for name in gradients:
            value, earlier = means.get(name), self.history.get(name, [])
            if value is None:
                continue
            if not math.isfinite(value):
                return f"the gradient norm {name} became {value} by step {step}"
            if len(earlier) >= 3:
                median = sorted(earlier)[len(earlier) // 2]
                if median > 0 and value > self.EXPLOSION * median:
                    return (f"the gradient norm {name} exploded to {value:.3g} by step {step} (median of the earlier "
                            f"logs {median:.3g})")
        return None

    def __call__(self, loop: Loop, final: bool = False) -> None:
        if final and not loop.stats.steps:
            return
        means = loop.read_stats()
        gradients = loop.game.gradient_stats()
        problem = self.problem(loop.game.watched, means, loop.step, gradients)
        if problem is None:
            for name in gradients:
                if name in means:
                    self.history[name] = (self.history.get(name, []) + [means[name]])[-self.HISTORY:]
            return
        where = loop.run_dir / "checkpoints"
        if self.action == "stop":
            if loop.last_checkpoint() is None:
                raise GantrainError(f"training diverged: {problem}, before the run's first checkpoint; start it again "
                                    f"(in a new {folder_option()}, or with {folder_option()}={loop.run_dir} resume=auto) with "
                                    f"a lower optimizer.lr, a penalty (loss=wgan_gp), or "
                                    f"trainer.on_divergence=rollback (which keeps a checkpoint to go back to)")
            raise GantrainError(f"training diverged: {problem}; the last good checkpoint is in {where}; lower "
                                f"optimizer.lr, add a penalty (loss=wgan_gp), or set trainer.on_divergence=rollback")
        if len(self.rollbacks) >= self.max_rollbacks:
            raise GantrainError(f"training diverged again: {problem}, after {len(self.rollbacks)} rollback(s) "
                                f"(trainer.max_rollbacks={self.max_rollbacks}); the last good checkpoint is in {where}; "
                                f"lower optimizer.lr or add a penalty (loss=wgan_gp)")
        self.roll_back(loop, problem)

    def roll_back(self, loop: Loop, problem: str) -> None:
        """Reload the last good checkpoint and go on with both learning rates halved."""
        kept, scale, diverged_at = list(self.rollbacks), self.lr_scale, loop.step
        restored_scale = loop.roll_back()  # loads the checkpoint, this object's saved state included
        self.rollbacks, self.lr_scale = kept, scale * 0.5
        loop.scale_learning_rates(self.lr_scale / restored_scale)
        record = {"step": diverged_at, "to": loop.step, "problem": problem, "lr_scale": self.lr_scale}
        self.rollbacks.append(record)
        message = (f"rollback {len(self.rollbacks)} of at most {self.max_rollbacks}: {problem}; reloaded the checkpoint of "
                   f"step {loop.step} and halved both learning rates (now {self.lr_scale:g} of the configured)")
        log.warning("%s", message)
        loop.logger.text("rollbacks", message, loop.step)
        # last.pt becomes the checkpoint gone back to with the halved rates and this rollback's record, so that a run
        # stopped before its next checkpoint resumes with them, not at the rates that diverged (step_N.pt stays as written)
        state = loop.state_dict()
        if loop.dist.main:
            loop.writer.save_named(state, "last")

    def before_training(self, loop: Loop) -> None:
        """With rollback on, a fresh run writes a checkpoint of step 0, so there is always one to go back to."""
        if self.action == "rollback" and loop.step == 0 and loop.last_checkpoint() is None:
            loop.save()

    def state_dict(self) -> dict:
        return {"rollbacks": [dict(r) for r in self.rollbacks], "lr_scale": self.lr_scale,
                "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.rollbacks = [dict(r) for r in state.get("rollbacks", [])]
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.history = {k: [float(x) for x in v] for k, v in state.get("history", {}).items()}


class ScalarLog(Periodic):
    """The means of the game's statistics since the last log, plus steps/s, to TensorBoard and metrics.jsonl.

    The final partial interval is logged without resetting the sums, so that a resumed run still logs
    that interval in full at its next log step.
    """

    name = "scalars"

    def __init__(self, every: int):
        super().__init__(every)
        self._tick: Optional[tuple[float, int]] = None

    def __call__(self, loop: Loop, final: bool = False) -> None:
        if final and not loop.stats.steps:
            return
        values = loop.game.report(loop.read_stats())
        values.update(loop.pending_scalars)
        loop.pending_scalars.clear()
        if not final:
            loop.stats.reset()
        now = time.perf_counter()
        last_time, last_step = self._tick or (loop.started_at, loop.start_step)
        values["steps_per_s"] = (loop.step - last_step) / max(now - last_time, 1e-9)
        self._tick = (now, loop.step)
        loop.logger.scalars(loop.step, values)

    def on_rollback(self, loop: Loop) -> None:
        self._tick = None


class Samples(Periodic):
    """The game's sample grid (or 2D scatter over the data) as samples/step_N.png and in TensorBoard."""

    name = "samples"

    def __init__(self, every: int, reference: Any = None):
        super().__init__(every)
        self.reference = reference  # 2D data points drawn under the samples

    def __call__(self, loop: Loop, final: bool = False) -> None:
        if loop.dist.main:
            loop.logger.images(loop.step, loop.game.sample_grid(), self.reference,
                               columns=getattr(loop.game, "grid_columns", None))


class Evaluation(Periodic):
    """Scores of the sampled network (eval/NAME, with floor/NAME), and checkpoints/best.pt at the best `best_metric`.

    evaluator: callable(network) -> {metric: value}, with `floor` and `higher_is_better` dicts.
    """

    name = "evaluation"
    at_end = False

    def __init__(self, every: int, evaluator: Any, best_metric: Optional[str] = None, on_results: Any = None):
        super().__init__(every)
        self.evaluator, self.best_metric, self.on_results = evaluator, best_metric, on_results
        self.best: dict[str, float] = {}

    def __call__(self, loop: Loop, final: bool = False) -> dict[str, float]:
        network = loop.game.sampler()
        was_training = network.training
        network.eval()
        try:
            results = self.evaluator(network)
        except GantrainError as exc:  # an evaluation problem never ends a training run
            log.warning("evaluation at step %d failed: %s; evaluation is off for the rest of this run", loop.step, exc)
            self.every = 0
            return {}
        finally:
            network.train(was_training)
        floor = getattr(self.evaluator, "floor", {})
        loop.logger.scalars(loop.step, {**{f"eval/{k}": float(v) for k, v in results.items()},
                                        **{f"floor/{k}": float(v) for k, v in floor.items() if k in results}})
        if self.on_results is not None:
            self.on_results(loop, results)
        name = self.best_metric
        if name and name in results:
            value = float(results[name])
            higher = self.evaluator.higher_is_better[name]
            previous = self.best.get(name)
            if previous is None or (value > previous if higher else value < previous):
                self.best[name] = value
                loop.save_named("best")
        return results

    def state_dict(self) -> dict:
        return {"best": dict(self.best)}

    def load_state_dict(self, state: dict) -> None:
        self.best = dict(state.get("best", {}))


class Checkpointing(Periodic):
    """checkpoints/step_N.pt and last.pt (see Loop.save)."""

    name = "checkpoint"

    def __call__(self, loop: Loop, final: bool = False) -> None:
        loop.save()
