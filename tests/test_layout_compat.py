"""What the 0.9.0 layout keeps working: the module names and `_target_` paths of earlier versions, the game's own
checkpoint entries under one key each, and every default written once."""
import dataclasses
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import gantrain
from gantrain.checkpoint import CHECKPOINT_KEYS, LEGACY_GAME_KEYS, load_checkpoint
from gantrain.moved import MOVED_MODULES, MOVED_TARGETS, current_target, current_targets

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def _locate(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_old_module_name_imports_as_the_same_module_object():
    for old, today in MOVED_MODULES.items():
        assert importlib.import_module(old) is importlib.import_module(today), old
    from gantrain.losses import NonSaturating  # the form a user's script has
    from gantrain.training.losses import NonSaturating as today

    assert NonSaturating is today
    assert importlib.import_module("gantrain.training.losses").__spec__.name == "gantrain.training.losses"


def test_every_target_earlier_runs_saved_maps_to_todays_class():
    """Every `_target_` in the fixtures of 0.1.0-0.7.0, and every one the configs of 0.8.0 wrote, names today's
    class after mapping, and the config files name exactly those paths."""
    saved = set()
    for path in FIXTURES.rglob("*.yaml"):
        saved |= set(re.findall(r"_target_: (gantrain\.[\w.]+)", path.read_text()))
    assert "gantrain.models.DCGANGenerator" in saved and "gantrain.translation_data.Edges2MNIST" in saved
    today = set()
    for path in (ROOT / "configs").rglob("*.yaml"):
        today |= set(re.findall(r"_target_: (gantrain\.[\w.]+)", path.read_text()))
    for old in saved | set(MOVED_TARGETS):
        new = current_target(old)
        cls = _locate(new)
        assert f"{cls.__module__}.{cls.__qualname__}" == new, old  # today's path is where the class lives
        assert _locate(old) is cls  # and the old path still imports it
        assert new in today or old.endswith("CIFAR10") or old.endswith("FashionMNIST") or old.endswith("Ring") \
            or old.endswith("Grid") or old.endswith("Folder") or "sngan" in old or old.endswith("MNIST"), old
    assert all(t == current_target(t) for t in today)  # the configs already use today's paths
    nested = current_targets({"loss": {"_target_": "gantrain.losses.Hinge"}, "x": [{"_target_": "gantrain.data.Ring"}]})
    assert nested == {"loss": {"_target_": "gantrain.training.losses.Hinge"},
                      "x": [{"_target_": "gantrain.data.mixtures.Ring"}]}


def test_current_target_leaves_what_it_does_not_know():
    assert current_target(None) is None and current_target(3) == 3
    for same in ("gantrain.nets.dcgan.DCGANGenerator", "mypackage.Thing", "Hinge", "gantrain.lossesX.Hinge"):
        assert current_target(same) == same
    assert current_target("gantrain.losses.Hinge") == "gantrain.training.losses.Hinge"
    assert current_target("gantrain.games.gan.GAN") == "gantrain.training.games.gan.GAN"
    assert current_target("gantrain.models.DCGANGenerator") == "gantrain.nets.dcgan.DCGANGenerator"
    # only `_target_` keys are paths: other strings, numbers and a non-string target stay
    node = ["gantrain.losses.Hinge", {"_target_": 5, "b": "gantrain.losses.Hinge", "c": [{"_target_": "gantrain.cli.x"}]}]
    assert current_targets(node) == ["gantrain.losses.Hinge", {"_target_": 5, "b": "gantrain.losses.Hinge",
                                                                "c": [{"_target_": "gantrain.commands.train.x"}]}]
    assert current_targets(7) == 7 and current_targets("gantrain.losses.Hinge") == "gantrain.losses.Hinge"
    key = "".join(["_target", "_"])  # a key read from a file is not the interned literal
    assert current_targets({key: "gantrain.losses.Hinge", "Name": "gantrain.losses.Hinge"}) == {
        "_target_": "gantrain.training.losses.Hinge", "Name": "gantrain.losses.Hinge"}  # "Name" sorts before "_"


def test_the_aliases_install_once_and_only_for_moved_names():
    from gantrain.moved import _AliasFinder, install_aliases

    install_aliases()
    install_aliases()
    finders = [f for f in sys.meta_path if isinstance(f, _AliasFinder)]
    assert len(finders) == 1
    assert finders[0].find_spec("gantrain.training.losses") is None and finders[0].find_spec("json") is None
    spec = finders[0].find_spec("gantrain.losses")
    assert spec.name == "gantrain.losses" and spec.origin == importlib.util.find_spec("gantrain.training.losses").origin


def test_python_m_of_the_old_command_module_still_trains(tmp_path):
    """`torchrun ... -m gantrain.cli` (0.8.0's README) runs today's command."""
    result = subprocess.run([sys.executable, "-m", "gantrain.cli", "--help"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0 and "gantrain" in result.stdout, result.stderr


def _run(tmp_path, *overrides):
    run = tmp_path / "run"
    gantrain.train(gantrain.compose(["trainer.device=cpu", "trainer.log_every=1", *overrides]), run)
    return load_checkpoint(run / "checkpoints" / "last.pt")


def test_a_games_own_state_and_metadata_live_under_one_key(tmp_path):
    state = _run(tmp_path, "dataset=digits", "trainer.steps=2", "trainer.batch_size=8", "augment.policy=color",
                 "augment.ada=true")
    assert set(state["game_state"]) == {"augment"} and "game_meta" not in state
    assert not set(LEGACY_GAME_KEYS) & set(dict.keys(state))  # nothing game-specific at the top
    assert set(dict.keys(state)) <= CHECKPOINT_KEYS
    assert not {"pools", "augment", "translation"} & CHECKPOINT_KEYS  # the checkpoint names no game's key
    assert state["augment"] is state["game_state"]["augment"]  # the 0.8.0 name still reads


def test_a_translation_runs_metadata_lives_under_game_meta(tmp_path):
    state = _run(tmp_path, "model=pix2pix", "dataset=paired_folder", f"dataset.root={_pairs(tmp_path)}",
                 "dataset.image_size=16", "trainer.steps=2", "generator.width=4", "discriminator.width=4",
                 "translation.grid_images=2")
    assert state["game_meta"]["translation"]["kind"] == "pix2pix" and "translation" not in dict.keys(state)
    translator = gantrain.load_translator(tmp_path / "run")
    assert translator.translate(torch.zeros(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def _pairs(tmp_path):
    from PIL import Image

    root = tmp_path / "pairs" / "train"
    root.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (32, 16), (40 * i, 10, 200)).save(root / f"{i}.png")
    return root.parent


def test_legacy_game_entries_are_moved_on_load(tmp_path):
    """A 0.6.0 CycleGAN checkpoint keeps its pools at the top; loaded, they are under game_state."""
    old = torch.load(FIXTURES / "v0_6_0" / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert "pools" in old and "game_state" not in old
    state = load_checkpoint(FIXTURES / "v0_6_0" / "run" / "checkpoints" / "last.pt")
    assert "pools" not in dict.keys(state) and torch.equal(state["game_state"]["pools"]["a.images"],
                                                           old["pools"]["a.images"])
    assert state["game_meta"]["translation"] == old["translation"]
    assert state.get("pools") is state["game_state"]["pools"] and state.get("nothing") is None
    with pytest.raises(KeyError):
        state["nothing"]


@pytest.mark.parametrize("schema, relative, key", [
    ("TrainerConfig", "trainer/default.yaml", None), ("ConditionConfig", "config.yaml", "condition"),
    ("AugmentConfig", "config.yaml", "augment"), ("TranslationConfig", "translation_common.yaml", "translation")])
def test_every_default_is_written_once_in_the_config_files(schema, relative, key):
    """The dataclasses take their defaults from the YAML files (the one place), key for key."""
    from gantrain import config

    cls = getattr(config, schema)
    node = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / relative))
    node = node[key] if key else node
    assert {f.name for f in dataclasses.fields(cls)} == set(node)
    assert dataclasses.asdict(cls()) == node
    source = (ROOT / "gantrain" / "config.py").read_text()
    body = source[source.index(f"class {schema}:"):]
    body = body[:body.index("\n\n\n")]
    assert not re.search(r":\s*\w[\w\[\], ]*\s*=\s*(\"|'|\d|True|False|None)", body), body  # no literal default


def test_the_translation_settings_are_written_in_one_file():
    for model in ("pix2pix", "cyclegan"):
        node = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "model" / f"{model}.yaml"))
        assert node["translation"] == {"kind": model}
        composed = gantrain.compose([f"model={model}"])
        assert set(composed.translation) == {f.name for f in dataclasses.fields(gantrain.config.TranslationConfig)}


def test_a_loaded_checkpoint_saved_again_loads(tmp_path):
    """A loaded checkpoint (a Checkpoint, a dict subclass) written back with atomic_save is a plain dict on disk."""
    from gantrain.checkpoint import Checkpoint, atomic_save

    state = load_checkpoint(FIXTURES / "v0_6_0" / "run" / "checkpoints" / "last.pt")
    assert isinstance(state, Checkpoint)
    atomic_save(state, tmp_path / "again.pt")
    again = load_checkpoint(tmp_path / "again.pt")
    assert torch.equal(again["game_state"]["pools"]["a.images"], state["game_state"]["pools"]["a.images"])
