"""End to end through the real `gantrain` command, and its answers to bad input."""
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import FAST, run_commands, run_gantrain

from gantrain import load_generator

pytestmark = pytest.mark.slow


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def tb_tags(run: Path) -> tuple[set, set, dict]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    steps = {tag: [e.step for e in acc.Scalars(tag)] for tag in tags["scalars"]}
    return set(tags["scalars"]), set(tags["images"]), steps


def check_run_folder(run: Path, steps: int) -> list[dict]:
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.pt").is_file()
    assert (run / "checkpoints" / f"step_{steps:08d}.pt").is_file()
    assert (run / "samples" / f"step_{steps:08d}.png").is_file()
    rows = read_metrics(run)
    losses = [r for r in rows if "loss/d" in r]
    assert losses and losses[-1]["step"] == steps
    assert all(math.isfinite(r["loss/d"]) and math.isfinite(r["loss/g"]) for r in losses)
    scalars, images, _ = tb_tags(run)
    assert {"loss/d", "loss/g", "d/real", "d/fake", "lr/d", "lr/g", "steps_per_s"} <= scalars
    assert "samples" in images
    return rows


def test_digits_end_to_end(tmp_path):
    run = tmp_path / "run"
    result = run_gantrain("dataset=digits", "trainer.steps=30", *FAST, f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check_run_folder(run, 30)
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == [f"step_{s:08d}.png" for s in (10, 20, 30)]
    # The PNG is the grid of the generator of that step on the run's fixed noise (seed + 1), pixel for pixel.
    import numpy as np
    import torchvision
    from PIL import Image

    from gantrain.data.base import to_uint8_image

    state = torch.load(run / "checkpoints" / "step_00000020.pt", weights_only=True)
    g20 = load_generator(run / "checkpoints" / "step_00000020.pt")
    z = torch.randn(64, g20.latent_dim, generator=torch.Generator().manual_seed(state["config"]["seed"] + 1))
    with torch.no_grad():
        want = torchvision.utils.make_grid(to_uint8_image(g20(z)), nrow=8, padding=2).permute(1, 2, 0).numpy()
    with Image.open(run / "samples" / "step_00000020.png") as png:
        assert png.size == (82, 82)  # 8 x 8 images of 8 px with 2 px padding
        assert np.array_equal(np.asarray(png.convert("RGB")), want)
    g = load_generator(run)
    assert not g.training
    x = g.sample(5)
    assert x.shape == (5, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    same = load_generator(run / "checkpoints" / "last.pt").sample(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same, g.sample(3, generator=torch.Generator().manual_seed(0)))


def test_ring_experiment_end_to_end(tmp_path):
    run = tmp_path / "ring"
    result = run_gantrain("experiment=ring", "trainer.steps=40", *FAST, "trainer.eval_every=20",
                          f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = check_run_folder(run, 40)
    evals = [r for r in rows if "eval/modes" in r]
    assert [r["step"] for r in evals] == [20, 40]
    # The logged scores are those of the step-40 generator, recomputed here independently of the run.
    from gantrain.data.mixtures import Ring
    from gantrain.eval.evaluator import Evaluator

    evaluator = Evaluator(Ring(), "auto")
    again = evaluator(load_generator(run / "checkpoints" / "step_00000040.pt"))
    for name, value in again.items():
        assert evals[-1][f"eval/{name}"] == pytest.approx(value, rel=1e-6, abs=1e-9), name
        assert evals[-1][f"floor/{name}"] == pytest.approx(evaluator.floor[name], rel=1e-6, abs=1e-9), name
    assert evals[-1]["floor/modes"] == 8 and evals[-1]["floor/high_quality_pct"] > 97
    scalars, _, _ = tb_tags(run)
    assert {"eval/modes", "eval/high_quality_pct", "eval/reverse_kl"} <= scalars
    assert load_generator(run).sample(7).shape == (7, 2)
    from PIL import Image

    with Image.open(run / "samples" / "step_00000040.png") as png:  # a scatter: red samples over grey data
        import numpy as np

        pixels = {tuple(p) for p in np.asarray(png.convert("RGB")).reshape(-1, 3).tolist()}
        assert png.size == (480, 480) and (220, 30, 30) in pixels and (170, 170, 170) in pixels


def test_an_older_checkpoint_continues_in_a_new_folder_not_over_the_run(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    first = run_gantrain("trainer.steps=20", "trainer.log_every=5", "trainer.ckpt_every=10", "trainer.keep_last=5",
                         "trainer.device=cpu", "generator.base_channels=8", "discriminator.base_channels=8",
                         f"hydra.run.dir={run}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = read_metrics(run)
    kept = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "gantrain.log"}
    older = run / "checkpoints" / "step_00000010.pt"
    refused = run_gantrain(f"resume={older}", cwd=tmp_path)  # in place it would replace steps 11-20
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        f"gantrain: error: resume={older} is at step 10, but this run has a checkpoint of step 20: continuing it in "
        f"{run} would replace what it wrote after step 10; branch from it into a new folder with "
        f"hydra.run.dir=NEW_FOLDER (the run stays as it is), or continue the run from its newest checkpoint with "
        f"resume={run}")
    for path, content in kept.items():
        assert path.read_bytes() == content, path
    branch = tmp_path / "branch"
    again = run_gantrain(f"resume={older}", f"hydra.run.dir={branch}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert [r["step"] for r in read_metrics(branch)] == [15, 20]  # the branch logs from step 11 on

    def losses(rows):
        return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in rows]

    assert losses(read_metrics(branch)) == losses(before[2:])  # and exactly as the run did (resume is exact)
    acc = EventAccumulator(str(branch / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/d")] == [15, 20]
    assert [e.value for e in acc.Scalars("loss/d")] == pytest.approx([r["loss/d"] for r in before[2:]], rel=1e-6)
    # the branch now holds a run: another run continued there would be mixed into it; a checkpoint outside a run's
    # checkpoints/ has no run folder of its own to continue in
    loose = tmp_path / "loose" / "model.pt"
    loose.parent.mkdir()
    loose.write_bytes(older.read_bytes())
    kept = {p: p.read_bytes() for p in branch.rglob("*") if p.is_file()}
    mixed, unhomed, hollow, nested = run_commands([
        ("gantrain", f"resume={run}", "trainer.steps=25", f"hydra.run.dir={branch}"),
        ("gantrain", f"resume={loose}", "trainer.steps=25"),
        ("gantrain", f"resume={older}", "trainer.steps=10", f"hydra.run.dir={tmp_path / 'hollow'}"),
        ("gantrain", "trainer.steps=2", f"hydra.run.dir={branch / 'checkpoints'}")], cwd=tmp_path)
    assert nested.returncode == 2 and nested.stderr.strip().splitlines()[-1] == (  # a run inside a run's checkpoints
        f"gantrain: error: {branch / 'checkpoints'} is the checkpoints folder of the run in {branch}: a run there "
        f"would be mixed into it; give a folder of its own (hydra.run.dir=NEW_FOLDER)")
    assert hollow.returncode == 2 and hollow.stderr.strip().splitlines()[-1] == (  # a branch that trains nothing
        f"gantrain: error: the checkpoint is at step 10 and trainer.steps=10: a branch into {tmp_path / 'hollow'} "
        f"would train nothing and hold no checkpoint; give a trainer.steps above 10")
    assert not (tmp_path / "hollow").exists()
    assert mixed.returncode == 2 and mixed.stderr.strip().splitlines()[-1] == (
        f"gantrain: error: {branch} already holds another run (checkpoints/, metrics.jsonl, samples, tb); "
        f"resume={run} would mix the run of {run} into it: continue that run in its own folder, {run}, or branch it "
        f"into a new, empty hydra.run.dir (the run in {branch} continues with resume={branch})")
    assert {p: p.read_bytes() for p in branch.rglob("*") if p.is_file()} == kept
    assert unhomed.returncode == 2 and unhomed.stderr.strip().splitlines()[-1] == (
        f"gantrain: error: resume={loose} is a checkpoint outside a run's checkpoints/ folder, so its own folder is no "
        f"run folder to continue in: give a new or empty one, e.g. hydra.run.dir=runs/model")
    assert sorted(p.name for p in loose.parent.iterdir()) == ["model.pt"]
    latest = run_gantrain(f"resume={run / 'checkpoints' / 'step_00000020.pt'}", "trainer.steps=25", cwd=tmp_path)
    assert latest.returncode == 0, latest.stderr  # the newest one continues in place
    assert [r["step"] for r in read_metrics(run)] == [5, 10, 15, 20, 25]
    # a crash after step 25's log but before its checkpoint: last.pt and the newest step file are step 20's, the
    # log went on; the newest checkpoint, named as a file, continues in place and the later rows go
    import shutil

    (run / "checkpoints" / "step_00000025.pt").unlink()
    shutil.copyfile(run / "checkpoints" / "step_00000020.pt", run / "checkpoints" / "last.pt")
    crashed = run_gantrain(f"resume={run / 'checkpoints' / 'last.pt'}", "trainer.steps=25", cwd=tmp_path)
    assert crashed.returncode == 0, crashed.stderr
    assert [r["step"] for r in read_metrics(run)] == [5, 10, 15, 20, 25]


def test_mnist_wasserstein_end_to_end(tmp_path, data_root):
    run = tmp_path / "mnist"
    result = run_gantrain("loss=wasserstein", "dataset=mnist", f"dataset.root={data_root}", "trainer.steps=10",
                          "generator.base_channels=8", "discriminator.base_channels=8", *FAST,
                          f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = check_run_folder(run, 10)
    for row in rows:  # the critic's estimate E D(x) - E D(G(z)), with its sign
        if "loss/d" in row:
            assert row["loss/wasserstein"] == pytest.approx(row["d/real"] - row["d/fake"], rel=1e-5, abs=1e-9)
            assert row["loss/d"] == pytest.approx(-row["loss/wasserstein"], rel=1e-4, abs=1e-7)  # D minimises E D(G(z)) - E D(x)
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["config"]["trainer"]["n_critic"] == 5 and saved["config"]["loss"]["clip"] == 0.01
    weights = saved["networks"]["discriminator"]
    assert max(v.abs().max().item() for k, v in weights.items() if "weight" in k or "bias" in k) <= 0.01
    assert load_generator(run).sample(4).shape == (4, 1, 28, 28)


def test_a_preset_starts_training_through_the_command(tmp_path, data_root):
    # every preset is built and stepped in test_configs; here one goes through the command line (ring: test above)
    experiment = "wgan_gp_mnist"
    run = tmp_path / experiment
    result = run_gantrain(f"experiment={experiment}", f"dataset.root={data_root}", "trainer.steps=2", "trainer.device=cpu",
                          "trainer.log_every=1", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["step"] for r in read_metrics(run) if "loss/d" in r] == [1, 2]


def test_help_and_cfg_job(tmp_path):
    help_text = run_gantrain("--help", cwd=tmp_path).stdout
    for word in ("dataset:", "loss:", "experiment:", "wgan_gp", "fashion_mnist", "trainer:"):
        assert word in help_text
    job = run_gantrain("loss=wasserstein", "dataset=mnist", "--cfg", "job", cwd=tmp_path)
    assert job.returncode == 0
    assert "n_critic: 5" in job.stdout and "clip: 0.01" in job.stdout and "gantrain.data.images.MNIST" in job.stdout


BAD = [
    (["trainer.steps=0"], "trainer.steps=0 must be a positive integer"),
    (["trainer.steps=abc"], "could not be converted to Integer"),
    (["trainer.stpes=5"], "unknown key trainer.stpes; did you mean trainer.steps?"),
    (["loss=foo"], "loss=foo is not an option of loss: choose one of hinge, lsgan"),
    (["generator.latent_dimm=5"], "unknown key generator.latent_dimm; did you mean generator.latent_dim?"),
    (["+generator.latent_dimm=5"], "unknown key(s) generator.latent_dimm"),
    (["trainer.batch_size=5000"], "larger than the dataset"),
    (["dataset.image_size=27"], "set dataset.image_size"),
    (["dataset.image_size=16.5"], "dataset.image_size=16.5 must be a whole number"),
    (["generator.latent_dim=100000000", "generator=mlp"], "lower trainer.batch_size, dataset.image_size, generator.latent_dim"),
    (["loss=wgan_gp", "discriminator.norm=batch"], "set discriminator.norm=layer"),
    (["trainer.device=cuda:7"], "trainer.device=cuda:7"),
    (["optimizer.name=lion"], "optimizer.name='lion' is not one of"),
    (["optimizer.lr=nan"], "optimizer.lr=nan must be a positive number (e.g. 2e-4)"),
    (["optimizer.generator.lr=inf"], "optimizer.generator.lr=inf must be a positive number (e.g. 2e-4)"),
    (["optimizer.eps=0"], "optimizer.eps=0.0 must be a positive number (e.g. 1e-8)"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1.0 must be a number >= 0 (0: off)"),
    (["optimizer=sgd", "optimizer.momentum=-1"], "optimizer.momentum=-1.0 must be a number in [0, 1) (0: off)"),
    (["optimizer=rmsprop", "optimizer.alpha=2"], "optimizer.alpha=2.0 must be a number in [0, 1) (RMSprop's smoothing"),
    (["dataset=image_folder"], "dataset.root must be given on the command line, e.g. dataset.root=/path/to/your/images"),
    (["generator=unet"], "generator=unet translates images (pix2pix, CycleGAN): add model=pix2pix or model=cyclegan"),
    (["=3"], "=3 has no key before '='; write key=value, e.g. trainer.steps=1000"),
    (["dataset=mnist", "dataset.root=${oc.env:GANTRAIN_NO_SUCH_VARIABLE}"],
     "the config does not resolve: KeyError raised while resolving interpolation"),
    (["trainer.stpes=5"], "(`gantrain --help` lists the groups, `gantrain --cfg job` every key)"),  # no "+": a fixed schema
    (["+trainer.stpes=5"], "`gantrain --cfg job` shows the trainer keys and their values"),
    (["loss=wgan_gp", "loss.gradient_penalty=nan"], "loss.gradient_penalty, loss.r1_gamma and loss.matching_penalty "
                                                    "must be 0 (off) or positive"),
    (["discriminator.base_channels=0"], "discriminator.base_channels=0 must be a whole number of 1 or more"),
    (["generator=mlp", "discriminator=mlp", "dataset=ring", "generator.hidden=[8,0]"],
     "generator.hidden=[8, 0] must be whole numbers of 1 or more"),
    (["dataset=mnist", "dataset.root=NOROOT", "dataset.download=false"], "MNIST not found in"),
    (["direction=BtoA"], "unknown key direction; did you mean dataset.direction (in dataset=paired_folder)? "
                         "(`gantrain --help` lists the groups and keys)"),  # a group's key given without its group
    (["stpes=3"], "gantrain: error: unknown key stpes (`gantrain --help` lists the groups and keys)"),  # no near key
    (["gradient_penalty=1"], "unknown key gradient_penalty; did you mean loss.gradient_penalty? "),  # a schema key
    (["policy=[color]"], "unknown key policy; did you mean augment.policy? "),
    (["trainer.lr=0.001"], "unknown key trainer.lr; did you mean optimizer.lr or optimizer.generator.lr? "),
    (["generator.lr=0.1"], "unknown key generator.lr; did you mean optimizer.generator.lr or optimizer.lr? "),
    (["loss.n_critic=2"], "unknown key loss.n_critic; did you mean trainer.n_critic? "),  # another group's key
    (["dataset.qqq=3"], "gantrain: error: unknown key dataset.qqq (`gantrain --help` lists the groups, "
                        "`gantrain --cfg job` every key; +dataset.qqq=... adds a new one)"),  # no near key
]


def test_bad_input_stops_with_one_clear_line(tmp_path):
    runs = [[o.replace("NOROOT", str(tmp_path / "none")) for o in overrides] for overrides, _ in BAD]
    results = run_commands([("gantrain", "trainer.steps=5", *overrides, f"hydra.run.dir={tmp_path / f'run{i}'}")
                            for i, overrides in enumerate(runs)], cwd=tmp_path)
    wrong = []
    for (overrides, message), result in zip(BAD, results):
        one_line = not result.stderr.startswith("gantrain: error:") or len(result.stderr.strip().splitlines()) == 1
        if not (result.returncode != 0 and message in result.stderr + result.stdout and "Traceback" not in result.stderr
                and one_line):
            wrong.append(f"{' '.join(overrides)}: exit {result.returncode}, {result.stderr[-500:]!r}")
    assert not wrong, "\n".join(wrong)


def test_offline_download_is_a_clear_error(tmp_path):
    # No network here: MNIST cannot be fetched, and the message says what to do instead.
    result = run_gantrain("dataset=mnist", f"dataset.root={tmp_path / 'data'}", "trainer.steps=1",
                          f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                          env={"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})
    assert result.returncode == 2
    assert "could not download MNIST" in result.stderr and "offline" in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "(RuntimeError: " in line and not line.startswith(("Error downloading", "(RuntimeError: Error downloading"))
    assert "Error downloading train-images-idx3-ubyte.gz:)" not in line  # the network's own error, not the file name
    assert not (tmp_path / "data").exists()  # the folders the failed download made are gone again
    (tmp_path / "mine").mkdir()  # a folder the user had is kept, only what the download added goes
    again = run_gantrain("dataset=mnist", f"dataset.root={tmp_path / 'mine'}", "trainer.steps=1",
                         f"hydra.run.dir={tmp_path / 'run2'}", cwd=tmp_path,
                         env={"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})
    assert again.returncode == 2 and (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())


def test_existing_run_folder_is_not_overwritten(tmp_path):
    run = tmp_path / "run"
    assert run_gantrain("trainer.steps=10", *FAST, f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    again = run_gantrain("trainer.steps=10", "loss=hinge", *FAST, f"hydra.run.dir={run}", cwd=tmp_path)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "resume=auto" in again.stderr
    for path, content in before.items():
        assert path.read_bytes() == content, path


def test_a_folder_left_by_a_run_without_checkpoints_is_not_mixed_into(tmp_path):
    """A run stopped before its first checkpoint (killed, diverged) left metrics, samples and curves: a new run
    there is refused, and resume=auto starts that run again, its old entries replaced rather than appended to."""
    run = tmp_path / "run"
    assert run_gantrain("trainer.steps=10", "loss=hinge", *FAST, f"hydra.run.dir={run}",
                        cwd=tmp_path).returncode == 0
    import shutil

    shutil.rmtree(run / "checkpoints")  # as if it had stopped before writing one
    (run / "eval.json").unlink(missing_ok=True)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    again = run_gantrain("trainer.steps=4", "loss=hinge", "trainer.log_every=2", *FAST, f"hydra.run.dir={run}",
                         cwd=tmp_path)
    assert again.returncode == 2, again.stderr
    assert again.stderr.strip().splitlines()[-1] == (
        f"gantrain: error: {run} already holds the outputs of a run that wrote no checkpoint (metrics.jsonl, "
        f"samples, tb); choose a new hydra.run.dir, or start that run again there with resume=auto (which replaces "
        f"them)")
    for path, content in before.items():
        assert path.read_bytes() == content, path
    restart = run_gantrain("trainer.steps=4", *FAST, "trainer.log_every=2", f"hydra.run.dir={run}", "resume=auto",
                           cwd=tmp_path)
    assert restart.returncode == 0, restart.stderr
    assert [r["step"] for r in read_metrics(run) if "loss/d" in r] == [2, 4]  # the new run's rows only
    _, _, steps = tb_tags(run)
    assert steps["loss/d"] == [2, 4]
    # the run there is now the restarted one (default loss, not the attempt's hinge): it resumes as itself
    later = run_gantrain(f"resume={run}", "trainer.steps=6", cwd=tmp_path)
    assert later.returncode == 0, later.stderr
    assert [r["step"] for r in read_metrics(run) if "loss/d" in r] == [2, 4, 6]
