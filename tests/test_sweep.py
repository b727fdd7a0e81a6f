"""Sweeps through the real `gantrain -m` command: the summary table, failed jobs, re-runs that skip finished
jobs and continue interrupted ones, Optuna, the joblib launcher, and `gantrain-report`."""
from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import run_gantrain
from gantrain.commands import report, sweep
from gantrain.errors import GantrainError

pytestmark = pytest.mark.slow

# a small ring GAN: a job trains in well under a second per 100 steps on a CPU
SMALL = ["experiment=ring", "trainer.device=cpu", "trainer.progress=false", "trainer.batch_size=32",
         "generator.hidden=[32,32]", "discriminator.hidden=[32,32]", "trainer.log_every=5",
         "trainer.sample_every=20", "trainer.ckpt_every=10", "trainer.steps=20", "trainer.eval_every=0"]


TARGETS = {"nonsaturating": "gantrain.training.losses.NonSaturating", "hinge": "gantrain.training.losses.Hinge"}


def _last(job: Path) -> dict:
    values: dict = {}
    for line in (job / "metrics.jsonl").read_text().splitlines():
        values.update(json.loads(line))
    return values


def _report_exe() -> list[str]:
    exe = Path(sys.executable).with_name("gantrain-report")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from gantrain.commands.report import report_main; report_main()"]


