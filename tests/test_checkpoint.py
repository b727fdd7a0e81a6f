"""Checkpoints: atomic writes, safe loading, exact resume, signals and SIGKILL at random moments."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gantrain
from conftest import FAST, run_gantrain
from gantrain.checkpoint import FORMAT_VERSION, CheckpointWriter, load_checkpoint, newest_good
from gantrain.errors import GantrainError

pytestmark = pytest.mark.slow


def minimal_state(step: int) -> dict:
    return {"format": "gantrain-checkpoint", "format_version": FORMAT_VERSION, "step": step,
            "networks": {"generator": {"w": torch.full((4,), float(step))}}}


def test_writer_keeps_last_and_prunes_after_success(tmp_path):
    writer = CheckpointWriter(tmp_path, keep_last=2)
    for step in (10, 20, 30, 40):
        writer.save(minimal_state(step), step)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["last.pt", "step_00000030.pt", "step_00000040.pt"]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 40


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    writer = CheckpointWriter(tmp_path, keep_last=3)
    writer.save(minimal_state(1), 1)

    def disk_full(obj, f):
        f.write(b"partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(GantrainError, match="No space left on device.*previous checkpoints are intact"):
        writer.save(minimal_state(2), 2)
    monkeypatch.undo()
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", "step_00000001.pt"]  # no temp file left
    assert load_checkpoint(folder / "last.pt")["step"] == 1


def test_truncated_checkpoint_named_and_folder_falls_back(tmp_path, caplog):
    writer = CheckpointWriter(tmp_path, keep_last=3)
    writer.save(minimal_state(5), 5)
    writer.save(minimal_state(6), 6)
    last = tmp_path / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.unlink()  # last.pt is a hard link of step 6: break both, as a crash of a non-atomic writer would
    (tmp_path / "checkpoints" / "step_00000006.pt").write_bytes(data[: len(data) // 2])
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(GantrainError, match=f"checkpoint {last} is truncated or corrupt"):
        load_checkpoint(last)
    explicit = run_gantrain(f"resume={last}", cwd=tmp_path)
    assert explicit.returncode == 2 and f"checkpoint {last} is truncated or corrupt" in explicit.stderr
    path, state = newest_good(tmp_path)
    assert path.name == "step_00000005.pt" and state["step"] == 5
    assert "skipping unreadable checkpoint" in caplog.text


class RunsCommand:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_does_not_run_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "gantrain-checkpoint", "payload": RunsCommand(str(marker))}, evil)
    with pytest.raises(GantrainError, match="refused.*allow-list"):
        load_checkpoint(evil)
    with pytest.raises(GantrainError, match="refused"):
        gantrain.load_generator(evil)
    result = run_gantrain(f"resume={evil}", "trainer.steps=3", cwd=tmp_path)
    assert result.returncode == 2 and "refused" in result.stderr
    assert not marker.exists()
    # A pickle that uses only allowed types but carries unknown entries is refused too.
    odd = tmp_path / "odd.pt"
    for version in (1, FORMAT_VERSION):
        torch.save({"format": "gantrain-checkpoint", "format_version": version, "surprise": 1}, odd)
        with pytest.raises(GantrainError, match="unexpected entries"):
            load_checkpoint(odd)


def test_unknown_formats_are_refused_in_one_line(tmp_path):
    path = tmp_path / "future.pt"
    for version, message in ((FORMAT_VERSION + 1, "newer than this gantrain reads"), ("2", "unknown format version"),
                             (0, "unknown format version")):
        torch.save({"format": "gantrain-checkpoint", "format_version": version, "step": 1}, path)
        with pytest.raises(GantrainError, match=message):
            load_checkpoint(path)
        result = run_gantrain(f"resume={path}", cwd=tmp_path) if version == FORMAT_VERSION + 1 else None
        if result is not None:
            assert result.returncode == 2 and "upgrade gantrain" in result.stderr and "Traceback" not in result.stderr
    torch.save({"format": "gantrain-checkpoint", "format_version": 1, "step": 1}, path)  # a 0.1.0 file cut short
    with pytest.raises(GantrainError, match=r"\(format 1\) is incomplete"):
        load_checkpoint(path)


def loss_rows(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if k.startswith(("loss/", "d/"))} for r in rows if "loss/d" in r}


def test_resume_is_bit_identical_wgan_gp_mid_epoch(tmp_path):
    # digits: 1797 samples, batch 64 -> 28 batches an epoch; n_critic 5 -> the stop at step 4 (20 batches) is
    # mid-epoch, and the resumed steps cross into epoch 1. log_every=3 also stops mid-logging-interval.
    common = ["loss=wgan_gp", "dataset=digits", "trainer.device=cpu", "trainer.log_every=3", "trainer.ckpt_every=4",
              "trainer.sample_every=4", "trainer.ema_decay=0.9", "seed=3"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    gantrain.train(gantrain.compose(common + ["trainer.steps=8"]), straight)
    gantrain.train(gantrain.compose(common + ["trainer.steps=4"]), split)
    state4 = load_checkpoint(split / "checkpoints" / "last.pt")
    assert state4["step"] == 4 and state4["data_state"] == {"epoch": 0, "pos": 4 * 5 * 64, "size": 1797}
    assert {"python", "numpy", "torch"} <= set(state4["rng"]) and state4["versions"]["torch"] == torch.__version__
    assert "generator" in state4["ema"] and state4["optimizers"]["discriminator"]["state"]
    gantrain.train(gantrain.compose(common + ["trainer.steps=8", f"resume={split}"]), split)

    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    assert b["data_state"]["epoch"] == 1
    for part, net in (("networks", "generator"), ("networks", "discriminator"), ("ema", "generator")):
        for key in a[part][net]:
            assert torch.equal(a[part][net][key], b[part][net][key]), f"{part}.{net}.{key}"
    # The first segment's run also logged its final partial interval (step 4); every row both runs logged is identical.
    assert sorted(loss_rows(straight)) == [3, 6, 8] and sorted(loss_rows(split)) == [3, 4, 6, 8]
    assert {s: r for s, r in loss_rows(split).items() if s != 4} == loss_rows(straight)
    assert sorted(p.name for p in (split / "samples").iterdir()) == [f"step_{s:08d}.png" for s in (4, 8)]


def test_interrupted_run_with_lr_schedule_resumes_exactly(tmp_path):
    # The linear schedule spans trainer.steps, so stop an 8-step run at step 4 (as a signal would) and resume it.
    from gantrain.training.build import build
    from gantrain.training.loop import Interrupted
    from gantrain.training.periodic import Periodic

    class SignalAt(Periodic):  # periodic work that acts as a SIGTERM arriving during step 4
        def __call__(self, loop, final=False):
            os.kill(os.getpid(), signal.SIGTERM)

    common = ["loss=hinge", "dataset=digits", "trainer.device=cpu", "trainer.log_every=2", "trainer.ckpt_every=100",
              "trainer.sample_every=100", "optimizer.lr_schedule=linear", "trainer.steps=8"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    gantrain.train(gantrain.compose(common), straight)
    loop = build(gantrain.compose(common), split)
    loop.periodic.insert(0, SignalAt(4))
    with pytest.raises(Interrupted):
        loop.fit()
    state4 = load_checkpoint(split / "checkpoints" / "last.pt")
    assert state4["step"] == 4 and state4["schedules"]["generator"]["last_epoch"] == 4
    assert state4["optimizers"]["generator"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * (1 - 4 / 8))
    gantrain.train(gantrain.compose(common + [f"resume={split}"]), split)
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    for net in ("generator", "discriminator"):
        for key in a["networks"][net]:
            assert torch.equal(a["networks"][net][key], b["networks"][net][key]), f"{net}.{key}"
    assert loss_rows(straight) == loss_rows(split)


def test_a_python_resume_gives_only_what_changes_as_the_command_line_does(tmp_path):
    """compose(["resume=RUN", "trainer.steps=N"]) continues RUN with the config it was trained with (its loss and
    widths, not today's defaults); a value set on the composed config counts as given; a change that may not be
    made on resume is refused either way."""
    run = tmp_path / "run"
    gantrain.train(gantrain.compose(["loss=hinge", "dataset=digits", "trainer.steps=2", "trainer.log_every=1",
                                     "generator.base_channels=8", "discriminator.base_channels=8"]), run)
    gantrain.train(gantrain.compose([f"resume={run}", "trainer.steps=3"]), run)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 3 and state["config"]["loss"]["_target_"].endswith("Hinge")
    assert state["config"]["generator"]["base_channels"] == 8 and state["config"]["trainer"]["log_every"] == 1
    cfg = gantrain.compose([f"resume={run}"])
    cfg.trainer.steps = 4
    gantrain.train(cfg, run)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    with pytest.raises(GantrainError, match=r"cannot resume: the config differs from the checkpoint's in loss\._target_"):
        gantrain.train(gantrain.compose([f"resume={run}", "trainer.steps=5", "loss=minimax"]), run)
    cfg = gantrain.compose([f"resume={run}", "trainer.steps=5"])
    cfg.generator.base_channels = 16
    with pytest.raises(GantrainError, match=r"differs from the checkpoint's in generator\.base_channels \("):
        gantrain.train(cfg, run)
    # a run of the defaults but for keys a resume may change: those stay the run's too (not today's defaults)
    plain = tmp_path / "plain"
    gantrain.train(gantrain.compose(["trainer.steps=2", "trainer.log_every=1", "trainer.device=cpu"]), plain)
    gantrain.train(gantrain.compose([f"resume={plain}", "trainer.steps=3"]), plain)
    assert load_checkpoint(plain / "checkpoints" / "last.pt")["config"]["trainer"]["device"] == "cpu"
    assert [json.loads(line)["step"] for line in (plain / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    with pytest.raises(GantrainError) as err:  # from Python, the folder is train's run_dir, not hydra.run.dir
        gantrain.train(gantrain.compose(["dataset=digits"]), run)
    assert str(err.value) == (f"{run} already holds a run (checkpoints/); continue it with resume=auto, or choose a "
                              f"new run_dir")


def test_a_linear_schedule_resumed_with_more_steps_follows_the_longer_run_and_says_so(tmp_path, caplog):
    """trainer.steps raised on resume: from that step on the rates are those a run of the new length has there
    (what pix2pix's and torch's schedulers do), and one line says what that does to the rate."""
    common = ["loss=hinge", "dataset=digits", "trainer.device=cpu", "trainer.log_every=2", "trainer.ckpt_every=100",
              "trainer.sample_every=100", "optimizer.lr_schedule=linear", "trainer.steps=8"]
    run = tmp_path / "run"
    gantrain.train(gantrain.compose(common), run)
    with caplog.at_level("WARNING", logger="gantrain"):
        gantrain.train(gantrain.compose(common + [f"resume={run}", "trainer.steps=16"]), run)
    said = [r.getMessage() for r in caplog.records if "lr_schedule" in r.getMessage()]
    assert said == ["optimizer.lr_schedule=linear now ends at step 16 instead of 8: from step 8 on the rates are those "
                    "of a 16-step run, x0.5 of the base rate at this step where the 8-step run was at x0"]
    rates = {row["step"]: row["lr/g"] for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if "lr/g" in row}
    assert rates == pytest.approx({**{s: 2e-4 * (1 - s / 8) for s in (2, 4, 6, 8)},
                                   **{s: 2e-4 * (1 - s / 16) for s in (10, 12, 14, 16)}})
    caplog.clear()
    with caplog.at_level("WARNING", logger="gantrain"):  # raised again: measured from the length it now has
        gantrain.train(gantrain.compose(common + [f"resume={run}", "trainer.steps=18"]), run)
    assert [r.getMessage()[:62] for r in caplog.records if "lr_schedule" in r.getMessage()] == [
        "optimizer.lr_schedule=linear now ends at step 18 instead of 16"]


def test_a_resume_may_restate_the_groups_the_run_trains_with(tmp_path):
    """`generator=dcgan` on a run of the default generator (with its own generator keys) is no change: the run
    resumes with its own generator; another choice is still refused, naming the group's keys."""
    run = tmp_path / "run"
    first = run_gantrain("dataset=digits", "generator.base_channels=8", "trainer.steps=4", *FAST,
                         f"hydra.run.dir={run}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = run_gantrain(f"resume={run}", "trainer.steps=6", "generator=dcgan", "dataset=digits", "loss=nonsaturating",
                         cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 6 and state["config"]["generator"]["base_channels"] == 8
    other = run_gantrain(f"resume={run}", "trainer.steps=8", "generator=sngan", cwd=tmp_path)
    assert other.returncode == 2 and "cannot resume: the config differs from the checkpoint's in generator._target_" in other.stderr


def test_resume_cli_continues_curves_and_refuses_other_config(tmp_path):
    run = tmp_path / "run"
    first = run_gantrain("loss=hinge", "trainer.steps=10", *FAST, f"hydra.run.dir={run}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    original_hydra = (run / ".hydra" / "config.yaml").read_text()
    refused = run_gantrain(f"resume={run}", "loss=wasserstein", "trainer.steps=20", cwd=tmp_path)
    assert refused.returncode == 2 and "cannot resume" in refused.stderr and "loss._target_" in refused.stderr
    more = run_gantrain(f"resume={run}", "trainer.steps=20", cwd=tmp_path)  # the run's own config, trained longer
    assert more.returncode == 0, more.stderr
    assert (run / ".hydra" / "config.yaml").read_text() == original_hydra
    assert load_checkpoint(run / "checkpoints" / "last.pt")["config"]["loss"]["_target_"] == "gantrain.training.losses.Hinge"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/d")] == [5, 10, 15, 20]
    assert [e.step for e in acc.Images("samples")] == [10, 20]
    bad_file = run_gantrain(f"resume={tmp_path / 'nothing.pt'}", cwd=tmp_path)
    assert bad_file.returncode == 2 and "no such run folder or checkpoint" in bad_file.stderr


def gantrain_process(run: Path, *args: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("gantrain")
    return subprocess.Popen([str(exe), *args, f"hydra.run.dir={run}"], cwd=run.parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_checkpoint_and_says_how_to_resume(tmp_path, signum):
    run = tmp_path / "run"
    proc = gantrain_process(run, "trainer.steps=100000", "trainer.log_every=5", "trainer.ckpt_every=100000")
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum
    assert f"Resume with: gantrain resume={run}" in err
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert f"stopped at step {state['step']}" in err and state["step"] > 0
    # Relaunching a finished run trains nothing and logs nothing twice.
    rows = (run / "metrics.jsonl").read_text()
    again = run_gantrain(f"resume={run}", f"trainer.steps={state['step']}", cwd=tmp_path)
    assert again.returncode == 0 and "nothing to train" in again.stdout + again.stderr
    assert (run / "metrics.jsonl").read_text() == rows
    fewer = run_gantrain(f"resume={run}", f"trainer.steps={state['step'] - 1}", cwd=tmp_path)  # a typo, most likely
    assert fewer.returncode == 2 and fewer.stderr.strip().splitlines()[-1] == (
        f"gantrain: error: the run is at step {state['step']}, past trainer.steps={state['step'] - 1}: there is "
        f"nothing to train; give a trainer.steps above {state['step']} to train it longer")
    assert (run / "metrics.jsonl").read_text() == rows


def test_sigkill_at_random_moments_never_corrupts(tmp_path):
    run = tmp_path / "run"
    rng = random.Random(1234)
    args = ["resume=auto", "trainer.steps=400", "trainer.log_every=5", "trainer.ckpt_every=2", "trainer.sample_every=50",
            "generator.base_channels=16", "discriminator.base_channels=16"]
    seen = []
    last = run / "checkpoints" / "last.pt"
    for _ in range(4):
        proc = gantrain_process(run, *args)
        time.sleep(rng.uniform(2.5, 6.0))
        deadline = time.time() + 120
        while not last.exists() and time.time() < deadline and proc.poll() is None:  # a slow start: wait for progress
            time.sleep(0.05)
        proc.kill()
        proc.communicate()
        if last.exists():
            seen.append(load_checkpoint(last)["step"])  # never corrupt, whenever the kill came
    assert seen == sorted(seen) and seen and seen[-1] > 0
    final = gantrain_process(run, *args)
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 400
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(5, 401, 5))  # appended across restarts with no gap and no duplicate


def test_last_pt_is_copied_where_hard_links_are_not_allowed(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    writer = CheckpointWriter(tmp_path, keep_last=1)
    writer.save(minimal_state(1), 1)
    writer.save(minimal_state(2), 2)
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", "step_00000002.pt"]
    assert (folder / "last.pt").read_bytes() == (folder / "step_00000002.pt").read_bytes()
    assert load_checkpoint(folder / "last.pt")["step"] == 2


def test_resume_drops_rows_logged_after_the_checkpoint(tmp_path):
    # A crash between a log row (step 5) and the next checkpoint (step 6) leaves a row past the resumed step (4):
    # the resumed run logs step 5 again, so the stale row must go (and the line the kill cut with it).
    run = tmp_path / "run"
    common = ["dataset=digits", "trainer.device=cpu", "trainer.log_every=1", "trainer.ckpt_every=4",
              "trainer.sample_every=100", "generator.base_channels=8", "discriminator.base_channels=8"]
    gantrain.train(gantrain.compose(common + ["trainer.steps=4"]), run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, "loss/d": 123.0}) + "\n" + '{"step": 6, "loss/')  # and a line cut by the kill
    gantrain.train(gantrain.compose(common + ["trainer.steps=6", f"resume={run}"]), run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[4]["loss/d"] != 123.0


def test_a_relative_dataset_root_is_saved_absolute_so_a_resume_elsewhere_reads_the_same_data(tmp_path):
    from PIL import Image

    from conftest import run_gantrain

    for project, count in (("a", 24), ("b", 8)):  # two folders with a `pics` of different images
        (tmp_path / project / "pics").mkdir(parents=True)
        for i in range(count):
            Image.new("L", (8, 8), 10 * i).save(tmp_path / project / "pics" / f"{i}.png")
    run = tmp_path / "run"
    first = run_gantrain("dataset=image_folder", "dataset.root=pics", "dataset.image_size=8", "dataset.channels=1",
                         "trainer.batch_size=4", "generator.base_channels=4", "discriminator.base_channels=4",
                         "trainer.device=cpu", "trainer.num_workers=0", "trainer.eval_every=0", "trainer.ckpt_every=2",
                         "trainer.steps=2", f"hydra.run.dir={run}", cwd=tmp_path / "a")
    assert first.returncode == 0, first.stderr
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    assert saved["config"]["dataset"]["root"] == str(tmp_path / "a" / "pics")
    again = run_gantrain(f"resume={run}", "trainer.steps=4", cwd=tmp_path / "b")  # another folder, its own `pics`
    assert again.returncode == 0, again.stderr
    assert load_checkpoint(run / "checkpoints" / "last.pt")["data_state"]["size"] == 24  # the run's own images
    raw = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    raw["config"]["dataset"]["root"] = "pics"  # as a run of an earlier version saved it
    old = tmp_path / "old.pt"
    torch.save(raw, old)
    refused = run_gantrain(f"resume={old}", "trainer.steps=4", f"hydra.run.dir={tmp_path / 'branch'}",
                           cwd=tmp_path / "b")  # read from here, it is other data: refused, not trained on
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        "gantrain: error: the run trained on 24 samples, but its dataset now has 8: resume with the data it trained "
        "on (check dataset.root: runs before gantrain 0.13.0 saved a relative one, read from the current folder)")


def test_the_paths_to_data_are_made_absolute_and_nothing_else(tmp_path, monkeypatch):
    from gantrain.training.run import _absolute_root

    monkeypatch.chdir(tmp_path)
    cfg = gantrain.compose(["dataset=image_folder", "dataset.root=pics", "condition.text_embeddings=emb/t.npz",
                            "trainer.steps=3"])
    _absolute_root(cfg)
    assert cfg.dataset.root == str(tmp_path / "pics")
    assert cfg.condition.text_embeddings == str(tmp_path / "emb" / "t.npz")
    assert cfg.trainer.steps == 3
    absolute = gantrain.compose(["dataset=image_folder", f"dataset.root={tmp_path / 'link' / '..' / 'x'}"])
    _absolute_root(absolute)  # already absolute (.. through a link is another folder), no embeddings file: unchanged
    assert absolute.dataset.root == str(tmp_path / "link" / ".." / "x") and absolute.condition.text_embeddings is None
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~ is expanded: a resume by another user reads the same data
    home = gantrain.compose(["dataset=image_folder", "dataset.root='~/pics'"])
    _absolute_root(home)
    assert home.dataset.root == str(tmp_path / "home" / "pics")
    points = gantrain.compose(["dataset=ring"])  # a dataset without a root
    _absolute_root(points)
    assert "root" not in points.dataset
