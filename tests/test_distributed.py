"""Data-parallel training under torchrun: two CPU processes (Gloo) on one machine."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gantrain.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gantrain.cli",
               "trainer.device=cpu", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_two_processes_train_shard_the_data_and_resume_exactly(tmp_path):
    common = ["loss=wgan_gp", "trainer.batch_size=32", "trainer.log_every=2", "trainer.ckpt_every=3",
              "trainer.sample_every=100", "generator.base_channels=16", "discriminator.base_channels=16"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    one = torchrun(*common, "trainer.steps=6", f"hydra.run.dir={straight}", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    state = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])  # different noise
    # 6 steps x 5 critic updates x 32 samples x 2 processes, in global batches of 64 (28 per epoch of 1797).
    assert state["data_state"] == {"epoch": 1, "pos": (6 * 5 - 28) * 64}
    assert [json.loads(line)["step"] for line in (straight / "metrics.jsonl").read_text().splitlines()] == [2, 4, 6]
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob("gantrain-rank1-*"))  # rank 1 left no folder behind
    assert sorted(p.name for p in (straight / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]

    assert torchrun(*common, "trainer.steps=3", f"hydra.run.dir={split}", cwd=tmp_path).returncode == 0
    resumed = torchrun(*common, "trainer.steps=6", f"resume={split}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = state, load_checkpoint(split / "checkpoints" / "last.pt")
    for net in ("generator", "discriminator"):
        for key in a["networks"][net]:
            assert torch.equal(a["networks"][net][key], b["networks"][net][key]), f"{net}.{key}"


def test_two_processes_train_a_conditional_gan(tmp_path):
    run = tmp_path / "run"
    result = torchrun("conditional=true", "condition.discriminator=ac", "trainer.batch_size=16", "trainer.steps=4",
                      "trainer.log_every=2", "trainer.sample_every=100", "generator.base_channels=8",
                      "discriminator.base_channels=8", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]  # the loop checks at the end that both hold the same weights
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and state["game"] == "cgan" and state["num_classes"] == 10
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all("loss/class_d" in r for r in rows)
