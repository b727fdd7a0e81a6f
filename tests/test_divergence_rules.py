"""The divergence guard's rules at their edges, on the DivergenceCheck alone (surviving mutants of periodic.py
showed them untested): the explosion threshold and the median it compares with, the history it keeps, when a
step-0 checkpoint is written, and the state of a checkpoint written before lr_scale existed."""
import math
from pathlib import Path
from types import SimpleNamespace

import torch

from gantrain.training.periodic import DivergenceCheck


def guard_with(history: list[float]) -> DivergenceCheck:
    guard = DivergenceCheck(1)
    guard.history = {"grad/g": list(history)}
    return guard


def test_an_explosion_is_more_than_1000_times_the_median_of_at_least_three_earlier_logs():
    grads = ("grad/g",)
    assert DivergenceCheck.EXPLOSION == 1000.0
    guard = guard_with([1.0, 2.0, 50.0])  # the median is 2 (the middle one of the sorted list), not the mean 17.7
    assert guard.problem((), {"grad/g": 2000.0}, 7, grads) is None  # exactly 1000x: not yet
    found = guard.problem((), {"grad/g": 2000.5}, 7, grads)
    assert found == "the gradient norm grad/g exploded to 2e+03 by step 7 (median of the earlier logs 2)"
    even = guard_with([1.0, 3.0, 5.0, 100.0])  # four logs: the upper middle one, 5
    assert even.problem((), {"grad/g": 5000.0}, 3, grads) is None
    assert even.problem((), {"grad/g": 5001.0}, 3, grads) is not None
    five = guard_with([9.0, 1.0, 2.0, 3.0, 100.0])  # five logs: the third of the sorted list, 3
    assert five.problem((), {"grad/g": 3000.0}, 3, grads) is None and five.problem((), {"grad/g": 3001.0}, 3, grads)
    assert guard_with([1.0, 1.0]).problem((), {"grad/g": 1e9}, 3, grads) is None  # two logs: no median yet
    assert guard_with([0.0, 0.0, 0.0]).problem((), {"grad/g": 1e9}, 3, grads) is None  # a zero median: no ratio
    assert guard_with([0.5, 0.5, 0.5]).problem((), {"grad/g": 500.5}, 3, grads) is not None  # a median below 1 counts
    assert guard_with([]).problem((), {"grad/g": math.inf}, 4, grads) == "the gradient norm grad/g became inf by step 4"
    assert guard_with([1.0, 1.0, 1.0]).problem((), {"grad/d": 1e9}, 3, grads) is None  # not a watched gradient
    assert guard_with([]).problem(("loss/d",), {"loss/d": math.nan, "loss/g": 1.0}, 5, grads) == "loss/d became nan by step 5"
    both = guard_with([]).problem(("loss/d", "loss/g"), {"loss/d": math.nan, "loss/g": math.inf}, 5, grads)
    assert both == "loss/d, loss/g became nan by step 5"  # every one named, the first one's value


def fake_loop(means: dict, step: int = 10, checkpoint=None):
    saved = []
    return SimpleNamespace(stats=SimpleNamespace(steps=1), read_stats=lambda: dict(means), step=step,
                           game=SimpleNamespace(gradient_stats=lambda: ("grad/g", "grad/d"), watched=("loss/d",)),
                           last_checkpoint=lambda: checkpoint, save=lambda: saved.append(step), saved=saved)


def test_the_history_keeps_the_last_logs_of_each_watched_gradient():
    assert DivergenceCheck.HISTORY == 20  # the median is over the last 20 logs
    guard = DivergenceCheck(1)
    for i in range(DivergenceCheck.HISTORY + 5):
        guard(fake_loop({"grad/g": float(i + 1), "grad/d": 1.0, "loss/d": 0.5}))
    assert guard.history["grad/g"] == [float(i + 1) for i in range(5, DivergenceCheck.HISTORY + 5)]
    assert guard.history["grad/d"] == [1.0] * DivergenceCheck.HISTORY
    empty = DivergenceCheck(1)
    nothing_since = SimpleNamespace(**{**vars(fake_loop({"grad/g": 5.0, "loss/d": math.nan})), "stats": SimpleNamespace(steps=0)})
    empty(nothing_since, final=True)  # would stop the run (loss/d nan) if it read the stats
    assert empty.history == {}  # the final call right after a log step reads nothing
    empty(SimpleNamespace(**{**vars(nothing_since), "read_stats": lambda: {"grad/g": 5.0}}))  # a log step's call
    assert empty.history == {"grad/g": [5.0]}  # a log step reads them however many steps were summed


def test_a_step_0_checkpoint_is_written_only_when_rolling_back_a_fresh_run():
    for action, step, checkpoint, written in (("rollback", 0, None, [0]), ("stop", 0, None, []),
                                              ("rollback", 5, None, []), ("rollback", 0, "last.pt", [])):
        loop = fake_loop({}, step=step, checkpoint=checkpoint)
        DivergenceCheck(1, action=action).before_training(loop)
        assert loop.saved == written, (action, step, checkpoint)


def test_a_checkpoint_without_lr_scale_means_the_configured_rates():
    guard = DivergenceCheck(1)
    guard.lr_scale = 0.25
    guard.load_state_dict({"rollbacks": [], "history": {"grad/g": [torch.tensor(2.0).item()]}})
    assert guard.lr_scale == 1.0 and guard.history == {"grad/g": [2.0]} and guard.rollbacks == []


def test_a_rollback_to_a_checkpoint_written_after_an_earlier_rollback_halves_from_the_current_rates():
    """The rates are scaled by (new scale) / (scale the restored checkpoint was written with): the optimizers
    come back at the restored checkpoint's rates, which already carry that scale."""
    guard = DivergenceCheck(1, action="rollback", max_rollbacks=5)
    factors, texts = [], []
    restored = iter([1.0, 1.0, 0.5])  # the third rollback restores a checkpoint written after the first one

    def roll_back():
        return next(restored)

    written = []
    loop = SimpleNamespace(stats=SimpleNamespace(steps=1), read_stats=lambda: {"loss/d": math.nan}, step=30,
                           game=SimpleNamespace(gradient_stats=lambda: (), watched=("loss/d",)),
                           roll_back=roll_back, scale_learning_rates=factors.append, run_dir=Path("run"),
                           logger=SimpleNamespace(text=lambda tag, message, step: texts.append(message)),
                           state_dict=lambda: {"lr_scale": guard.lr_scale}, dist=SimpleNamespace(main=True),
                           writer=SimpleNamespace(save_named=lambda state, name: written.append((name, state))))
    for _ in range(3):
        guard(loop)
    assert written == [("last", {"lr_scale": 0.5}), ("last", {"lr_scale": 0.25}), ("last", {"lr_scale": 0.125})]
    assert guard.lr_scale == 0.125
    assert factors == [0.5, 0.25, 0.25]  # 0.5 / 1, 0.25 / 1, then 0.125 / 0.5
    assert [r["lr_scale"] for r in guard.rollbacks] == [0.5, 0.25, 0.125]
    assert texts[-1].startswith("rollback 3 of at most 5: loss/d became nan by step 30")
