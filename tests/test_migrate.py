"""The format-1 migration (gantrain 0.1.0 checkpoints) on hand-made dicts; test_compat.py and test_pinned.py
run real 0.1.0 files end to end."""
import copy
from pathlib import Path

import pytest
import torch

from gantrain.checkpoint import FORMAT_VERSION, migrate, migrate_config_v1
from gantrain.errors import GantrainError

PATH = Path("old.pt")


def v1_state(penalty: float = 10.0, n_critic: int = 5, ema: bool = True, schedules: bool = True) -> dict:
    """What gantrain 0.1.0 wrote, with distinct values everywhere a mix-up would show."""
    return {
        "format": "gantrain-checkpoint", "format_version": 1, "step": 3, "overrides": ["loss=wgan_gp"],
        "versions": {"gantrain": "0.1.0"}, "data_shape": [1, 8, 8], "data_kind": "image",
        "config": {"trainer": {"n_critic": n_critic}, "loss": {"gradient_penalty": penalty, "r1_gamma": 0.0},
                   "discriminator": {"sigmoid": False, "norm": "none"},
                   "dataset": {"_target_": "gantrain.data.Digits", "root": "data", "image_size": 8}},
        "generator": {"w": torch.tensor([1.0])}, "discriminator": {"w": torch.tensor([2.0])},
        "generator_ema": {"w": torch.tensor([3.0])} if ema else None,
        "optimizer_g": {"lr": "g"}, "optimizer_d": {"lr": "d"}, "scaler": None,
        "scheduler_g": {"last": "g"} if schedules else None, "scheduler_d": {"last": "d"} if schedules else None,
        "data_state": {"epoch": 1, "pos": 64}, "rng": {"torch": torch.tensor([7])}, "rng_ranks": [{"a": 1}, {"b": 2}],
        "world_size": 2,
        "stats": {"sums": torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0]), "steps": 3},
        "metrics": {"best": {"fid_classifier": 12.5}},
    }


def test_a_format_1_checkpoint_becomes_today_s_format():
    old = v1_state()
    kept = copy.deepcopy(old)
    new = migrate(old, PATH)
    assert new["format_version"] == FORMAT_VERSION and new["game"] == "gan"
    assert new["networks"] == {"generator": old["generator"], "discriminator": old["discriminator"]}
    assert new["ema"] == {"generator": old["generator_ema"]}
    assert new["optimizers"] == {"generator": {"lr": "g"}, "discriminator": {"lr": "d"}}
    assert new["schedules"] == {"generator": {"last": "g"}, "discriminator": {"last": "d"}}
    # D's statistics were added n_critic (5) times a step, G's once; 3 steps
    assert new["stats"]["names"] == ["loss/d", "d/real", "d/fake", "loss/penalty", "loss/g"]
    assert torch.equal(new["stats"]["sums"], torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0]))
    assert torch.equal(new["stats"]["counts"], torch.tensor([15.0, 15.0, 15.0, 15.0, 3.0])) and new["stats"]["steps"] == 3
    assert new["periodic"] == {"evaluation": {"best": {"fid_classifier": 12.5}}}
    for key in ("format", "step", "overrides", "versions", "data_shape", "data_kind", "data_state", "rng",
                "world_size", "rng_ranks"):
        assert new[key] is old[key], key
    assert "root" not in new["config"]["dataset"] and "sigmoid" not in new["config"]["discriminator"]
    assert not {"generator", "optimizer_g", "scaler", "metrics", "generator_ema"} & set(new)
    assert old["config"] == kept["config"] and torch.equal(old["stats"]["sums"], kept["stats"]["sums"])  # input intact


def test_format_1_without_penalty_ema_or_schedules():
    new = migrate(v1_state(penalty=0.0, n_critic=1, ema=False, schedules=False), PATH)
    assert new["stats"]["names"] == ["loss/d", "d/real", "d/fake", "loss/g"]  # the unused penalty slot is dropped
    assert torch.equal(new["stats"]["sums"], torch.tensor([10.0, 20.0, 30.0, 50.0]))
    assert torch.equal(new["stats"]["counts"], torch.tensor([3.0, 3.0, 3.0, 3.0]))
    assert new["ema"] == {} and new["schedules"] == {}
    r1 = v1_state(penalty=0.0, n_critic=1)
    r1["config"]["loss"]["r1_gamma"] = 1.0
    assert "loss/penalty" in migrate(r1, PATH)["stats"]["names"]
    small = v1_state(penalty=0.5, n_critic=1)  # any positive weight, also below 1
    assert "loss/penalty" in migrate(small, PATH)["stats"]["names"]
    single = v1_state()
    del single["rng_ranks"], single["metrics"]
    new = migrate(single, PATH)
    assert "rng_ranks" not in new and new["periodic"] == {"evaluation": {"best": {}}}


@pytest.mark.parametrize("missing", ["optimizer_d", "generator", "stats", "config"])
def test_an_incomplete_format_1_checkpoint_is_named(missing):
    old = v1_state()
    del old[missing]
    with pytest.raises(GantrainError, match=rf"checkpoint old.pt \(format 1\) is incomplete \(KeyError: '{missing}'\)"):
        migrate(old, PATH)


def test_versions_and_entries_are_checked():
    for version, message in ((0, "unknown format version 0"), ("1", "unknown format version '1'"),
                             (None, "unknown format version None"),
                             (FORMAT_VERSION + 1, f"format version {FORMAT_VERSION + 1}, newer than this gantrain")):
        with pytest.raises(GantrainError, match=message):
            migrate({**v1_state(), "format_version": version}, PATH)
    with pytest.raises(GantrainError, match=r"unexpected entries \['extra'\]"):
        migrate({**v1_state(), "extra": 1}, PATH)
    today = {"format": "gantrain-checkpoint", "format_version": FORMAT_VERSION, "step": 1, "networks": {}}
    assert migrate(today, PATH) is today  # today's format passes through
    with pytest.raises(GantrainError, match=r"unexpected entries \['generator'\]"):  # a format-1 key in format 2
        migrate({**today, "generator": {}}, PATH)


def test_config_of_0_1_0():
    with pytest.raises(GantrainError, match="discriminator.sigmoid=true"):
        migrate_config_v1({"discriminator": {"sigmoid": True}})
    folder = {"dataset": {"_target_": "gantrain.data.ImageFolder", "root": "imgs"}}
    assert migrate_config_v1(folder)["dataset"] == {"_target_": "gantrain.data.ImageFolder", "root": "imgs",
                                                    "skip_bad_images": True}
    assert "skip_bad_images" not in folder["dataset"]  # a copy is changed, not the input
    strict = {"dataset": {"_target_": "gantrain.data.ImageFolder", "skip_bad_images": False}}
    assert migrate_config_v1(strict)["dataset"]["skip_bad_images"] is False
    mnist = {"dataset": {"_target_": "gantrain.data.MNIST", "root": "data"}, "discriminator": {"norm": "batch"}}
    assert migrate_config_v1(mnist) == mnist  # MNIST keeps its root; nothing else changes
    cifar = {"dataset": {"_target_": "gantrain.data.CIFAR10", "root": "data"}}
    assert migrate_config_v1(cifar) == cifar  # only Digits loses its root, only ImageFolder gains a key
