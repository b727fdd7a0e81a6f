"""Runs written by gantrain 0.1.0 keep resuming and loading (fixture: tests/fixtures/v0_1_0/run)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gantrain
from gantrain import load_generator
from gantrain.checkpoint import load_checkpoint

from conftest import run_gantrain
from pins import assert_matches_pin
from test_pinned import named_weights

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "v0_1_0"

#: the `gantrain` command, recording mean(sign(D(real))) at each of ADA's observations into $GANTRAIN_OBSERVED
RECORDING_GANTRAIN = """
import json, os, torch
import gantrain.augment
observed, observe = [], gantrain.augment.Augment.observe
def recording(self, real_logits):
    observed.append(float(torch.sign(real_logits.detach().float()).mean()))
    observe(self, real_logits)
gantrain.augment.Augment.observe = recording
from gantrain.cli import main
try:
    main()
finally:
    with open(os.environ["GANTRAIN_OBSERVED"], "w") as f:
        json.dump(observed, f)
"""


def test_0_1_0_run_resumes_exactly_as_0_1_0_did(tmp_path, default_threads):
    run = tmp_path / "old run"
    shutil.copytree(FIXTURES / "run", run)
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    result = run_gantrain(f"resume={run}", "trainer.steps=30", cwd=tmp_path, env=default_threads)
    assert result.returncode == 0, result.stderr
    want = torch.load(FIXTURES / "resumed_30.pt", weights_only=True)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == want["step"] == 30
    assert_matches_pin(named_weights(state), want["weights"], FIXTURES)
    assert (run / "checkpoints" / "step_00000020.pt").read_bytes() == before["step_00000020.pt"]


def test_0_1_0_preset_run_resumes_with_the_config_it_was_trained_with(tmp_path, default_threads):
    """A run 0.1.0's command started from experiment=ring, a preset changed since (0.6.0's ring adds packing, R1, a
    linear decay and an EMA): it resumes with its saved config, reaching the weights 0.1.0 reached, and only the
    command line's own changes are checked."""
    fixture = FIXTURES.parent / "v0_1_0_ring"
    run = tmp_path / "ring run"
    shutil.copytree(fixture / "run", run)
    refused = run_gantrain(f"resume={run}", "trainer.steps=30", "loss.r1_gamma=0.1", cwd=tmp_path, env=default_threads)
    assert refused.returncode == 2 and "loss.r1_gamma: 0.0 -> 0.1" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    result = run_gantrain(f"resume={run}", "trainer.steps=30", cwd=tmp_path, env=default_threads)
    assert result.returncode == 0, result.stderr
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 30 and state["config"]["trainer"]["steps"] == 30
    assert state["config"]["optimizer"]["lr_schedule"] == "constant" and state["config"]["trainer"]["ema_decay"] == 0.0
    assert state["config"]["loss"]["r1_gamma"] == 0.0 and "pack" not in state["config"]["discriminator"]
    want = torch.load(fixture / "resumed_30.pt", weights_only=True)
    assert_matches_pin(named_weights(state), want["weights"], fixture)
    again = run_gantrain(f"resume={run}", "trainer.steps=40", "experiment=ring", cwd=tmp_path, env=default_threads)
    assert again.returncode == 0, again.stderr  # naming the run's own preset again changes nothing
    assert load_checkpoint(run / "checkpoints" / "last.pt")["config"]["optimizer"]["lr_schedule"] == "constant"


def test_0_1_0_generator_loads_from_folder_and_file():
    want = load_checkpoint(FIXTURES / "run" / "checkpoints" / "step_00000020.pt")
    g = load_generator(FIXTURES / "run")
    assert want["format_version"] == 2 and want["versions"]["gantrain"] == "0.1.0"  # migrated on load
    for key, value in want["ema"]["generator"].items():
        assert torch.equal(g.state_dict()[key], value)
    raw = load_generator(FIXTURES / "run" / "checkpoints" / "step_00000010.pt", ema=False)
    assert not raw.training
    x = raw.sample(4, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 8, 8) and float(x.abs().max()) <= 1.0


