"""The divergence guard's rules at their edges, on the DivergenceCheck alone (surviving mutants of periodic.py
showed them untested): the explosion threshold and the median it compares with, the history it keeps, when a
step-0 checkpoint is written, and the state of a checkpoint written before lr_scale existed."""
import math
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
    guard = DivergenceCheck(1)
    for i in range(DivergenceCheck.HISTORY + 5):
        guard(fake_loop({"grad/g": float(i + 1), "grad/d": 1.0, "loss/d": 0.5}))
    assert guard.history["grad/g"] == [float(i + 1) for i in range(5, DivergenceCheck.HISTORY + 5)]
    assert guard.history["grad/d"] == [1.0] * DivergenceCheck.HISTORY
    empty = DivergenceCheck(1)
    empty(SimpleNamespace(**{**vars(fake_loop({})), "stats": SimpleNamespace(steps=0)}), final=True)
    assert empty.history == {}  # the final call after a log step reads nothing


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
