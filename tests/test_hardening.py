"""Every input a user can give ends in one clear line (or a valid run), and two processes never share a run."""
import contextlib
import json
import logging
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import gantrain
from conftest import run_command, run_commands, run_gantrain
from gantrain.errors import GantrainError

pytestmark = pytest.mark.slow
TINY = ["dataset=digits", "trainer.device=cpu", "generator.base_channels=4", "discriminator.base_channels=4",
        "trainer.batch_size=16", "trainer.log_every=1", "trainer.sample_every=100", "trainer.ckpt_every=100"]


def exe(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def one_line_error(result: subprocess.CompletedProcess, command: str = "gantrain") -> str:
    """The single error line of a failed command (asserts there is exactly one and no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{command}: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A small finished run (20 steps, checkpoints at 10 and 20)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    result = run_gantrain(*TINY, "trainer.steps=20", "trainer.ckpt_every=10", "trainer.log_every=5",
                          f"hydra.run.dir={run}", cwd=run.parent)
    assert result.returncode == 0, result.stderr
    return run


def test_not_a_checkpoint_is_named_and_resume_writes_nothing(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello\n")
    (folder / "random.pt").write_bytes(random.Random(0).randbytes(3000))
    before = snapshot(folder)
    missing = tmp_path / "no such run"
    names = ("notes.txt", "random.pt")
    results = run_commands([case for name in names for case in (("gantrain", f"resume={folder / name}"),
                                                                 ("gantrain-eval", str(folder / name)))]
                           + [("gantrain", f"resume={missing}")], cwd=tmp_path)
    for i, name in enumerate(names):
        assert f"{folder / name} is not a gantrain checkpoint" in one_line_error(results[2 * i])
        assert "is not a gantrain checkpoint" in one_line_error(results[2 * i + 1], "gantrain-eval")
        with pytest.raises(GantrainError, match="is not a gantrain checkpoint"):
            gantrain.load_generator(folder / name)
    assert snapshot(folder) == before and sorted(p.name for p in folder.iterdir()) == ["notes.txt", "random.pt"]
    assert "no such run folder" in one_line_error(results[-1])
    assert not missing.exists()


def test_an_export_or_a_run_without_checkpoints_given_as_a_checkpoint_is_named(trained, tmp_path):
    """A TorchScript export passed where a checkpoint goes, and a run stopped before its first checkpoint: each
    command says which it is, in one line, and writes nothing."""
    export = tmp_path / "exports" / "g.pt"
    made = run_command("gantrain-export", str(trained), "format=torchscript", f"out={export}", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    stopped = tmp_path / "stopped"
    (stopped / "samples").mkdir(parents=True)
    (stopped / "metrics.jsonl").write_text('{"step": 1, "loss/d": 1.0}\n')
    exports, runs = snapshot(export.parent), snapshot(stopped)
    results = run_commands([("gantrain-eval", str(export)), ("gantrain-sample", str(export), f"out={tmp_path / 'x.png'}"),
                            ("gantrain", f"resume={export}"), ("gantrain-eval", str(stopped)),
                            ("gantrain-sample", str(stopped), f"out={tmp_path / 'y.png'}")], cwd=tmp_path)
    for result, command in zip(results[:3], ("gantrain-eval", "gantrain-sample", "gantrain")):
        assert one_line_error(result, command).endswith(
            f"{export} is a TorchScript export (gantrain-export), not a checkpoint: load it with torch.jit.load; "
            f"here, give a run folder or one of its checkpoints/*.pt"), command
    for result, command in zip(results[3:], ("gantrain-eval", "gantrain-sample")):
        assert one_line_error(result, command).endswith(
            f"the run in {stopped} stopped before its first checkpoint: there is nothing to load; train it again "
            f"there with its own command plus resume=auto hydra.run.dir={stopped}")
    assert snapshot(export.parent) == exports and snapshot(stopped) == runs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports", "stopped"]


def test_refused_resume_leaves_the_run_as_it_was(trained, tmp_path):
    before = snapshot(trained)
    line = one_line_error(run_gantrain(f"resume={trained}", "trainer.batch_size=8", cwd=tmp_path))
    assert "cannot resume" in line and "trainer.batch_size" in line
    assert snapshot(trained) == before


def test_a_refused_launch_into_a_run_without_a_lock_file_leaves_none(tmp_path):
    """A run folder with no .gantrain.lock (written by an older version, or copied): a refused launch there leaves
    the folder exactly as it was, lock file included."""
    run = tmp_path / "run"
    assert run_gantrain(*TINY, "trainer.steps=2", f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    (run / ".gantrain.lock").unlink()
    before = snapshot(run)
    line = one_line_error(run_gantrain(*TINY, "trainer.steps=2", f"hydra.run.dir={run}", cwd=tmp_path))
    assert "already holds a run" in line and snapshot(run) == before and not (run / ".gantrain.lock").exists()


def test_resume_given_the_runs_checkpoints_folder_continues_the_run(tmp_path):
    run = tmp_path / "run"
    assert run_gantrain(*TINY, "trainer.steps=2", f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    more = run_gantrain(f"resume={run / 'checkpoints'}", "trainer.steps=4", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert gantrain.checkpoint.load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "step_00000002.pt", "step_00000004.pt"]


def test_resume_of_a_folder_with_non_ascii_letters_and_spaces(tmp_path):
    run = tmp_path / "läufe ü" / "run é"
    first = run_gantrain(*TINY, "trainer.steps=3", f"hydra.run.dir='{run}'", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    more = run_gantrain(f"resume='{run}'", "trainer.steps=5", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert gantrain.checkpoint.load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 5


def test_seed_range(tmp_path):
    refused = ["1125899906842624", "-1", "abc", "2**70", "1.5"]
    results = run_commands([("gantrain", *TINY, "trainer.steps=1", f"seed={seed}", f"hydra.run.dir={tmp_path / f'run{i}'}")
                            for i, seed in enumerate(["4294967295", *refused])], cwd=tmp_path)
    assert results[0].returncode == 0, results[0].stderr
    for seed, result in zip(refused, results[1:]):
        assert "must be a whole number from 0 to 4294967295" in one_line_error(result), seed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run0"]  # a launch that never trained leaves no folder behind


EVAL_REFUSED = [
    (["metrics=[]"], "no metric named"),
    (["num_samples=-5"], "num_samples=-5 must be a positive"),
    (["num_samples=0"], "num_samples=0 must be a positive"),
    (["num_samples=abc"], "num_samples=abc must be a whole number"),
    (["seed=x"], "seed=x must be a whole number"),
    (["text_prompts=0"], "text_prompts=0 must be at least 1"),
    (["text_prompts=5"], "this run has none: leave it out"),  # not a text run
    (["num_samples=1"], "num_samples=1 is too few: the scores compare two sets of samples"),
    (["num_samples=3", "metrics=[precision]"], "num_samples=3 is too few for precision and recall"),
    (["seed=-1"], "seed=-1 must be a whole number from 0 to 2**63 - 1"),
    (["seed=99999999999999999999"], "seed=99999999999999999999 must be a whole number from 0 to 2**63 - 1"),
    (["ema=maybe"], "ema=maybe must be true (the EMA generator, when the run keeps one) or false"),
    (["num_samples", "=", "10"], "'num_samples = 10': write an option as key=value with no spaces around '=' "
                                 "(e.g. num_samples=10)"),
    (["num_samples=10", "dataset.image_size=16"], "the run's generator makes samples of shape (1, 8, 8), the data given "
                                                  "is (1, 16, 16)"),
]


def test_gantrain_eval_and_classifier_bad_options_are_one_line(trained, tmp_path):
    results = run_commands([("gantrain-eval", str(trained), *args) for args, _ in EVAL_REFUSED]
                           + [("gantrain-eval", ""), ("gantrain-classifier", "dataset=bogus"),
                              ("gantrain-classifier", "dataset=digits", "dataset.image_sz=16"),
                              ("gantrain-classifier", "dataset=image_folder", f"dataset.root={tmp_path / 'none'}")],
                           cwd=tmp_path)
    for (args, message), result in zip(EVAL_REFUSED, results):
        assert message in one_line_error(result, "gantrain-eval"), args
    assert one_line_error(results[-4], "gantrain-eval").endswith("give exactly one run folder or checkpoint file")
    assert "dataset=bogus" in one_line_error(results[-3], "gantrain-classifier")
    assert one_line_error(results[-1], "gantrain-classifier") == (  # a required key is no unknown key
        f"gantrain-classifier: error: dataset.root={tmp_path / 'none'} is not a folder; point it at a folder of images")
    assert one_line_error(results[-2], "gantrain-classifier") == (
        "gantrain-classifier: error: unknown key dataset.image_sz; did you mean dataset.image_size? this dataset's keys: "
        "image_size, on_device, subset")


def test_misspelled_keys_get_the_nearest_valid_key(tmp_path):
    cases = [(["los=wasserstein"], "unknown key los; did you mean loss?"),
             (["trainer.stpes=5"], "unknown key trainer.stpes; did you mean trainer.steps?"),
             (["dataset=ring", "dataset.num_mode=3"], "did you mean dataset.num_modes"),
             (["experiment=grid", "generator.hiden=[8]"], "did you mean generator.hidden?")]
    for (args, message), result in zip(cases, run_commands([("gantrain", *args) for args, _ in cases], cwd=tmp_path)):
        line = one_line_error(result)
        assert message in line and "+los" not in line, args


def test_run_folder_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("x")
    proc, blocked = run_commands([("gantrain", *TINY, "hydra.run.dir=/proc/gantrain-run"),
                                  ("gantrain", *TINY, f"hydra.run.dir={blocker / 'run'}")], cwd=tmp_path)
    line = one_line_error(proc)
    assert "/proc/gantrain-run" in line and "hydra.run.dir" in line
    assert str(blocker) in one_line_error(blocked)



def test_an_empty_folder_or_resume_value_is_refused_and_writes_nothing(tmp_path):
    # `hydra.run.dir=$OUT` with OUT unset: the run went into the current folder; `resume=$RUN`: a fresh run
    results = run_commands([("gantrain", *TINY, "hydra.run.dir= "), ("gantrain", "-m", *TINY, "seed=0,1", "hydra.sweep.dir="),
                            ("gantrain", *TINY, "resume=''"),
                            ("gantrain", "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sw'}", "hydra.sweep.subdir=")],
                           cwd=tmp_path)
    assert [one_line_error(r) for r in results] == [
        "gantrain: error: hydra.run.dir= is empty (an unset shell variable?); give the run's folder, or leave "
        "hydra.run.dir out for a new folder under outputs/",
        "gantrain: error: hydra.sweep.dir= is empty (an unset shell variable?); give the sweep's folder, or leave "
        "hydra.sweep.dir out for a new folder under outputs/multirun/",
        "gantrain: error: resume= is empty (an unset shell variable?); give the run folder or checkpoint to continue, "
        "resume=auto, or leave resume out for a new run",
        "gantrain: error: hydra.sweep.subdir= is empty (an unset shell variable?); give the jobs' folder names, or "
        "leave hydra.sweep.subdir out (the job numbers)"]
    assert list(tmp_path.iterdir()) == []


def test_run_folder_check_is_safe_when_processes_start_together(tmp_path):
    # torchrun starts every rank at once and each checks the same new run folder; one rank's check must
    # never trip over another's (a check that made and removed the run folder itself did, now and then).
    import threading

    from gantrain.commands.train import _check_command_line

    failures: list[str] = []

    def check(i: int) -> None:
        for _ in range(40):
            try:
                _check_command_line([f"hydra.run.dir={tmp_path / 'run'}"])
            except GantrainError as exc:
                failures.append(str(exc))
                return

    threads = [threading.Thread(target=check, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and sorted(p.name for p in tmp_path.iterdir()) == []  # no probe left behind


def test_console_names_the_run_folder_and_tensorboard_at_the_start(tmp_path):
    run = tmp_path / "run"
    result = run_gantrain(*TINY, "trainer.steps=2", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    first = out.index(f"run folder: {run}")
    assert f"tensorboard --logdir {run}" in out and first < out.index("training from scratch")


def test_two_processes_never_share_a_run_folder(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([exe("gantrain"), *TINY, "resume=auto", "trainer.steps=100000", f"hydra.run.dir={run}"],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text():
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.2)
        second = run_gantrain(*TINY, "resume=auto", "trainer.steps=100000", f"hydra.run.dir={run}", cwd=tmp_path)
        line = one_line_error(second)
        assert f"in use by process {first.pid}" in line
        assert len(list((run / "tb").iterdir())) == 1 and len(list((run / ".hydra").iterdir())) == 3  # untouched
    finally:
        first.kill()  # SIGKILL: the OS releases the lock; no stale lock is left
        first.communicate()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # every step once, in order
    third = run_gantrain(*TINY, "resume=auto", "trainer.steps=3", f"hydra.run.dir={run}", cwd=tmp_path)
    assert third.returncode == 0, third.stderr


def test_partial_evaluation_merges_into_eval_json(trained):
    def evaluate(*args):
        result = run_command("gantrain-eval", str(trained), "num_samples=300", *args)
        assert result.returncode == 0, result.stderr
        return json.loads((trained / "eval.json").read_text())

    full = evaluate("metrics=[fid_classifier,precision,recall]")
    partial = evaluate("metrics=[classes]")
    assert set(partial["metrics"]) == {"fid_classifier", "precision", "recall", "classes"}
    assert partial["metrics"]["fid_classifier"] == full["metrics"]["fid_classifier"]
    other = evaluate("metrics=[classes]", "seed=1")  # other samples: a new file, the old one kept beside it
    assert set(other["metrics"]) == {"classes"}
    kept = json.loads((trained / "eval.20.0.json").read_text())
    assert set(kept["metrics"]) == {"fid_classifier", "precision", "recall", "classes"}
    # the run given as its checkpoints/ folder, or from inside it: the same eval.json beside the run, merged
    result = run_command("gantrain-eval", str(trained / "checkpoints"), "num_samples=300", "seed=1", "metrics=[recall]")
    assert result.returncode == 0 and not (trained / "checkpoints" / "eval.json").exists(), result.stderr
    result = run_command("gantrain-eval", ".", "num_samples=300", "seed=1", "metrics=[precision]", cwd=trained)
    assert result.returncode == 0, result.stderr
    merged = json.loads((trained / "eval.json").read_text())
    assert set(merged["metrics"]) == {"classes", "recall", "precision"} and not (trained / "eval.20.1.json").exists()
    assert merged["checkpoint"] == str((trained / "checkpoints" / "last.pt").resolve())


BAD_VALUES = ["-1", "0", "abc", "[1,2]", "null", "2.5", "true", "''", "{a: 1}"]


def leaf_keys(node, prefix=""):
    out = []
    for key, value in node.items():
        if str(key).startswith("_"):
            continue
        if isinstance(value, dict):
            out += leaf_keys(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def test_random_bad_values_end_in_one_line_or_a_valid_run(tmp_path):
    from omegaconf import OmegaConf

    base = TINY + ["trainer.steps=2", "trainer.progress=false"]
    keys = [k for k in leaf_keys(OmegaConf.to_container(gantrain.compose(base), resolve=True))
            if k not in ("resume", "trainer.steps")]  # resume takes paths; any valid steps value is a (long) valid run
    rng = random.Random(int(os.environ.get("GANTRAIN_FUZZ_SEED", "2026")))
    cases = [f"{rng.choice(keys)}={rng.choice(BAD_VALUES)}" for _ in range(5)]
    # words that are always refused: an unknown option of a group, a stray word, an unquoted non-ASCII value
    groups = ["dataset", "generator", "discriminator", "loss", "optimizer", "experiment", "model"]
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(3, 9)))
    refused = [f"{rng.choice(groups)}={word}x", word, f"{rng.choice(keys)}=ünï{word}", f"-m {rng.choice(groups)}=hinge,{word}"]
    runs = [tmp_path / f"case{i}" for i in range(len(cases + refused))]
    results = run_commands([("gantrain", *base, *case.split(), f"hydra.run.dir={run}")
                            for case, run in zip(cases + refused, runs)], cwd=tmp_path)
    for case, run, result in zip(cases + refused, runs, results):
        if result.returncode == 0 and case in cases:
            assert (run / "checkpoints" / "last.pt").is_file(), case
        else:
            one_line_error(result)
            assert case in cases or not run.exists(), case  # nothing written for a refused command line


def test_a_launch_refused_by_a_run_in_the_same_dated_folder_takes_its_record_back(tmp_path, monkeypatch):
    """Two launches in one second share Hydra's dated folder: the second, refused because the first holds the run,
    removes the .hydra/<time> record it wrote beside the first's and touches nothing else."""
    from gantrain.commands import train as command

    run = tmp_path / "outputs" / "2026-12-07" / "04-00-00"
    (run / ".hydra" / "04-00-00").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (run / ".hydra" / "04-00-00" / "overrides.yaml").write_text("- seed=2\n")
    (run / "gantrain.log").write_text("the first run's lines\n")
    (run / ".gantrain.lock").write_text("")
    before = {k: v for k, v in snapshot(run).items() if "04-00-00" not in k}
    monkeypatch.setattr(command, "_LAUNCH", {"run_dir": (tmp_path / "outputs").resolve(), "fresh": True,
                                             "existed": True, "own_record": ".hydra/04-00-00"})
    command._undo_launch(run, log_size=None, busy=True)
    assert snapshot(run) == before and not (run / ".hydra" / "04-00-00").exists()


def test_python_api_mistakes_are_one_gantrain_error_and_leave_nothing(trained, tmp_path):
    """What a notebook user meets: a device this machine lacks, compose given a string, a run folder that cannot be
    made or is no path, a config refused before training (its folder, made by the call, goes again)."""
    with pytest.raises(GantrainError, match=r"^device='bogus' is not a device torch knows \(cpu, cuda, cuda:N, mps, ...\)$"):
        gantrain.load_generator(trained, device="bogus")
    with pytest.raises(GantrainError, match=r"^device=cuda:99 but (no CUDA device is available here|only \d+ CUDA)"):
        gantrain.load_generator(trained, device="cuda:99")  # this machine's GPUs, if any, are fewer
    with pytest.raises(GantrainError, match=r"^compose takes a list of overrides such as \["):
        gantrain.compose("loss=hinge")
    with pytest.raises(GantrainError, match=r"^resume= is empty; give the run folder or checkpoint to continue"):
        gantrain.compose(TINY + ["resume="])  # f"resume={run}" with run an empty string: no new run instead
    cfg = gantrain.compose(TINY + ["trainer.batch_size=5000"])
    with pytest.raises(GantrainError, match="trainer.batch_size=5000 is larger than the dataset"):
        gantrain.train(cfg, tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()  # the folders the call made, parents included
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine\n")
    with pytest.raises(GantrainError, match="is larger than the dataset"):
        gantrain.train(cfg, tmp_path / "kept")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["notes.txt"]
    with pytest.raises(GantrainError, match=r"^cannot create the run folder /proc/nope/x "):
        gantrain.train(cfg, "/proc/nope/x")
    with pytest.raises(GantrainError, match=r"^run_dir=None must be the path of the run's folder$"):
        gantrain.train(cfg, None)


def test_eval_json_is_strict_json_with_non_finite_scores_as_text():
    """A score can be NaN (an untrained text run's correlations): eval.json writes it as "nan", as metrics.jsonl
    does, so that strict JSON readers (JavaScript, jq) read the file."""
    import math

    from gantrain.commands.evaluate import _strict

    report = {"metrics": {"a": math.nan, "b": 1.5, "c": -math.inf}, "per_class": {"x": [0.5, math.nan, None]},
              "step": 3, "settings": {"seed": 0}}
    text = json.dumps(_strict(report), allow_nan=False)
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}")) == {
        "metrics": {"a": "nan", "b": 1.5, "c": "-inf"}, "per_class": {"x": [0.5, "nan", None]}, "step": 3,
        "settings": {"seed": 0}}


