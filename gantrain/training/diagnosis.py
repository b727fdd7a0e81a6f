"""Plain-language warnings when a GAN run shows a known failure, with the numbers behind each.

`Diagnosis` is periodic work at each log step (before the scalar log reads and resets the statistics);
`coverage` is called with each evaluation's results. A warning goes to the console and to TensorBoard's
text tab (tag "diagnosis"), once per episode: it fires when its condition starts to hold and again only
after the condition cleared. The failures watched:

- the discriminator wins outright: D's accuracy on real and on generated samples both at least 99% and
  its loss at most 0.1 for `PATIENCE` logs in a row while G's gradient norm fell below a tenth of its
  peak (it vanishes, as with the minimax loss), or for `LONG_PATIENCE` logs in a row;
- mode collapse: after the first WARMUP_LOGS logs, the generated samples of the sample grid nearly
  identical for PATIENCE logs (their mean pairwise distance below `DIVERSITY` of the data's, after having
  been twice that), or the modes / classes covered fell to 3/4 of their best or below at COVERAGE_EVALS
  evaluations in a row (a dip that recovers at the next evaluation is early exploration), or at the last one;
- oscillation: after the first WARMUP_LOGS + SWINGS logs, D's accuracy on generated samples crossing 50% at
  least SWINGS - 3 times in the last SWINGS logs, reaching below 20% and above 80%;
- a rising Wasserstein estimate: the critic's estimate growing log after log, well above its low.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional

import torch
from torch import Tensor

from gantrain.training.periodic import Loop, Periodic

log = logging.getLogger("gantrain")

#: evaluation metrics that count modes or classes covered (higher is better)
COVERAGE_METRICS = ("modes", "classes", "stacked_modes")


def mean_pairwise_distance(x: Tensor, limit: int = 256) -> float:
    """The mean L2 distance between distinct samples of a batch (the first `limit`, flattened)."""
    x = x[:limit].flatten(1).float()
    n = len(x)
    if n < 2:
        return 0.0
    distances = torch.cdist(x, x)
    return float(distances.sum() / (n * (n - 1)))


class Diagnosis(Periodic):
    """Watch the logged statistics and the samples for known failures; warn in plain language.

    loss_name: the run's loss (the advice differs for the minimax loss). estimates_distance: the loss's
    critic estimates a Wasserstein distance (loss/wasserstein is watched). reference: a batch of real data
    in data space (the scale of sample diversity), or None to skip that check.
    """

    name = "diagnosis"
    at_end = False
    PATIENCE = 3  # logs in a row the discriminator must win by ACCURACY
    ACCURACY = 0.99
    D_LOSS = 0.1  # ... with D's loss at most this (sure of itself, not just on the right side of the threshold)
    VANISHED = 0.1  # ... and G's gradient norm below this fraction of its peak,
    LONG_PATIENCE = 20  # ... or D winning for this many logs in a row (a loss whose gradient does not vanish)
    DIVERSITY = 0.1  # generated samples this close together (relative to the data's spread) have collapsed,
    # for PATIENCE logs, after having been twice as spread out (a fresh generator's samples start close together)
    COVERAGE_DROP = 0.75  # modes / classes at or below this fraction of their best
    COVERAGE_EVALS = 2  # ... at this many evaluations in a row (or at the run's last evaluation)
    SWINGS = 8  # logs over which D's accuracy on generated samples is checked for oscillation
    RISE_LOGS = 5  # logs in a row the Wasserstein estimate must rise
    WARMUP_LOGS = 10  # logs before the Wasserstein estimate is watched (it rises early in every healthy run)

    def __init__(self, every: int, loss_name: str, estimates_distance: bool, reference: Optional[Tensor]):
        super().__init__(every)
        self.loss_name, self.estimates_distance = loss_name, estimates_distance
        self.reference_spread = mean_pairwise_distance(reference) if reference is not None else None
        self.active: set[str] = set()
        self.history: dict[str, list[float]] = {}
        self.best_coverage: dict[str, tuple[float, int]] = {}
        self.coverage_fallen: dict[str, int] = {}  # evaluations in a row at or below COVERAGE_DROP of the best
        self.g_grad_peak = 0.0
        self.warnings: list[str] = []  # every warning of this process, in order (also in the console and TensorBoard)

    # ---- the checks ---------------------------------------------------------------------------------

    def __call__(self, loop: Loop, final: bool = False) -> None:
        means = loop.read_stats()
        for key in ("d/acc_real", "d/acc_fake", "loss/d", "loss/wasserstein", "grad/g"):
            value = means.get(key)
            if key == "loss/wasserstein" and "d/real" in means and "d/fake" in means:
                value = means["d/real"] - means["d/fake"]
            if value is not None and math.isfinite(value):
                self.history[key] = (self.history.get(key, []) + [value])[-max(self.SWINGS, self.WARMUP_LOGS + 40):]
        if "grad/g" in means and math.isfinite(means["grad/g"]):
            self.g_grad_peak = max(self.g_grad_peak, means["grad/g"])
        self.update(loop, "discriminator_wins", self.discriminator_wins(means))
        self.update(loop, "oscillation", self.oscillation())
        if self.estimates_distance:
            self.update(loop, "wasserstein_rising", self.wasserstein_rising(loop.step))
        if self.reference_spread:
            self.update(loop, "identical_samples", self.identical_samples(loop))

    def discriminator_wins(self, means: dict[str, float]) -> Optional[str]:
        real, fake = self.history.get("d/acc_real", []), self.history.get("d/acc_fake", [])
        if len(real) < self.PATIENCE or len(fake) < self.PATIENCE or "d/acc_real" not in means:
            return None
        losses = self.history.get("loss/d", [])

        def won(i: int) -> bool:  # D won outright at the i-th log from the end
            return min(real[-i], fake[-i]) >= self.ACCURACY and losses[-i] <= self.D_LOSS

        longest = min(len(real), len(fake), len(losses))
        streak = next((i - 1 for i in range(1, longest + 1) if not won(i)), longest)
        g = means.get("grad/g", math.nan)
        vanished = math.isfinite(g) and self.g_grad_peak > 0 and g < self.VANISHED * self.g_grad_peak
        if streak < self.PATIENCE or not (vanished or streak >= self.LONG_PATIENCE):
            return None
        gradient = (f"; G's gradient norm fell to {g:.2g} from a peak of {self.g_grad_peak:.2g}: it vanishes"
                    if vanished else f"; it has for {streak} logs")
        if self.loss_name == "minimax":
            advice = ("use loss=nonsaturating (the minimax generator loss saturates when D is sure), add a penalty "
                      "(loss.r1_gamma=10 or loss=wgan_gp), or lower optimizer.discriminator.lr")
        else:
            advice = ("add a penalty (loss.r1_gamma=10 or loss=wgan_gp), augment what D sees "
                      "(augment.policy=[translation,cutout]), or lower optimizer.discriminator.lr")
        return (f"the discriminator wins outright: for the last {min(streak, self.PATIENCE)} logs it called {real[-1]:.1%} of real "
                f"and {fake[-1]:.1%} of generated samples correctly{gradient}; {advice}")

    def oscillation(self) -> Optional[str]:
        history = self.history.get("d/acc_fake", [])
        fake = history[-self.SWINGS:]
        if len(history) < self.WARMUP_LOGS + self.SWINGS:  # early training swings in every run
            return None
        crossings = sum((a - 0.5) * (b - 0.5) < 0 for a, b in zip(fake, fake[1:]))
        if min(fake) > 0.2 or max(fake) < 0.8 or crossings < self.SWINGS - 3:
            return None
        return (f"training oscillates: D's accuracy on generated samples swung between {min(fake):.0%} and "
                f"{max(fake):.0%} over the last {self.SWINGS} logs, crossing 50% {crossings} times (G and D take turns "
                f"winning); lower both learning rates (optimizer.lr), or average G with trainer.ema_decay=0.999")

    def wasserstein_rising(self, step: int) -> Optional[str]:
        values = self.history.get("loss/wasserstein", [])
        if len(values) < self.WARMUP_LOGS + self.RISE_LOGS:
            return None
        watched = values[self.WARMUP_LOGS:] if len(values) < self.WARMUP_LOGS + 40 else values
        recent = values[-(self.RISE_LOGS + 1):]
        low = min(watched)
        if not all(b > a for a, b in zip(recent, recent[1:])) or recent[-1] < recent[0] + 0.5 * abs(low) \
                or recent[-1] <= 1.5 * low or low <= 0:
            return None
        return (f"the Wasserstein estimate rose for {self.RISE_LOGS} logs in a row, from {recent[0]:.3g} to {recent[-1]:.3g} "
                f"(its low was {low:.3g}): the critic is pulling away from the generator; raise trainer.n_critic only "
                f"with a penalty (loss=wgan_gp), or lower optimizer.lr")

    def identical_samples(self, loop: Loop) -> Optional[str]:
        spread = mean_pairwise_distance(loop.game.sample_grid())
        ratio = spread / self.reference_spread
        loop.pending_scalars["diag/diversity"] = ratio
        history = (self.history.get("diag/diversity", []) + [ratio])[-(self.WARMUP_LOGS + 40):]
        self.history["diag/diversity"] = history
        recent = history[-self.PATIENCE:]
        if len(history) <= self.WARMUP_LOGS or max(recent) >= self.DIVERSITY or max(history) < 2 * self.DIVERSITY:
            return None
        config = loop.meta.get("config") or {}
        packs = (config.get("discriminator") or {}).get("pack") == 1 and not config.get("conditional")  # MLP's PacGAN
        advice = " (loss.r1_gamma=10)" + (", or pack the discriminator's inputs (discriminator.pack=2)" if packs else "")
        return (f"mode collapse: the generated samples are nearly identical (mean pairwise distance {spread:.3g}, "
                f"{spread / self.reference_spread:.1%} of the data's {self.reference_spread:.3g}); lower the learning "
                f"rates or add a penalty{advice}")

    def coverage(self, loop: Loop, results: dict[str, Any]) -> None:
        """After an evaluation: warn when the modes or classes covered stay at COVERAGE_DROP of their best or
        below for COVERAGE_EVALS evaluations in a row, or are there at the run's last evaluation."""
        last = loop.step >= loop.steps
        for name in COVERAGE_METRICS:
            if name not in results or not math.isfinite(float(results[name])):
                continue
            value = float(results[name])
            best, at = self.best_coverage.get(name, (value, loop.step))
            if value > best or name not in self.best_coverage:
                best, at = value, loop.step
            self.best_coverage[name] = (best, at)
            fell = best > 0 and value <= self.COVERAGE_DROP * best and best - value >= 2
            self.coverage_fallen[name] = self.coverage_fallen.get(name, 0) + 1 if fell else 0
            held = self.coverage_fallen[name] >= self.COVERAGE_EVALS or (fell and last)
            if fell and not held:
                continue  # one low evaluation: wait for the next before calling it a collapse
            self.update(loop, f"coverage_{name}", (
                f"mode collapse: the {name} covered fell from {best:g} (step {at}) to {value:g} (step {loop.step}); "
                f"checkpoints/best.pt keeps the best step when trainer.best_metric={name}; lower the learning rates or "
                f"add a penalty (loss.r1_gamma=10)") if held else None)

    # ---- warning once per episode ---------------------------------------------------------------------

    def update(self, loop: Loop, kind: str, message: Optional[str]) -> None:
        if message is None:
            self.active.discard(kind)
            return
        if kind in self.active:
            return
        self.active.add(kind)
        self.warnings.append(message)
        log.warning("warning at step %d: %s", loop.step, message)
        loop.logger.text("diagnosis", f"step {loop.step}: {message}", loop.step)

    def on_rollback(self, loop: Loop) -> None:
        self.active.clear()

    def state_dict(self) -> dict:
        return {"active": sorted(self.active), "history": {k: list(v) for k, v in self.history.items()},
                "best_coverage": {k: list(v) for k, v in self.best_coverage.items()}, "g_grad_peak": self.g_grad_peak,
                "coverage_fallen": dict(self.coverage_fallen)}

    def load_state_dict(self, state: dict) -> None:
        self.active = set(state.get("active", []))
        self.history = {k: [float(x) for x in v] for k, v in state.get("history", {}).items()}
        self.best_coverage = {k: (float(v[0]), int(v[1])) for k, v in state.get("best_coverage", {}).items()}
        self.coverage_fallen = {k: int(v) for k, v in state.get("coverage_fallen", {}).items()}
        self.g_grad_peak = float(state.get("g_grad_peak", 0.0))
