"""The same command and seed give the weights gantrain 0.1.0 gave (tests/fixtures/make_v0_1_0.py made them)."""
from pathlib import Path

import pytest
import torch

import gantrain
from gantrain.checkpoint import load_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "v0_1_0"
PINNED = torch.load(FIXTURES / "pinned.pt", weights_only=True)


def assert_weights_equal(got: dict, want: dict, exact: bool) -> None:
    assert set(got) == set(want)
    for net in want:
        assert list(got[net]) == list(want[net]), net
        for key, value in want[net].items():
            if exact:
                assert torch.equal(got[net][key], value), f"{net}.{key} differs from 0.1.0's"
            else:  # another torch build may round differently; the same training still lands close
                torch.testing.assert_close(got[net][key], value, rtol=1e-3, atol=1e-4, msg=f"{net}.{key}")


@pytest.mark.parametrize("name", sorted(PINNED["configs"]))
def test_training_is_bit_identical_to_0_1_0(name, tmp_path):
    pinned = PINNED["configs"][name]
    gantrain.train(gantrain.compose(pinned["overrides"]), tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    got = {k: state[k] for k in pinned["weights"]}
    assert_weights_equal(got, pinned["weights"], exact=str(torch.__version__) == PINNED["torch"])
