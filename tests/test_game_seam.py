"""A new kind of training is a file and a GAMES line: a toy game with networks named `encoder` and `critic`
trains, logs its own statistics, is guarded against divergence, checkpoints and resumes exactly."""
import json

import pytest
import torch

import gantrain
from gantrain.checkpoint import load_checkpoint
from gantrain.errors import GantrainError
from gantrain.training.games import GAMES

import toy_game

TOY = ["game=toy", "dataset=ring", "trainer.device=cpu", "trainer.batch_size=32", "trainer.log_every=2",
       "trainer.sample_every=100", "trainer.ckpt_every=3", "trainer.eval_every=0", "trainer.best_metric=null",
       "trainer.progress=false", "trainer.diagnose=false", "optimizer.lr_schedule=linear", "seed=4"]


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(GAMES, "toy", "toy_game:ToyGame")  # the one line a new game adds


def weights(run):
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    return state, {f"{n}.{k}": v for n, net in state["networks"].items() for k, v in net.items()}


def test_a_toy_game_trains_logs_checkpoints_and_resumes_exactly(toy, tmp_path):
    straight = gantrain.train(gantrain.compose(TOY + ["trainer.steps=6"]), tmp_path / "straight")
    state, final = weights(straight)
    assert state["game"] == "toy" and state["step"] == 6 and set(state["networks"]) == {"encoder", "critic"}
    logged = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    scalars = next(r for r in logged if "loss/critic" in r)
    assert {"grad/encoder", "grad/critic", "lr/encoder", "lr/critic", "loss/encoder"} <= set(scalars)
    assert scalars["lr/critic"] == pytest.approx(2e-4 * (1 - 2 / 6))  # the linear decay, stepped twice

    # a run stopped at step 3 and resumed to 6 (a constant rate: a shorter run's linear decay would end at 3)
    constant = [o for o in TOY if not o.startswith("optimizer.")]
    straight = gantrain.train(gantrain.compose(constant + ["trainer.steps=6"]), tmp_path / "straight_constant")
    _, final = weights(straight)
    half = gantrain.train(gantrain.compose(constant + ["trainer.steps=3"]), tmp_path / "resumed")
    gantrain.train(gantrain.compose(constant + ["trainer.steps=6", f"resume={half}"]), half)
    _, resumed = weights(half)
    assert resumed.keys() == final.keys()
    assert all(torch.equal(resumed[k], final[k]) for k in final)


def test_the_divergence_guard_watches_the_toy_games_own_gradients(toy, tmp_path, monkeypatch):
    real_update = toy_game.ToyGame.update

    def exploding(self, network, loss):
        real_update(self, network, loss * (float("inf") if network == "encoder" else 1.0))

    monkeypatch.setattr(toy_game.ToyGame, "update", exploding)
    with pytest.raises(GantrainError, match="grad/encoder|loss/encoder"):
        gantrain.train(gantrain.compose(TOY + ["trainer.steps=4"]), tmp_path / "run")


def test_an_unknown_game_is_one_line(tmp_path):
    with pytest.raises(GantrainError, match="game=nope is not a game; valid: gan, cgan, pix2pix, cyclegan"):
        gantrain.train(gantrain.compose(["game=nope", "trainer.device=cpu"]), tmp_path / "run")
