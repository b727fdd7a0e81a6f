"""The divergence guard: stop (the default) or roll back to the last good checkpoint with halved learning rates."""
import json
import math

import pytest
import torch

import gantrain
from gantrain.training.build import build
from gantrain.checkpoint import load_checkpoint
from gantrain.config import config_differences
from gantrain.errors import GantrainError
from gantrain.training.periodic import DivergenceCheck, Periodic

SMALL = ["dataset=ring", "generator=mlp", "discriminator=mlp", "generator.latent_dim=2",
        "optimizer.lr=1e-3", "generator.hidden=[16]", "discriminator.hidden=[16]", "trainer.device=cpu",
         "trainer.batch_size=64", "trainer.log_every=10", "trainer.ckpt_every=20", "trainer.sample_every=1000",
         "trainer.eval_every=0", "trainer.best_metric=null", "trainer.progress=false", "trainer.diagnose=false"]


class InjectNaN(Periodic):
    """Test fault: after step `at`, G's first weight becomes NaN (once per process, or every time)."""

    name = "inject"
    at_end = False

    def __init__(self, at: int, always: bool = False):
        super().__init__(1)
        self.at, self.always, self.fired = at, always, 0

    def __call__(self, loop, final=False):
        if loop.step == self.at and (self.always or not self.fired):
            self.fired += 1
            with torch.no_grad():
                next(loop.game.networks["generator"].parameters()).fill_(math.nan)


def loop_with(tmp_path, steps, extra=(), inject=None):
    loop = build(gantrain.compose(SMALL + [f"trainer.steps={steps}", *extra]), tmp_path)
    if inject is not None:
        loop.periodic.insert(0, inject)
    return loop


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_divergence_stops_by_default_and_names_the_rollback_option(tmp_path):
    loop = loop_with(tmp_path, 60, inject=InjectNaN(25))
    with pytest.raises(GantrainError, match=r"training diverged: loss/d.* became nan by step 30.*on_divergence=rollback"):
        loop.fit()
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 20  # the last good one stays
    early = loop_with(tmp_path / "early", 60, extra=["trainer.ckpt_every=50"], inject=InjectNaN(5))
    with pytest.raises(GantrainError) as err:  # nothing to go back to yet: the message says what to do instead
        early.fit()
    assert not (tmp_path / "early" / "checkpoints" / "last.pt").exists()
    assert str(err.value).endswith(
        f"became nan by step 10, before the run's first checkpoint; start it again (in a new hydra.run.dir, or with "
        f"hydra.run.dir={tmp_path / 'early'} resume=auto) with a lower optimizer.lr, a penalty (loss=wgan_gp), or "
        f"trainer.on_divergence=rollback (which keeps a checkpoint to go back to)")


def test_rollback_continues_with_halved_rates_and_a_second_resume_is_exact(tmp_path):
    rollback = ["trainer.on_divergence=rollback"]
    straight = tmp_path / "straight"
    loop = loop_with(straight, 60, rollback, InjectNaN(25))
    loop.fit()
    assert loop.step == 60
    state = load_checkpoint(straight / "checkpoints" / "last.pt")
    record = state["periodic"]["divergence"]
    assert [(r["step"], r["to"], r["lr_scale"]) for r in record["rollbacks"]] == [(30, 20, 0.5)]
    assert "loss/d" in record["rollbacks"][0]["problem"]
    # the rates after the rollback are half the configured 1e-3 (the ring preset's), and every logged value is finite
    logged = rows(straight)
    assert [r["step"] for r in logged] == [10, 20, 30, 40, 50, 60]  # the diverged row of step 30 was logged again
    assert all(r["lr/g"] == pytest.approx(1e-3) for r in logged if r["step"] <= 20)
    assert all(r["lr/g"] == pytest.approx(5e-4) and r["lr/d"] == pytest.approx(5e-4) for r in logged if r["step"] > 20)
    assert all(math.isfinite(r["loss/d"]) and math.isfinite(r["loss/g"]) for r in logged)
    assert state["optimizers"]["generator"]["param_groups"][0]["lr"] == pytest.approx(5e-4)
    assert all(torch.isfinite(t).all() for t in state["networks"]["generator"].values())

    # the same run stopped at step 40 (after its rollback) and resumed to 60 ends with the same weights
    split = tmp_path / "split"
    loop_with(split, 40, rollback, InjectNaN(25)).fit()
    resumed = loop_with(split, 60, rollback)
    resumed.load_state_dict(load_checkpoint(split / "checkpoints" / "last.pt"))
    assert resumed.periodic[0].rollbacks[0]["step"] == 30  # the rollback history came back with the checkpoint
    resumed.fit()
    final = load_checkpoint(split / "checkpoints" / "last.pt")
    for name, tensor in state["networks"]["generator"].items():
        assert torch.equal(tensor, final["networks"]["generator"][name]), name
    assert final["optimizers"]["generator"]["param_groups"][0]["lr"] == pytest.approx(5e-4)