def test_0_4_0_run_resumes_with_the_keys_added_since(tmp_path):
    """0.4.0 configs have no augment, trainer.on_divergence / max_rollbacks / diagnose or dataset.subset: the run
    resumes with them at the values that train as 0.4.0 did, and its generator loads."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURES.parent / "v0_4_0" / "run", run)
    old = load_checkpoint(run / "checkpoints" / "last.pt")
    assert old["versions"]["gantrain"] == "0.4.0" and "augment" not in old["config"]
    result = run_gantrain(f"resume={run}", "trainer.steps=20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 20 and state["config"]["augment"]["policy"] is None
    assert state["config"]["dataset"]["subset"] is None and state["config"]["trainer"]["on_divergence"] == "stop"
    assert state["schedules"]["generator"]["last_epoch"] == 20  # the linear decay went on from where it was
    g = load_generator(run)
    assert g.sample(2).shape == (2, 1, 8, 8)


def test_0_5_0_run_resumes_with_its_augmentation_and_diagnosis_state(tmp_path):
    """0.5.0 checkpoints keep ADA's p and the diagnosis' state without the coverage counter added since: the run
    resumes from them and the counter starts at zero."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURES.parent / "v0_5_0" / "run", run)
    old = load_checkpoint(run / "checkpoints" / "last.pt")
    assert old["versions"]["gantrain"] == "0.5.0" and "coverage_fallen" not in old["periodic"]["diagnosis"]
    p_then = float(old["augment"]["p"])
    # the real command, with ADA's observations recorded: mean(sign(D(real))) of every step
    observed = tmp_path / "observed.json"
    script = tmp_path / "recording_gantrain.py"
    script.write_text(RECORDING_GANTRAIN)
    result = subprocess.run([sys.executable, str(script), f"resume={run}", "trainer.steps=20"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "GANTRAIN_OBSERVED": str(observed)})
    assert result.returncode == 0, result.stderr
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 20 and state["versions"]["gantrain"] == gantrain.__version__
    assert state["config"]["augment"]["ada"] is True and state["config"]["trainer"]["on_divergence"] == "rollback"
    assert state["periodic"]["diagnosis"]["coverage_fallen"] == {}
    # p was restored, then moved by ADA's rule: every ada_interval (2) observations by sign(r_t - ada_target) x
    # batch_size x ada_interval / (ada_kimg x 1000) = 64 x 2 / 100 = 1.28, clamped to [0, 1]
    augment = old["config"]["augment"]
    assert (augment["ada_target"], augment["ada_interval"], augment["ada_kimg"]) == (0.6, 2, 0.1)
    assert p_then == 1.0 and int(old["augment"]["count"]) == 0 and float(old["augment"]["accumulator"]) == 0.0
    signs = json.loads(observed.read_text())
    assert len(signs) == 10  # steps 11 to 20, one observation each
    p = p_then
    for first, second in zip(signs[::2], signs[1::2]):
        r_t = (first + second) / 2
        p = min(1.0, max(0.0, p + (r_t > 0.6) * 1.28 - (r_t < 0.6) * 1.28))
    assert float(state["augment"]["p"]) == pytest.approx(p, abs=1e-6)
    assert int(state["augment"]["count"]) == 0 and float(state["augment"]["accumulator"]) == 0.0
    assert state["schedules"]["generator"]["last_epoch"] == 20
    assert load_generator(run).sample(2).shape == (2, 1, 8, 8)