def test_an_evaluation_merges_into_the_eval_json_of_earlier_versions():
    """eval.json of versions before 0.13.1 recorded the checkpoint as typed (often relative): the same checkpoint
    given now (recorded absolute) is recognised, so the scores merge instead of the file being set aside."""
    from gantrain.commands.evaluate import _same_checkpoint

    new = "/home/me/runs/gp/checkpoints/last.pt"
    for old in ("runs/gp/checkpoints/last.pt", "./runs/gp/checkpoints/last.pt", "gp/checkpoints/last.pt", new):
        assert _same_checkpoint(old, new), old
    for old in ("runs/other/checkpoints/last.pt", "../gp/checkpoints/last.pt", "/elsewhere/gp/checkpoints/last.pt",
                "runs/gp/checkpoints/step_00000010.pt", "", None):
        assert not _same_checkpoint(old, new), old


@contextlib.contextmanager
def root_logging_kept():
    """The root logger's handlers and level as they were: Hydra's main, run in this process, configures logging with
    handlers on this test's captured streams, which a later test in the same process would write to once closed."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_ctrl_c_after_hydra_made_the_run_folder_and_before_the_job_began_leaves_nothing(tmp_path, monkeypatch, capsys):
    import sys

    import gantrain.commands.train as train_command

    def interrupted(cfg):  # as a Ctrl-C that lands after Hydra made the folder, its record and log, before the job
        raise KeyboardInterrupt

    monkeypatch.setattr(train_command, "_task", interrupted)
    monkeypatch.setattr(train_command, "_LAUNCH", {})
    monkeypatch.setattr(sys, "argv", ["gantrain", "trainer.steps=1", f"hydra.run.dir={tmp_path / 'run'}"])
    with pytest.raises(SystemExit) as stop, root_logging_kept():
        train_command.main()
    assert stop.value.code == 130
    assert capsys.readouterr().err.endswith(
        "gantrain: interrupted before training started; nothing of this launch was kept\n")
    assert not (tmp_path / "run").exists()  # Hydra had made it, with .hydra/ and gantrain.log


def test_a_ctrl_c_that_a_library_lost_still_stops_the_command_before_it_commits(tmp_path, monkeypatch, capsys):
    """OmegaConf's flag contexts can turn a KeyboardInterrupt into another error, which a caller's `except
    Exception` swallows: the console script's handler notes every Ctrl-C, and the commands read the note before
    they train or write (here the note is set as that handler sets it)."""
    import sys

    import gantrain
    import gantrain.commands.start as start
    import gantrain.commands.train as train_command
    from gantrain.commands.evaluate import eval_main

    run = gantrain.train(gantrain.compose(["trainer.steps=1", "trainer.device=cpu", "generator.base_channels=4",
                                           "discriminator.base_channels=4", "trainer.batch_size=8",
                                           "trainer.eval_every=0"]), tmp_path / "run")
    capsys.readouterr()
    monkeypatch.setattr(start, "_INTERRUPTED", True)
    with pytest.raises(SystemExit) as stop:
        eval_main([str(run), "metrics=[classes]", "num_samples=10", "device=cpu"])
    assert stop.value.code == 130 and capsys.readouterr().err == "gantrain-eval: interrupted; nothing was written\n"
    assert not (run / "eval.json").exists()
    monkeypatch.setattr(train_command, "_LAUNCH", {})
    monkeypatch.setattr(sys, "argv", ["gantrain", "trainer.steps=1", f"hydra.run.dir={tmp_path / 'new'}"])
    with pytest.raises(SystemExit) as stop, root_logging_kept():
        train_command.main()
    assert stop.value.code == 130
    assert capsys.readouterr().err.endswith("gantrain: interrupted before training started; nothing of this launch was kept\n")
    assert not (tmp_path / "new").exists()
