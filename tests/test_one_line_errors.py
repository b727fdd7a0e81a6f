"""What Hydra reports over many lines (or with a traceback) is one line naming the fix, from the command and
from Python; a bad value in a sweep fails its job alone."""
import json
import re

import pytest

import gantrain
from gantrain.errors import GantrainError

from conftest import run_commands, run_gantrain
from test_hardening import one_line_error

pytestmark = pytest.mark.slow

REFUSED = [
    (["loss=foo"], "loss=foo is not an option of loss: choose one of hinge, lsgan, minimax, nonsaturating, wasserstein, wgan_gp"),
    (["dataset=nope"], "dataset=nope is not an option of dataset: choose one of cifar10, digits,"),
    (["experiment=nope"], "experiment=nope is not an option of experiment: choose one of cgan_digits,"),
    (["experiment=rng"], "did you mean experiment=ring?"),
    (["generator=dcgn"], "did you mean generator=dcgan?"),
    (["model=cyclgan"], "did you mean model=cyclegan?"),
    (["-m", "loss=foo,hinge", "trainer.steps=1"], "loss=foo is not an option of loss"),
    (["-m", "optimizer=choice(adam,adamm)"], "did you mean optimizer=adam?"),
    (["foo"], "'foo' is not an override: give key=value"),
    (["--cfg", "job", "los=hinge"], "unknown key los; did you mean loss?"),
    (["--cfg", "job", "loss=foo"], "loss=foo is not an option of loss"),
    (["hydra.run.dir=runs/ünïcödé"], "quote a value with spaces, non-ASCII letters or special characters, "
                                     "e.g. \"hydra.run.dir='runs/ünïcödé'\""),
    (["trainer.steps=[1"], "cannot read trainer.steps=[1"),
]


def test_command_line_mistakes_are_one_line(tmp_path):
    quoted = tmp_path / "quoted"  # the form the non-ASCII message suggests is accepted
    quoted.mkdir()
    results = run_commands([("gantrain", *args) for args, _ in REFUSED], cwd=tmp_path)
    accepted = run_gantrain("hydra.run.dir='runs/ünïcödé'", "--cfg", "job", cwd=quoted)
    for (args, message), result in zip(REFUSED, results):
        assert message in one_line_error(result), args
    assert list(tmp_path.iterdir()) == [quoted]  # nothing written: no outputs/, no multirun/
    assert accepted.returncode == 0, accepted.stderr


@pytest.mark.parametrize("overrides,message", [
    (["los=hinge"], "unknown key los; did you mean loss?"),
    (["loss=foo"], "loss=foo is not an option of loss: choose one of hinge"),
    (["trainer.stepz=3"], "Could not override 'trainer.stepz'"),
    (["foo"], "'foo' is not an override"),
    (["hydra.run.dir=x"], "hydra.run.dir=x is a setting of the gantrain command, not of the config; from Python, give "
                          "the run folder to gantrain.train(cfg, run_dir)"),  # it had no effect
    (["loss=hinge", "hydra/launcher=joblib"], "hydra/launcher=joblib is a setting of the gantrain command"),
])
def test_compose_raises_gantrain_errors_in_one_line(overrides, message):
    with pytest.raises(GantrainError) as info:
        gantrain.compose(overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_bad_value_in_a_sweep_fails_its_job_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_gantrain("-m", "dataset=digits", "trainer.steps=3,-1,abc", "trainer.device=cpu",
                          "generator.base_channels=4", "discriminator.base_channels=4", "trainer.batch_size=16",
                          f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    status = {job: json.loads((sweep / job / "status.json").read_text()) for job in ("0", "1", "2")}
    assert status["0"]["status"] == "finished" and status["0"]["step"] == 3
    assert status["1"]["status"] == "failed" and "trainer.steps=-1 must be a positive integer" in status["1"]["reason"]
    assert status["2"]["status"] == "failed" and "could not be converted to Integer" in status["2"]["reason"]
    summary = (sweep / "summary.md").read_text()
    assert summary.count("| failed |") == 2 and "| finished |" in summary


def test_a_setting_that_is_no_finite_number_is_refused_whatever_its_key(tmp_path, data_root):
    from gantrain.training.run import _check_finite

    _check_finite({"a": {"b": 1.5, "c": [1.0, 2]}, "d": "nan", "e": None})  # numbers, and a string, pass
    _check_finite({"optimizer": {"lr": float("nan")}}, skip=["optimizer"])  # left to the group's own check
    for config, shown in (({"translation": {"identity_weight": float("nan")}}, "translation.identity_weight=nan"),
                          ({"s": {"ema_kimg": float("inf")}}, "s.ema_kimg=inf"),
                          ({"generator": {"hidden": [8.0, float("-inf")]}}, "generator.hidden=[8.0, -inf]"),
                          ({"x": [[1.0, float("nan")]]}, "x=[[1.0, nan]]")):
        with pytest.raises(GantrainError) as info:
            _check_finite(config)
        assert str(info.value).startswith(f"{shown} is not a finite number: give a number (0 turns a weight")
    # through training: a NaN weight was read as off (nan > 0 is false)
    tiny = ["experiment=stylegan2_mnist", f"dataset.root={data_root}", "dataset.subset=16", "dataset.image_size=16",
            "generator.channel_base=64", "generator.channel_max=8", "discriminator.channel_base=64",
            "discriminator.channel_max=8", "generator.latent_dim=8", "generator.w_dim=8", "trainer.batch_size=4",
            "trainer.steps=1", "trainer.device=cpu"]
    for setting in ("stylegan2.pl_weight=nan", "stylegan2.r1_gamma=nan"):  # (ema_kimg=nan: its own check says it)
        with pytest.raises(GantrainError, match=f"^{re.escape(setting)} is not a finite number"):
            gantrain.train(gantrain.compose([*tiny, setting]), tmp_path / "run")
        assert not (tmp_path / "run").exists()
    # a resume may change some settings (SAFE_RESUME_KEYS): a non-finite one of those is refused too
    digits = ["trainer.steps=1", "trainer.device=cpu", "generator.base_channels=4", "discriminator.base_channels=4",
              "trainer.batch_size=8", "trainer.eval_every=0"]
    run = gantrain.train(gantrain.compose(digits), tmp_path / "digits")
    before = (run / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(GantrainError, match=r"^condition\.grid_classes=nan is not a finite number"):
        gantrain.train(gantrain.compose([*digits, "trainer.steps=2", f"resume={run}", "condition.grid_classes=nan"]), run)
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
