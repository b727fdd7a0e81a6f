"""The same command and seed give the weights gantrain 0.1.0 gave (tests/fixtures/make_v0_1_0.py made them)."""
from pathlib import Path

import pytest
import torch

import gantrain
from gantrain.checkpoint import load_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "v0_1_0"
PINNED = torch.load(FIXTURES / "pinned.pt", weights_only=True)


def named_weights(state: dict) -> dict:
    """A checkpoint's weights under 0.1.0's names (generator, discriminator, generator_ema)."""
    out = {"generator": state["networks"]["generator"], "discriminator": state["networks"]["discriminator"]}
    if "generator" in state["ema"]:
        out["generator_ema"] = state["ema"]["generator"]
    return out


def assert_weights_equal(got: dict, want: dict, exact: bool) -> None:
    assert set(got) == set(want)
    for net in want:
        assert list(got[net]) == list(want[net]), net
        for key, value in want[net].items():
            if exact:
                assert torch.equal(got[net][key], value), f"{net}.{key} differs from 0.1.0's"
            else:  # another torch build may round differently; the same training still lands close
                torch.testing.assert_close(got[net][key], value, rtol=1e-3, atol=1e-4, msg=f"{net}.{key}")


#: what a preset set in 0.1.0 that it sets differently today (the pinned command trains what it trained then)
PRESETS_THEN = {"experiment=grid": ["trainer.ema_decay=0.0",  # 0.5.0's grid keeps an EMA of G
                                    "loss.r1_gamma=0.0"]}  # and 0.6.0's adds R1 to whichever loss is chosen


#: what 0.1.0 did for every run that today's defaults do otherwise
ALWAYS_THEN = ["optimizer.kernel=foreach"]  # 0.7.0 fuses Adam's update on the CPU too


@pytest.mark.parametrize("name", sorted(PINNED["configs"]))
def test_training_is_bit_identical_to_0_1_0(name, tmp_path, default_threads):
    pinned = PINNED["configs"][name]
    then = [o for preset in pinned["overrides"] for o in PRESETS_THEN.get(preset, [])] + ALWAYS_THEN
    gantrain.train(gantrain.compose(pinned["overrides"] + then), tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    got = named_weights(state)
    assert_weights_equal(got, pinned["weights"], exact=str(torch.__version__) == PINNED["torch"])
