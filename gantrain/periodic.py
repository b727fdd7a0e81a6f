"""Periodic work of a training run: small objects with an `every`, called by the loop after a step.

Each gets the loop and uses its public interface only (step, game, stats, logger, save, save_named,
read_stats). `at_end`: also run after the last step when that step was not a multiple of `every`.
Objects with a `state_dict` are saved in checkpoints under their `name`.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Optional

from .errors import GantrainError

# The loop (gantrain.loop.Loop) is passed in and used through its public attributes only; it is not
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


class DivergenceCheck(Periodic):
    """Stop with a clear message when a watched loss is no longer finite (runs before the scalar log)."""

    name = "divergence"

    def __call__(self, loop: Loop, final: bool = False) -> None:
        if final and not loop.stats.steps:
            return
        means = loop.read_stats()
        bad = [k for k in loop.game.watched if k in means and not math.isfinite(means[k])]
        if bad:
            raise GantrainError(
                f"training diverged: {', '.join(bad)} became {means[bad[0]]} by step {loop.step}; the last good "
                f"checkpoint is in {loop.run_dir / 'checkpoints'}; lower optimizer.lr or add a penalty (loss=wgan_gp)"
            )


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
        if not final:
            loop.stats.reset()
        now = time.perf_counter()
        last_time, last_step = self._tick or (loop.started_at, loop.start_step)
        values["steps_per_s"] = (loop.step - last_step) / max(now - last_time, 1e-9)
        self._tick = (now, loop.step)
        loop.logger.scalars(loop.step, values)


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

    def __init__(self, every: int, evaluator: Any, best_metric: Optional[str] = None):
        super().__init__(every)
        self.evaluator, self.best_metric = evaluator, best_metric
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