def test_a_2x2_sweep_summarises_every_job_and_a_rerun_skips_them(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    args = ["-m", "loss=nonsaturating,hinge", "seed=0,1", *SMALL, "trainer.eval_every=20", "trainer.num_samples=500",
            f"hydra.sweep.dir={folder}"]
    proc = run_gantrain(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    for row in rows:
        job = folder / row["job"]
        last = _last(job)
        assert row["status"] == "finished" and int(row["step"]) == 20 and row["reason"] == ""
        for key in ("loss/d", "loss/g", "eval/modes", "eval/high_quality_pct"):
            assert float(row[key]) == pytest.approx(float(last[key]), rel=1e-9), key
        saved = json.loads((job / "status.json").read_text())["overrides"]
        assert f"loss={row['loss']}" in saved and f"seed={row['seed']}" in saved
        trained = torch.load(job / "checkpoints" / "last.pt", weights_only=True)["config"]  # each job trained its own
        assert trained["loss"]["_target_"] == TARGETS[row["loss"]] and trained["seed"] == int(row["seed"])
    assert {(r["loss"], r["seed"]) for r in rows} == {(a, b) for a in ("nonsaturating", "hinge") for b in ("0", "1")}
    # seeds of one setting: mean and sample std of the per-job values
    seeds = list(csv.DictReader((folder / "summary_seeds.csv").open()))
    assert sorted(s["loss"] for s in seeds) == ["hinge", "nonsaturating"]
    for group in seeds:
        members = [float(r["loss/g"]) for r in rows if r["loss"] == group["loss"]]
        assert group["seeds"] == "2" and group["finished"] == "2"
        assert float(group["loss/g mean"]) == pytest.approx(statistics.fmean(members), rel=1e-9)
        assert float(group["loss/g std"]) == pytest.approx(statistics.stdev(members), rel=1e-9)
    printed = proc.stdout
    assert "| job | loss | seed | status | step |" in printed and "mean and std over seeds" in printed
    # the same table from gantrain-report
    again = subprocess.run([*_report_exe(), str(folder)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    table = [line for line in printed.splitlines() if line.startswith("|")]
    assert [line for line in again.stdout.splitlines() if line.startswith("|")] == table
    # every job in TensorBoard's HParams dashboard, with its overrides
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(folder / "1" / "tb"))
    acc.Reload()
    data = [plugin_data_pb2.HParamsPluginData.FromString(v) for v in acc.PluginTagToContent("hparams").values()]
    start = next(d.session_start_info for d in data if d.HasField("session_start_info"))
    assert start.hparams["loss"].string_value == rows[1]["loss"] and start.hparams["seed"].number_value == int(rows[1]["seed"])
    experiment = next(d.experiment for d in data if d.HasField("experiment"))
    assert {"loss/g", "eval/modes"} <= {m.name.tag for m in experiment.metric_infos}
    # the same command again: nothing retrained
    stamps = {r["job"]: (folder / r["job"] / "checkpoints" / "last.pt").stat().st_mtime_ns for r in rows}
    rerun = run_gantrain(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (rerun.stdout + rerun.stderr).count("finished earlier (step 20); skipped") == 4
    assert stamps == {r["job"]: (folder / r["job"] / "checkpoints" / "last.pt").stat().st_mtime_ns for r in rows}
    assert list(csv.DictReader((folder / "summary.csv").open())) == rows


def test_a_failed_job_does_not_stop_the_sweep(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    proc = run_gantrain("-m", "trainer.n_critic=0,1", *SMALL, f"hydra.sweep.dir={folder}", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    rows = {r["job"]: r for r in csv.DictReader((folder / "summary.csv").open())}
    assert rows["0"]["status"] == "failed" and rows["0"]["reason"] == "trainer.n_critic=0 must be a positive integer"
    assert rows["1"]["status"] == "finished" and int(rows["1"]["step"]) == 20
    assert "job 0 failed: trainer.n_critic=0 must be a positive integer" in proc.stdout
    report = subprocess.run([*_report_exe(), str(folder)], capture_output=True, text=True, timeout=120)
    assert report.returncode == 1 and "1 finished, 1 failed" in report.stdout


def test_an_interrupted_sweep_finishes_on_rerun_without_retraining(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    args = ["-m", "seed=0,1", *SMALL, "trainer.steps=400", "trainer.ckpt_every=50", "trainer.log_every=10",
            "trainer.sample_every=400", f"hydra.sweep.dir={folder}"]
    exe = Path(sys.executable).with_name("gantrain")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "gantrain.commands.train"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    first = subprocess.Popen(command + args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    second_log = folder / "1" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (second_log.is_file() and second_log.read_text().count("\n") >= 2):  # job 1 is training
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.time() < deadline, "the second job never started"
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Finish it with the same command and hydra.sweep.dir=" in err
    status = [json.loads((folder / j / "status.json").read_text()) for j in ("0", "1")]
    assert status[0]["status"] == "finished" and status[1]["status"] == "interrupted"
    stopped_at = status[1]["step"]
    assert 0 < stopped_at < 400
    kept = (folder / "0" / "checkpoints" / "last.pt").stat().st_mtime_ns

    rerun = run_gantrain(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    out = rerun.stdout + rerun.stderr
    assert "job 0 (" in out and "finished earlier (step 400); skipped" in out
    assert f"continuing at step {stopped_at} of 400" in out
    assert (folder / "0" / "checkpoints" / "last.pt").stat().st_mtime_ns == kept
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert [(r["status"], r["step"]) for r in rows] == [("finished", "400")] * 2
    # the continued job ends exactly where an uninterrupted run of it ends
    straight = run_gantrain("seed=1", *args[2:-1], f"hydra.run.dir={tmp_path / 'straight'}", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    resumed = torch.load(folder / "1" / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    whole = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    for name, tensor in whole["networks"]["generator"].items():
        assert torch.equal(resumed["networks"]["generator"][name], tensor), name


def test_optuna_search_runs_its_trials_and_names_the_best(tmp_path: Path) -> None:
    folder = tmp_path / "search"
    proc = run_gantrain("-m", "hparams_search=grid_optuna", "hydra.sweeper.n_trials=3", "trainer.device=cpu",
                        "trainer.progress=false", "trainer.steps=20", "trainer.eval_every=20", "trainer.sample_every=20",
                        "trainer.ckpt_every=20", "trainer.num_samples=500", "trainer.batch_size=64",
                        f"hydra.sweep.dir={folder}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    modes = {j: float(_last(folder / j)["eval/modes"]) for j in ("0", "1", "2")}
    from omegaconf import OmegaConf

    best = OmegaConf.load(folder / "optimization_results.yaml")
    assert best.best_value == max(modes.values())
    assert f"best modes (maximize): {max(modes.values()):.4g}" in proc.stdout
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert len(rows) == 3 and {"optimizer.generator.lr", "generator.hidden.0"} <= set(rows[0])


def test_the_joblib_launcher_runs_two_jobs_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    proc = run_gantrain("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", *SMALL,
                        "trainer.steps=300", "trainer.ckpt_every=300", "trainer.log_every=100", "trainer.sample_every=300",
                        f"hydra.sweep.dir={folder}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [json.loads((folder / j / "status.json").read_text()) for j in ("0", "1")]
    assert all(j["status"] == "finished" and j["step"] == 300 for j in jobs)
    assert jobs[0]["pid"] != jobs[1]["pid"]  # two worker processes
    assert max(j["started_at"] for j in jobs) < min(j["ended_at"] for j in jobs)  # their training overlapped


# ---- pieces, in process ---------------------------------------------------------------------------


def test_a_parallel_job_gets_its_own_gpu() -> None:
    assert [sweep.device_for_job("auto", n, 4) for n in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert sweep.device_for_job("cuda", 3, 2) == "cuda:1"
    assert sweep.device_for_job("cpu", 3, 4) == "cpu" and sweep.device_for_job("cuda:2", 0, 4) == "cuda:2"
    assert sweep.device_for_job("auto", 1, 1) == "auto" and sweep.device_for_job("auto", 1, 0) == "auto"


def test_job_identity_leaves_out_what_a_resume_may_change() -> None:
    assert sweep.job_identity(["seed=1", "trainer.steps=10", "loss=hinge"]) == sweep.job_identity(["loss=hinge", "seed=1", "trainer.steps=99"])
    assert sweep.job_identity(["seed=1"]) != sweep.job_identity(["seed=2"])


def test_the_report_reads_a_killed_job_as_interrupted_and_skips_cut_lines(tmp_path: Path) -> None:
    job = tmp_path / "0"
    (job / "checkpoints").mkdir(parents=True)
    sweep.write_status(job, status="running", overrides=["seed=3"], steps=100)
    (job / "metrics.jsonl").write_text('{"step": 5, "loss/d": 1.5}\n{"step": 10, "loss/d": 0.5, "loss/g": "nan"}\n{"step": 1')
    text, rows = sweep.report(tmp_path)
    assert rows[0]["status"] == "interrupted" and rows[0]["step"] == 10
    assert rows[0]["values"]["loss/d"] == 0.5 and rows[0]["values"]["loss/g"] != rows[0]["values"]["loss/g"]  # nan kept
    assert "re-run the same `gantrain -m` command" in text
    with pytest.raises(GantrainError, match="holds no sweep jobs"):
        sweep.report(tmp_path / "0" / "checkpoints")
    with pytest.raises(GantrainError, match="optimized_metric=fid was never logged"):
        sweep.metric_value(job, "fid")
    assert sweep.metric_value(job, "loss/d") == 0.5


def test_report_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for args, words in (([str(tmp_path / "nope")], "is not a folder"), ([str(tmp_path)], "holds no sweep jobs"),
                        ([str(tmp_path), "metric=x"], "unknown option metric"), ([], "gantrain-report SWEEP_FOLDER"),
                        ([str(tmp_path), "direction=up"], "direction=up is not maximize or minimize")):
        with pytest.raises(SystemExit) as stop:
            report.report_main(args)
        err = capsys.readouterr()
        assert stop.value.code == 2 and words in err.err + err.out, (args, err)
        assert len(err.err.strip().splitlines()) <= 1


def test_a_missing_plugin_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from gantrain.commands.train import missing_plugin

    assert missing_plugin(["-m", "hydra/launcher=joblib", "hparams_search=grid_optuna"]) is None  # installed here
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("hydra_plugins") else real(name, *a))
    message = missing_plugin(["-m", "hydra/launcher=slurm"])
    assert message is not None and "pip install 'gantrain[sweeps]'" in message and "submitit" in message
    assert "Optuna" in (missing_plugin(["hparams_search=mnist_optuna"]) or "")
    assert missing_plugin(["seed=1", "hparams_search=null"]) is None
    monkeypatch.setattr(importlib.util, "find_spec", real)
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)  # off a Slurm cluster: no sbatch
    assert missing_plugin(["-m", "hydra/launcher=slurm"]) == (
        "hydra/launcher=slurm submits the sweep's jobs with sbatch, which is not on this machine's PATH: start the "
        "sweep on the cluster's login node, or run it here with hydra/launcher=joblib")
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")  # on one: Hydra's launcher runs
    assert missing_plugin(["-m", "hydra/launcher=slurm"]) is None


def test_sweep_command_line_errors(tmp_path: Path) -> None:
    cases = [
        (["seed=0,1", "resume=auto"], "resume= does not apply to a sweep"),
        # a sweep over a group choice keeps the unknown-key check (composed with the first choice)
        (["loss=hinge,nonsaturating", "trainer.stpes=10"], "unknown key trainer.stpes; did you mean trainer.steps?"),
        (["loss=choice(hinge,nonsaturating)", "optimizer.lrr=1"], "unknown key optimizer.lrr; did you mean optimizer.lr?"),
        # an evaluation metric that no job evaluates at its last step: refused before any job trains
        (["hparams_search=grid_optuna", "hydra.sweeper.n_trials=2", "trainer.steps=40", "trainer.eval_every=30"],
         "optimized_metric=modes is an evaluation metric, but no job would evaluate at its last step "
         "(trainer.eval_every=30, trainer.steps=40)"),
    ]
    for args, message in cases:
        proc = run_gantrain("-m", *args, cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"gantrain: error: {message}"), \
            (args, proc.returncode, proc.stderr[-2000:])
        assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()


def test_the_sweep_metric_check_leaves_logged_scalars_and_searched_intervals_alone() -> None:
    """Only an evaluation metric (modes, eval/...) needs evaluation at the last step; a logged scalar (grad/g,
    d/acc_fake) does not; a search over trainer.eval_every (hydra.sweeper.params) is each trial's own business."""
    from gantrain.commands.train import _check_command_line

    ring = ["dataset=ring", "trainer.steps=1500", "trainer.eval_every=1000"]
    for args in (["optimized_metric=grad/g", "loss=minimax,hinge"], ["optimized_metric=diag/diversity", "seed=0,1"],
                 ["hydra/sweeper=optuna", "optimized_metric=modes", "hydra.sweeper.params.trainer.eval_every=choice(500,1500)"]):
        assert _check_command_line(["-m", *ring, *args]) is None, args
    for metric in ("modes", "eval/modes"):
        with pytest.raises(GantrainError, match=f"optimized_metric={metric} is an evaluation metric, but no job"):
            _check_command_line(["-m", *ring, f"optimized_metric={metric}", "seed=0,1"])


def test_a_finished_job_whose_value_is_nan_fails_for_the_search(tmp_path: Path) -> None:
    """The value a finished job hands the sweeper: its last optimized_metric; a NaN (which no search can rank, and
    which stopped Optuna 2.x) is a FailedJob, and status.json says the job failed and why; a number passes as it is."""
    from gantrain.commands.train import _job_value

    job = tmp_path / "3"
    job.mkdir()
    sweep.write_status(job, status="finished", step=10)
    (job / "metrics.jsonl").write_text('{"step": 10, "loss/d": "nan", "loss/g": 0.5}\n')
    value = _job_value(job, "loss/d")
    assert isinstance(value, sweep.FailedJob) and str(value) == "3 failed: its last loss/d is NaN"
    with pytest.raises(ValueError):
        float(value)
    assert sweep.read_status(job)["status"] == "failed" and sweep.read_status(job)["reason"] == "its last loss/d is NaN"
    assert _job_value(job, "loss/g") == 0.5 and _job_value(job, None) is None


def test_sweep_and_run_folders_are_not_mixed(tmp_path: Path) -> None:
    """A sweep is refused a file, an impossible folder and a run's folder as hydra.sweep.dir; a run is refused a
    sweep's folder; a sweep refused because its folder holds another sweep leaves that sweep's multirun.yaml."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_run" / "checkpoints").mkdir(parents=True)
    for where, message in ((tmp_path / "a_file", f"hydra.sweep.dir={tmp_path / 'a_file'} is a file"),
                           (tmp_path / "a_file" / "x", f"cannot create or write the sweep folder {tmp_path / 'a_file' / 'x'}"),
                           (tmp_path / "a_run", f"hydra.sweep.dir={tmp_path / 'a_run'} is a run's folder, not a sweep's")):
        proc = run_gantrain("-m", "seed=0,1", *SMALL, f"hydra.sweep.dir={where}", cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"gantrain: error: {message}"), proc.stderr
    assert sorted(p.name for p in (tmp_path / "a_run").iterdir()) == ["checkpoints"]
    # a run in what would be a job's folder (no status.json: no sweep's job): refused before anything is written
    (tmp_path / "runs" / "0" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "0" / "checkpoints" / "last.pt").write_bytes(b"a run's")
    (tmp_path / "runs" / "0" / "metrics.jsonl").write_text('{"step": 1}\n')
    proc = run_gantrain("-m", "seed=0,1", *SMALL, f"hydra.sweep.dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"gantrain: error: hydra.sweep.dir={tmp_path / 'runs'} holds a run that is not a job of a sweep in 0/ "
        f"(checkpoints, metrics.jsonl, no status.json): a job there would be mixed into it; choose a new "
        f"hydra.sweep.dir"], proc.stderr
    assert [str(p.relative_to(tmp_path / "runs")) for p in sorted((tmp_path / "runs").rglob("*"))] == [
        "0", "0/checkpoints", "0/checkpoints/last.pt", "0/metrics.jsonl"]
    folder = tmp_path / "sweep"
    assert run_gantrain("-m", "seed=0,1", *SMALL, f"hydra.sweep.dir={folder}", cwd=tmp_path).returncode == 0
    record = (folder / "multirun.yaml").read_bytes()
    proc = run_gantrain(*SMALL, f"hydra.run.dir={folder}", cwd=tmp_path)
    assert proc.returncode == 2 and f"gantrain: error: {folder} is a sweep's folder" in proc.stderr
    proc = run_gantrain("-m", "seed=2,3", *SMALL, f"hydra.sweep.dir={folder}", cwd=tmp_path)
    assert proc.returncode == 2 and "holds another job" in proc.stderr
    assert (folder / "multirun.yaml").read_bytes() == record
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1"]


def test_a_failed_optuna_trial_is_recorded_as_failed_and_the_search_goes_on(tmp_path: Path) -> None:
    """A failed job hands Optuna's sweeper a value that is no number: the trial is recorded as failed and the other
    trials run and rank (a NaN stops the whole search with Optuna 2.x). When no trial finishes, the summary and one
    line end the sweep, not Optuna's traceback."""
    ring = [a for a in SMALL if not a.startswith("trainer.steps")] + ["trainer.steps=10", "optimized_metric=loss/d",
                                                                      "hydra/sweeper=optuna"]
    proc = run_gantrain("-m", *ring, "hydra/sweeper/sampler=grid", "trainer.n_critic=choice(0,1)",
                        "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path / 'search'}", cwd=tmp_path)
    rows = {r["trainer.n_critic"]: r for r in csv.DictReader((tmp_path / "search" / "summary.csv").open())}
    assert "Traceback" not in proc.stderr and proc.returncode == 1, proc.stderr[-3000:]
    assert rows["0"]["status"] == "failed" and rows["1"]["status"] == "finished"  # the grid: each value once
    assert f"job {rows['0']['job']} failed: trainer.n_critic=0 must be a positive integer" in proc.stdout
    from omegaconf import OmegaConf

    value = _last(tmp_path / "search" / rows["1"]["job"])["loss/d"]
    if (tmp_path / "search" / "optimization_results.yaml").exists():
        best = OmegaConf.load(tmp_path / "search" / "optimization_results.yaml")
        assert dict(best.best_params) == {"trainer.n_critic": 1} and best.best_value == value
    else:  # the grid ran the failing value last (its order is random)
        assert proc.stderr.strip().splitlines()[-1].startswith(
            "gantrain: error: the grid's last trial failed and Optuna's sweeper stopped there")
    # Optuna's sweeper writes no multirun.yaml: gantrain-report reads the metric and direction from the jobs' records
    again = subprocess.run([*_report_exe(), str(tmp_path / "search")], capture_output=True, text=True, timeout=120)
    assert f"best loss/d (minimize): {value:.4g}" in again.stdout, again.stdout + again.stderr
    for sampler, last in (("tpe", "no trial of the search finished, so it has no best"),
                          ("grid", "the grid's last trial failed and Optuna's sweeper stopped there")):
        folder = tmp_path / f"failed_{sampler}"
        proc = run_gantrain("-m", *ring, f"hydra/sweeper/sampler={sampler}", "trainer.n_critic=choice(0,-1)",
                            "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={folder}", cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert proc.stderr.strip().splitlines()[-1].startswith(f"gantrain: error: {last}")
        assert f"each failed job's status.json in {folder} says why it failed" in proc.stderr and "2 jobs, 2 failed" in proc.stdout


def test_the_slurm_launcher_config_names_the_keys_to_set() -> None:
    from hydra import compose, initialize_config_module

    from gantrain.config import register_resolvers

    register_resolvers()
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 1, 1)
    assert launcher.timeout_min > 0 and launcher.cpus_per_task > 0


def test_the_search_presets_compose() -> None:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from gantrain.config import register_resolvers

    register_resolvers()
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        grid = compose("config", overrides=["hparams_search=grid_optuna", "generator.hidden.0=512"], return_hydra_config=True)
        mnist = compose("config", overrides=["hparams_search=mnist_optuna"], return_hydra_config=True)
    assert OmegaConf.to_container(grid.generator, resolve=True)["hidden"] == [512, 512, 512]  # one width for all layers
    assert grid.optimized_metric == "modes" and grid.hydra.sweeper.direction == "maximize"
    assert grid.trainer.steps % grid.trainer.eval_every == 0 and grid.dataset._target_ == "gantrain.data.mixtures.Grid"
    assert mnist.optimized_metric == "fid_classifier" and mnist.hydra.sweeper.direction == "minimize"
    assert mnist.trainer.steps % mnist.trainer.eval_every == 0 and mnist.dataset._target_ == "gantrain.data.images.MNIST"
    assert set(mnist.hydra.sweeper.params) == {"optimizer.generator.lr", "optimizer.discriminator.lr", "optimizer.betas.0", "loss"}
    assert sweep.natural_direction("fid_classifier") == "minimize" and sweep.natural_direction("eval/modes") == "maximize"
    assert sweep.natural_direction("loss/g") == "minimize" and sweep.natural_direction("modes", "minimize") == "minimize"


def test_a_sweep_stopped_between_jobs_says_how_to_finish_it(tmp_path, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM) while Hydra sets the next job up: one line and 128+signal, not Hydra's traceback. The
    interrupt may reach gantrain as another error (OmegaConf's flag contexts turn a KeyboardInterrupt raised inside
    them into an AttributeError): the console script's note of it counts."""
    import signal

    import hydra._internal.utils as hydra_utils

    from gantrain.commands import start
    from gantrain.commands.train import _no_trial_finished_is_one_line

    monkeypatch.setitem(sweep.LAST_SWEEP, "dir", str(tmp_path / "sw"))

    def interrupted_setting_up():
        raise KeyboardInterrupt

    def lost_in_a_flag_context():
        raise AttributeError("'NoneType' object has no attribute '_invalidate_flags_cache'")

    for func, signum in ((interrupted_setting_up, signal.SIGINT), (lost_in_a_flag_context, signal.SIGTERM)):
        if func is lost_in_a_flag_context:
            monkeypatch.setattr(start, "_INTERRUPTED", True)
            monkeypatch.setattr(start, "_SIGNAL", int(signal.SIGTERM))
        with _no_trial_finished_is_one_line(), pytest.raises(SystemExit) as stop:
            hydra_utils.run_and_report(func)
        assert stop.value.code == 128 + signum
        assert capsys.readouterr().err.strip().splitlines() == [
            f"gantrain: sweep stopped. Finish it with the same command and "
            f"hydra.sweep.dir={tmp_path / 'sw'} (finished jobs are skipped)"]
    monkeypatch.setattr(start, "_INTERRUPTED", False)
    with _no_trial_finished_is_one_line(), pytest.raises(SystemExit) as failed:  # any other error: Hydra's report
        hydra_utils.run_and_report(lost_in_a_flag_context)
    assert failed.value.code == 1 and "_invalidate_flags_cache" in capsys.readouterr().err


def test_a_job_continued_on_its_own_keeps_its_status_and_the_report_true(tmp_path):
    # `gantrain resume=SWEEP/0 trainer.steps=N`: the job's status.json follows (it stayed at the sweep's step)
    from conftest import run_commands

    folder = tmp_path / "sw"
    first = run_gantrain("-m", "seed=0", *SMALL, f"hydra.sweep.dir={folder}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert sweep.read_status(folder / "0")["step"] == 20
    longer, = run_commands([("gantrain", f"resume={folder / '0'}", "trainer.steps=30")], cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr[-2000:]
    status = sweep.read_status(folder / "0")
    assert (status["status"], status["step"], status["steps"]) == ("finished", 30, 30)
    _, rows = sweep.report(folder)
    assert [(r["status"], r["step"]) for r in rows] == [("finished", 30)]
    assert rows[0]["values"]["loss/d"] == _last(folder / "0")["loss/d"]
    # continued again and stopped by an error while training (divergence, say): failed, and why
    diverged = subprocess.run([sys.executable, "-c", DIVERGES, f"resume={folder / '0'}", "trainer.steps=40"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert diverged.returncode == 2 and "training diverged" in diverged.stderr, diverged.stderr[-2000:]
    status = sweep.read_status(folder / "0")
    assert (status["status"], status["reason"], status["step"]) == ("failed", "training diverged: loss/d became nan", 30)


DIVERGES = """
import sys
from gantrain.commands import start
from gantrain.errors import GantrainError
from gantrain.training.loop import Loop

def fit(self):
    raise GantrainError("training diverged: loss/d became nan")

Loop.fit = fit
sys.argv = ["gantrain", *sys.argv[1:]]
start.start("gantrain")
"""


LOST_IN_SETUP = """
import sys
from gantrain.commands import start
import gantrain.training.run as run

def build(*args, **kwargs):  # a SIGTERM during a job's set-up, turned into another error by a library
    start._INTERRUPTED, start._SIGNAL = True, 15
    raise AttributeError("'NoneType' object has no attribute '_invalidate_flags_cache'")

run.build = build
sys.argv = ["gantrain", *sys.argv[1:]]
start.start("gantrain")
"""


def test_an_interrupt_a_library_lost_in_a_jobs_set_up_stops_the_sweep(tmp_path):
    # (the job's own `except Exception` would mark it failed and go on to the next job)
    folder = tmp_path / "sw"
    result = subprocess.run([sys.executable, "-c", LOST_IN_SETUP, "-m", "seed=0,1", *SMALL, f"hydra.sweep.dir={folder}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 128 + 15, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("gantrain: sweep stopped in job 0 (")
    assert "Finish it with the same command" in result.stderr and "Traceback" not in result.stderr
    assert sweep.read_status(folder / "0")["status"] == "interrupted" and not (folder / "1").exists()
    # a plain Ctrl-C there (a KeyboardInterrupt, no library in between): the same, and exit 130
    plain = LOST_IN_SETUP.replace('raise AttributeError("\'NoneType\' object has no attribute \'_invalidate_flags_cache\'")',
                                  "raise KeyboardInterrupt").replace("start._INTERRUPTED, start._SIGNAL = True, 15", "pass")
    assert "raise KeyboardInterrupt" in plain
    folder = tmp_path / "sw2"
    result = subprocess.run([sys.executable, "-c", plain, "-m", "seed=0,1", *SMALL, f"hydra.sweep.dir={folder}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("gantrain: sweep stopped in job 0 (")
    assert sweep.read_status(folder / "0")["status"] == "interrupted"