def test_0_6_0_cyclegan_run_resumes_and_translates(tmp_path):
    """A 0.6.0 CycleGAN checkpoint (history pools, no game_ranks) resumes under this version, its pools and
    its schedule kept, and its translator loads."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURES.parent / "v0_6_0" / "run", run)
    old = load_checkpoint(run / "checkpoints" / "last.pt")
    assert old["versions"]["gantrain"] == "0.6.0" and old["game"] == "cyclegan" and "game_ranks" not in old
    assert int(old["pools"]["a.count"]) == 3
    result = run_gantrain(f"resume={run}", f"dataset.root={FIXTURES.parent / 'v0_6_0' / 'images'}", "trainer.steps=8",
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 8 and state["versions"]["gantrain"] == gantrain.__version__
    assert state["config"]["translation"]["cycle_weight_b"] is None  # the key added since: the same weight as before
    assert int(state["pools"]["a.count"]) == int(state["pools"]["b.count"]) == 3
    assert not torch.equal(state["pools"]["a.images"], old["pools"]["a.images"])  # the pool kept swapping
    assert state["schedules"]["generator"]["last_epoch"] == 8
    translator = gantrain.load_translator(run)
    assert translator.translate(torch.zeros(1, 3, 16, 16), "BtoA").shape == (1, 3, 16, 16)


def test_0_7_0_runs_resume_with_the_keys_added_to_their_groups_since(tmp_path, data_root):
    """A 0.7.0 cgan_digits run (no generator.label_input; the preset changed since) and a 0.7.0 pix2pix edges2mnist
    run (no dataset.edge_styles) resume under today's command with what they trained: batch norm alone, Sobel
    outlines."""
    fixtures = FIXTURES.parent / "v0_7_0"
    for name, extra in (("cgan_digits", ["trainer.steps=12"]),
                        ("pix2pix", ["trainer.steps=8", f"dataset.root={data_root}"])):
        run = tmp_path / name
        shutil.copytree(fixtures / name, run)
        old = load_checkpoint(run / "checkpoints" / "last.pt")
        assert old["versions"]["gantrain"] == "0.7.0"
        result = run_gantrain(f"resume={run}", *extra, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        state = load_checkpoint(run / "checkpoints" / "last.pt")
        assert state["step"] == int(extra[0].split("=")[1]) and state["versions"]["gantrain"] == gantrain.__version__
        if name == "cgan_digits":
            assert state["config"]["generator"]["label_input"] is False  # as it trained: no embedding beside z
            assert state["config"]["trainer"]["steps"] == 12 and state["config"]["discriminator"]["base_channels"] == 8
            assert "embed" not in {k.split(".")[0] for k in state["networks"]["generator"]}
            assert load_generator(run).sample(3, labels=[1, 2, 3]).shape == (3, 1, 8, 8)
        else:
            assert state["config"]["dataset"]["edge_styles"] == "sobel"  # the outlines it was trained on
            assert gantrain.load_translator(run).translate(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 32, 32)


def test_an_image_folder_run_of_0_14_reads_its_hidden_files_and_stored_pixels_on_resume(tmp_path):
    """Runs before 0.15.0 read hidden files (a notebook's .ipynb_checkpoints) and photos as stored; their saved
    config has neither dataset.skip_hidden nor dataset.upright, and they resume reading the folder as they did."""
    from PIL import Image

    for name in ("cats", "dogs", "cats/.ipynb_checkpoints"):
        (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.new("RGB", (6, 6), (40 * i, 0, 0)).save(tmp_path / "data" / name / f"{i}.png")
    run = tmp_path / "run"
    common = ["dataset=image_folder", f"dataset.root={tmp_path / 'data'}", "dataset.image_size=8", "conditional=true",
              "trainer.batch_size=3", "generator.base_channels=4", "discriminator.base_channels=4",
              "trainer.sample_every=100"]
    gantrain.train(gantrain.compose([*common, "trainer.steps=1", "dataset.skip_hidden=false", "dataset.upright=false"]),
                   run)
    path = run / "checkpoints" / "last.pt"
    state = dict(load_checkpoint(path))
    assert state["data_state"]["size"] == 9  # the hidden folder's images among the data, as 0.14.0 read them
    for key in ("skip_hidden", "upright"):  # the config as 0.14.0 saved it
        del state["config"]["dataset"][key]
    torch.save(state, path)
    step = load_checkpoint(path)["step"]
    resumed = run_gantrain(f"resume={run}", f"trainer.steps={step + 1}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = load_checkpoint(path)
    assert again["step"] == step + 1 and again["config"]["dataset"]["skip_hidden"] is False
    assert again["config"]["dataset"]["upright"] is False
    fresh = gantrain.compose([*common, "trainer.steps=1"])  # a new run: neither
    assert fresh.dataset.skip_hidden is True and fresh.dataset.upright is True
