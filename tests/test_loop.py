"""The loop, its periodic work and named statistics, through their public interfaces."""
import json
import math
import random

import numpy as np
import pytest
import torch

import gantrain
from conftest import FAST, run_gantrain
from gantrain.training.build import build
from gantrain.checkpoint import load_checkpoint
from gantrain.training.loop import set_rng_state
from gantrain.training.stats import Stats

SMALL = ["dataset=digits", "trainer.device=cpu", "generator.base_channels=8", "discriminator.base_channels=8",
         "trainer.batch_size=32", "trainer.progress=false"]


def test_stats_means_counts_and_state():
    stats = Stats(torch.device("cpu"), capacity=4)
    for value in (1.0, 2.0, 6.0):
        stats.add("loss/d", torch.tensor(value))
    stats.add("loss/g", torch.tensor(-1.0))
    assert stats.read() == {"loss/d": 3.0, "loss/g": -1.0}
    state = stats.state_dict()
    other = Stats(torch.device("cpu"), capacity=4)
    other.add("loss/g", torch.tensor(5.0))  # a different slot order is fine: slots are by name
    other.load_state_dict(state)
    assert other.read() == {"loss/g": -1.0, "loss/d": 3.0}
    stats.add("a", torch.tensor(0.0))
    stats.add("b", torch.tensor(0.0))
    with pytest.raises(RuntimeError, match="more than 4"):
        stats.add("c", torch.tensor(0.0))
    stats.reset()
    assert all(math.isnan(v) for v in stats.read().values())
    stats.add("loss/d", torch.tensor(float("inf")))
    assert float(stats.all_finite()) == 0.0


def test_save_and_evaluate_work_before_fit(tmp_path):
    loop = build(gantrain.compose(["experiment=grid", "generator.hidden=[16]", "discriminator.hidden=[16]",
                                   "trainer.device=cpu", "trainer.eval_every=5", "trainer.steps=5"]), tmp_path)
    path = loop.save()
    assert load_checkpoint(path)["step"] == 0
    evaluation = next(w for w in loop.periodic if type(w).__name__ == "Evaluation")
    results = evaluation(loop)
    loop.close()
    assert set(results) == {"modes", "high_quality_pct", "reverse_kl"}
    assert (tmp_path / "checkpoints" / "best.pt").is_file()  # best_metric=modes of the preset
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert row["step"] == 0 and row["eval/modes"] == results["modes"] and "floor/modes" in row


def test_rng_states_are_restored_not_just_stored(tmp_path):
    loop = build(gantrain.compose(SMALL), tmp_path)
    loop.run_step()
    random.random(), np.random.rand(3), torch.rand(3)  # training code may draw from any of them
    path = loop.save()
    state = loop.state_dict()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    set_rng_state(state["rng"], torch.device("cpu"))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
    other = build(gantrain.compose(SMALL), tmp_path / "other")  # seeds every RNG afresh
    assert random.random() != expected[0]
    other = build(gantrain.compose(SMALL), tmp_path / "other")
    other.load_state_dict(load_checkpoint(path))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_hinge_logs_no_wasserstein_estimate(tmp_path):
    gantrain.train(gantrain.compose(SMALL + ["loss=hinge", "trainer.steps=4", "trainer.log_every=2"]), tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert all("loss/wasserstein" not in r and "loss/penalty" not in r and math.isfinite(r["loss/d"]) for r in rows)


def test_empty_metrics_list_turns_evaluation_off(tmp_path):
    result = run_gantrain("experiment=grid", "trainer.steps=4", "trainer.eval_every=2", "trainer.metrics=[]",
                          "trainer.best_metric=null", "generator.hidden=[8]", "discriminator.hidden=[8]", *FAST,
                          f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "evaluation during training is off" in result.stdout + result.stderr
    rows = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "eval/" not in rows and '"loss/d"' in rows
    bad = run_gantrain("experiment=grid", "trainer.eval_every=2", "trainer.best_metric=fid", "trainer.device=cpu",
                       f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path)
    assert bad.returncode == 2 and "image metrics asked for on 2D data" not in bad.stderr
    assert "best_metric=fid is not among the evaluated metrics" in bad.stderr


def test_python_api_run_resumes_from_the_command_line(tmp_path):
    run = tmp_path / "api run"
    gantrain.train(gantrain.compose(SMALL + ["loss=hinge", "trainer.steps=4", "trainer.log_every=2",
                                             "trainer.ckpt_every=2", "seed=11"]), run)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["overrides"] is None
    more = run_gantrain(f"resume={run}", "trainer.steps=6", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 6 and state["config"]["loss"]["_target_"] == "gantrain.training.losses.Hinge"
    assert state["config"]["seed"] == 11 and state["config"]["generator"]["base_channels"] == 8
    refused = run_gantrain(f"resume={run}", "trainer.steps=8", "loss=wasserstein", cwd=tmp_path)
    assert refused.returncode == 2 and "cannot resume" in refused.stderr and "loss._target_" in refused.stderr
    refused = run_gantrain(f"resume={run}", "trainer.steps=8", "trainer.batch_size=16", cwd=tmp_path)
    assert refused.returncode == 2 and "trainer.batch_size" in refused.stderr


class Scripted:
    """An evaluator that returns the next of the given values."""

    def __init__(self, name, values, higher):
        self.name, self.values, self.floor, self.higher_is_better = name, list(values), {}, {name: higher}

    def __call__(self, network):
        return {self.name: self.values.pop(0)}


@pytest.mark.parametrize("higher,values,best_at", [(True, [3, 5, 5, 4], 2), (False, [3, 5, 2, 2], 3)])
def test_best_checkpoint_follows_the_metric_direction_and_keeps_the_first_best(higher, values, best_at, tmp_path):
    from gantrain.training.periodic import Evaluation

    loop = build(gantrain.compose(SMALL), tmp_path)
    evaluation = Evaluation(1, Scripted("m", values, higher), best_metric="m")
    for step in range(1, 5):
        loop.step = step
        evaluation(loop)
    loop.close()
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["step"] == best_at and evaluation.best == {"m": values[best_at - 1]}


def test_progress_bar_shows_steps_when_the_terminal_reports_zero_columns(tmp_path):
    """The real command on a pseudo-terminal whose size is 0 columns (as some CI consoles report)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios
    from pathlib import Path

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 0, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("gantrain")), *SMALL, "trainer.steps=12",
                             "trainer.progress=true", "trainer.log_every=4", f"hydra.run.dir={tmp_path / 'run'}"],
                            stdout=slave, stderr=slave, cwd=tmp_path, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the command closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0
    out = b"".join(chunks).decode(errors="replace")
    assert "12/12" in out
