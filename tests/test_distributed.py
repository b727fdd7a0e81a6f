"""Data-parallel training under torchrun: two CPU processes (Gloo) on one machine."""
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import torch

from gantrain.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


def torchrun(*args: str, cwd: Path, script: Optional[Path] = None) -> subprocess.CompletedProcess:
    """torchrun's two processes running gantrain's training command (or script, which runs it)."""
    entry = [str(script)] if script else ["-m", "gantrain.commands.train"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *entry,
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
    assert state["data_state"] == {"epoch": 1, "pos": (6 * 5 - 28) * 64, "size": 1797}
    assert [json.loads(line)["step"] for line in (straight / "metrics.jsonl").read_text().splitlines()] == [2, 4, 6]
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob("gantrain-rank1-*"))  # rank 1 left no folder behind
    assert sorted(p.name for p in (straight / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]

    # resumed from the straight run's step 3 into a folder of its own: the same weights at step 6
    middle = straight / "checkpoints" / "step_00000003.pt"
    resumed = torchrun(*common, "trainer.steps=6", f"resume={middle}", f"hydra.run.dir={split}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = state, load_checkpoint(split / "checkpoints" / "last.pt")
    for net in ("generator", "discriminator"):
        for key in a["networks"][net]:
            assert torch.equal(a["networks"][net][key], b["networks"][net][key]), f"{net}.{key}"


#: runs the training command and, at its very end (the first exit handler runs last), prints the threads the
#: process still has: the process group's threads must be gone by then, or interpreter shutdown tears them
#: down in no safe order (an occasional SIGABRT after a finished run)
EXIT_PROBE = """
import atexit, os, runpy, sys
def threads():
    names = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
    print(f"threads at exit of rank {os.environ['RANK']}: {names}", file=sys.stderr)
atexit.register(threads)
sys.argv[0] = "gantrain.commands.train"
runpy.run_module("gantrain.commands.train", run_name="__main__")
"""


def test_two_processes_train_a_conditional_gan_with_ada(tmp_path):
    run = tmp_path / "run"
    probe = tmp_path / "probe.py"
    probe.write_text(EXIT_PROBE)
    result = torchrun("conditional=true", "condition.discriminator=ac", "trainer.batch_size=16", "trainer.steps=4",
                      "trainer.log_every=2", "trainer.sample_every=100", "generator.base_channels=8",
                      "discriminator.base_channels=8", "augment.policy=[translation]", "augment.ada=true",
                      "augment.ada_interval=1", "augment.ada_kimg=0.5", f"hydra.run.dir={run}", cwd=tmp_path, script=probe)
    # the loop checks at the end that both hold the same weights and the same ADA p (a smoke test of that
    # check: test_grad_average.py shows that the processes' p would drift apart without the averaging)
    assert result.returncode == 0, result.stderr[-3000:]
    exits = re.findall(r"threads at exit of rank (\d): (\[[^]]*\])", result.stderr)  # the two may share a line
    assert sorted(rank for rank, _ in exits) == ["0", "1"], result.stderr[-3000:]
    assert all("gloo" not in threads for _, threads in exits), exits  # the process group was destroyed before
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and state["game"] == "cgan" and state["num_classes"] == 10
    # ADA moved p once per step (interval 1) by its step for the global batch, 2 x 16 images over ada_kimg 0.5:
    # after 4 steps p is a whole number of steps, 0 to 4 (test_gan_build.py checks the averaging itself)
    moves = float(state["game_state"]["augment"]["p"]) / (2 * 16 / (0.5 * 1000))
    assert abs(moves - round(moves)) < 1e-4 and 0 <= round(moves) <= 4, moves
    assert int(state["game_state"]["augment"]["count"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all("loss/class_d" in r for r in rows)


PYTHON_EXIT_PROBE = """
import atexit, os, sys
import gantrain
def threads():
    names = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
    print(f"threads at exit of rank {os.environ['RANK']}: {names}", file=sys.stderr)
atexit.register(threads)
gantrain.train(gantrain.compose(sys.argv[2:]), sys.argv[1])
"""


def test_two_processes_train_from_python_and_leave_no_process_group_behind(tmp_path):
    # gantrain.train under torchrun joins the process group itself, and destroys it before returning
    probe = tmp_path / "probe.py"
    probe.write_text(PYTHON_EXIT_PROBE)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(probe), str(run),
               "trainer.device=cpu", "trainer.steps=2", "trainer.batch_size=16", "generator.base_channels=8",
               "discriminator.base_channels=8", "trainer.sample_every=100"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    exits = re.findall(r"threads at exit of rank (\d): (\[[^]]*\])", result.stderr)
    assert sorted(rank for rank, _ in exits) == ["0", "1"], result.stderr[-3000:]
    assert all("gloo" not in threads for _, threads in exits), exits
    assert load_checkpoint(run / "checkpoints" / "last.pt")["world_size"] == 2


TRANSLATION_TINY = ["generator.width=8", "discriminator.width=8", "trainer.batch_size=2", "trainer.log_every=2",
                    "trainer.sample_every=100", "trainer.ckpt_every=3", "trainer.eval_every=0"]


def test_two_processes_train_a_cyclegan_and_resume_exactly(tmp_path, data_root):
    # Each process keeps its own history pools (they decide what its discriminators see): the checkpoint
    # holds every process's pools, so a resume with the same number of processes is exact.
    common = ["experiment=cyclegan_mnist2mnistm", f"dataset.root={data_root}", *TRANSLATION_TINY,
              "translation.pool_size=2"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    one = torchrun(*common, "trainer.steps=6", f"hydra.run.dir={straight}", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]  # the loop checks at the end that both hold the same weights
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert a["world_size"] == 2 and a["game"] == "cyclegan" and len(a["game_ranks"]) == 2
    assert a["game_ranks"][0] is None  # rank 0's pools are the game state's
    pools = [a["game_state"]["pools"], a["game_ranks"][1]["pools"]]
    assert int(pools[0]["a.count"]) == int(pools[1]["a.count"]) == 2  # both filled, and hold different images
    assert not torch.equal(pools[0]["a.images"], pools[1]["a.images"])
    middle = straight / "checkpoints" / "step_00000003.pt"  # the same schedule (it follows trainer.steps)
    resumed = torchrun(*common, "trainer.steps=6", f"resume={middle}", f"hydra.run.dir={split}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    for net in a["networks"]:
        for key in a["networks"][net]:
            assert torch.equal(a["networks"][net][key], b["networks"][net][key]), f"{net}.{key}"
    for key, value in a["game_state"]["pools"].items():
        assert torch.equal(value, b["game_state"]["pools"][key]), (0, key)
        assert torch.equal(a["game_ranks"][1]["pools"][key], b["game_ranks"][1]["pools"][key]), (1, key)

    # A checkpoint with the main process's state only (as best.pt is written): a warning, and each process
    # goes on with noise of its own rather than the main one's again.
    main_only = {k: v for k, v in load_checkpoint(middle).items() if k not in ("rng_ranks", "game_ranks")}
    torch.save(main_only, tmp_path / "main_only.pt")
    third = tmp_path / "third"
    again = torchrun(*common, "trainer.steps=4", f"resume={tmp_path / 'main_only.pt'}", f"hydra.run.dir={third}",
                     cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "holds the main process's state only" in (third / "gantrain.log").read_text()
    c = load_checkpoint(third / "checkpoints" / "last.pt")
    assert c["step"] == 4 and not torch.equal(c["rng_ranks"][0]["torch"], c["rng_ranks"][1]["torch"])


def test_two_processes_train_pix2pix(tmp_path, data_root):
    run = tmp_path / "run"
    result = torchrun("experiment=pix2pix_edges2mnist", f"dataset.root={data_root}", *TRANSLATION_TINY,
                      "trainer.steps=4", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and state["game"] == "pix2pix" and state["step"] == 4
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all("loss/l1" in r for r in rows)


def test_two_processes_train_a_text_conditioned_gan(tmp_path, data_root):
    run = tmp_path / "run"
    result = torchrun("experiment=text_mnist", f"dataset.root={data_root}", "dataset.subset=128", "dataset.image_size=16",
                      "generator.base_channels=8", "discriminator.base_channels=8", "condition.text_dim=16",
                      "trainer.batch_size=8", "trainer.steps=4", "trainer.log_every=2", "trainer.sample_every=100",
                      "trainer.ckpt_every=4", f"hydra.run.dir={run}", cwd=tmp_path)
    # the loop checks at the end that both processes hold the same weights (the encoders' among them)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and state["game"] == "text" and len(state["rng_ranks"]) == 2
    assert state["data_state"] == {"epoch": 0, "pos": 4 * 16, "size": 128}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all("loss/kl" in r and "d/mismatch" in r for r in rows)