def test_rollback_gives_up_after_max_rollbacks_and_writes_a_step_0_checkpoint(tmp_path):
    loop = loop_with(tmp_path, 60, ["trainer.on_divergence=rollback", "trainer.max_rollbacks=1"],
                     InjectNaN(5, always=True))
    with pytest.raises(GantrainError, match=r"diverged again: .* after 1 rollback\(s\) \(trainer.max_rollbacks=1\)"):
        loop.fit()
    # it diverged before the first periodic checkpoint: the rollback went to the step-0 checkpoint written at the start
    assert loop.periodic[1].rollbacks[0]["to"] == 0
    first = load_checkpoint(tmp_path / "checkpoints" / "step_00000000.pt")
    assert first["step"] == 0 and first["periodic"]["divergence"]["rollbacks"] == []  # as written at the start
    # last.pt is that checkpoint with the rollback: a resume goes on at the halved rates, the rollback counted
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["step"] == 0 and last["periodic"]["divergence"]["lr_scale"] == 0.5
    assert [r["to"] for r in last["periodic"]["divergence"]["rollbacks"]] == [0]
    for who in ("generator", "discriminator"):
        assert last["optimizers"][who]["param_groups"][0]["lr"] == pytest.approx(
            0.5 * first["optimizers"][who]["param_groups"][0]["lr"])
        assert torch.equal(next(iter(last["networks"][who].values())), next(iter(first["networks"][who].values())))


def test_exploding_gradient_norm_counts_as_divergence():
    check = DivergenceCheck(10, "stop")
    watched = ("loss/d", "loss/g")
    check.history = {"grad/d": [1.0, 2.0, 1.5]}
    assert check.problem(watched, {"loss/d": 1.0, "grad/d": 1000.0}, 40) is None  # 667x the median: not yet
    problem = check.problem(watched, {"loss/d": 1.0, "grad/d": 2500.0}, 40)
    assert problem == "the gradient norm grad/d exploded to 2.5e+03 by step 40 (median of the earlier logs 1.5)"
    assert "became inf" in check.problem(watched, {"loss/d": 1.0, "grad/g": math.inf}, 40)
    assert check.problem(watched, {"loss/d": math.nan}, 40) == "loss/d became nan by step 40"
    assert DivergenceCheck(10).problem(watched, {"grad/d": 1e9}, 10) is None  # no history yet: nothing to compare with


def test_on_divergence_is_checked_and_may_change_on_resume():
    with pytest.raises(GantrainError, match=r"trainer.on_divergence='retry' is not one of stop, rollback"):
        build(gantrain.compose(SMALL + ["trainer.on_divergence=retry"]), "/nonexistent")
    with pytest.raises(GantrainError, match=r"trainer.max_rollbacks=-1 must be 0 or more"):
        build(gantrain.compose(SMALL + ["trainer.max_rollbacks=-1"]), "/nonexistent")
    saved = {"trainer": {"steps": 10, "on_divergence": "stop"}}
    assert config_differences(saved, {"trainer": {"steps": 10, "on_divergence": "rollback", "max_rollbacks": 5}}) == []
