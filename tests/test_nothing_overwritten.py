"""No command replaces or mixes into what a user already has without overwrite=true, also against a concurrent
writer; files follow the umask; gantrain-report refuses what is not a sweep; metric names are checked."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gantrain.commands import translate as gtranslate
from gantrain.errors import GantrainError

from conftest import run_command, run_commands, run_gantrain
from test_hardening import one_line_error, snapshot

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = ["dataset=digits", "trainer.device=cpu", "generator.base_channels=4", "discriminator.base_channels=4",
        "trainer.batch_size=16", "trainer.log_every=2", "trainer.sample_every=100", "trainer.ckpt_every=4",
        "trainer.steps=4", "trainer.progress=false"]



def command(name: str, *args: str, umask: int = 0o022) -> subprocess.CompletedProcess:
    return run_command(name, *args, timeout=300, umask=umask)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nothing-overwritten") / "run"
    result = run_gantrain(*TINY, f"hydra.run.dir={folder}", cwd=folder.parent)
    assert result.returncode == 0, result.stderr
    return folder


def test_sample_refuses_an_existing_file_unless_overwrite(run, tmp_path):
    names = ("grid.png", "arrays.npz")
    kept, replaced = [tmp_path / "kept" / name for name in names], [tmp_path / name for name in names]
    for out in kept + replaced:
        out.parent.mkdir(exist_ok=True)
        out.write_bytes(b"mine")
    results = run_commands([("gantrain-sample", str(run), f"out={out}", "n=4") for out in kept]
                           + [("gantrain-sample", str(run), f"out={out}", "n=4", "overwrite=true") for out in replaced],
                           cwd=tmp_path)
    for out, result in zip(kept, results):
        line = one_line_error(result, "gantrain-sample")
        assert f"out={out} exists; choose another name, or overwrite=true" in line and out.read_bytes() == b"mine"
    for out, done in zip(replaced, results[2:]):
        assert done.returncode == 0, done.stderr
        assert out.read_bytes() != b"mine" and out.stat().st_size > 100


def test_sample_never_mixes_into_a_folder_that_holds_files(run, tmp_path):
    folder = tmp_path / "fid"
    first = command("gantrain-sample", str(run), f"out={folder}", "n=3")
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["000000.png", "000001.png", "000002.png"]
    before = snapshot(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    *refused, fine = run_commands([("gantrain-sample", str(run), f"out={folder}", "n=5", "seed=1", *extra)
                                   for extra in ([], ["overwrite=true"])]
                                  + [("gantrain-sample", str(run), f"out={empty}", "n=2")], cwd=tmp_path)
    for result in refused:
        line = one_line_error(result, "gantrain-sample")
        assert "already holds 3 file(s); a folder of samples must be new or empty" in line
    assert snapshot(folder) == before
    assert fine.returncode == 0 and len(list(empty.iterdir())) == 2


def test_sample_accepts_the_runs_checkpoints_folder(run, tmp_path):
    out, reference = tmp_path / "from_checkpoints.npz", tmp_path / "from_run.npz"
    result, again = run_commands([("gantrain-sample", str(run / "checkpoints"), f"out={out}", "n=2"),
                                  ("gantrain-sample", str(run), f"out={reference}", "n=2")], cwd=tmp_path)
    assert result.returncode == 0 and again.returncode == 0, result.stderr + again.stderr
    assert np.array_equal(np.load(out)["samples"], np.load(reference)["samples"])


def test_export_refuses_existing_files_unless_overwrite(run, tmp_path):
    out, replaced = tmp_path / "g.pt", tmp_path / "replaced.pt"
    out.write_bytes(b"mine")
    replaced.write_bytes(b"mine")
    weights = tmp_path / "w.safetensors"
    (tmp_path / "w.json").write_text("{}")  # the sidecar's name is taken: nothing is written
    refused, done, sidecar = run_commands([("gantrain-export", str(run), "format=torchscript", f"out={out}"),
                                           ("gantrain-export", str(run), "format=torchscript", f"out={replaced}", "overwrite=true"),
                                           ("gantrain-export", str(run), "format=safetensors", f"out={weights}")], cwd=tmp_path)
    line = one_line_error(refused, "gantrain-export")
    assert f"{out} exists; choose another out=..., or overwrite=true" in line and out.read_bytes() == b"mine"
    assert done.returncode == 0, done.stderr
    assert torch.jit.load(str(replaced))(torch.zeros(2, 100)).shape[0] == 2
    line = one_line_error(sidecar, "gantrain-export")
    assert "w.json exists" in line and not weights.exists() and (tmp_path / "w.json").read_text() == "{}"


def test_files_users_share_follow_the_umask(tmp_path):
    folder = tmp_path / "run"
    outputs = run_commands([("gantrain", *TINY, f"hydra.run.dir={folder}"),
                            ("gantrain-sample", str(folder), f"out={tmp_path / 's.npz'}", "n=2"),
                            ("gantrain-sample", str(folder), f"out={tmp_path / 's.png'}", "n=2"),
                            ("gantrain-export", str(folder), "format=torchscript", f"out={tmp_path / 'g.pt'}")],
                           cwd=tmp_path, umask=0o027)
    assert all(r.returncode == 0 for r in outputs), [r.stderr for r in outputs]
    files = [folder / "checkpoints" / "last.pt", folder / "checkpoints" / "step_00000004.pt",
             tmp_path / "s.npz", tmp_path / "s.png", tmp_path / "g.pt"]
    assert {str(f): oct(f.stat().st_mode & 0o777) for f in files} == {str(f): "0o640" for f in files}


def test_translate_never_replaces_a_file_a_concurrent_writer_made(tmp_path, monkeypatch):
    """The existence check passes, then another process writes one of the outputs before this one does: that
    file is kept, and the command stops with one line."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "v0_6_0" / "run", run)
    images = FIXTURES / "v0_6_0" / "images" / "trainA"
    out = tmp_path / "out"
    from gantrain.nets.translation import Translator

    original = Translator.translate

    def translate_while_another_writes(self, x, direction):
        out.mkdir(exist_ok=True)
        (out / "0.png").write_bytes(b"the other process's file")
        return original(self, x, direction)

    monkeypatch.setattr(Translator, "translate", translate_while_another_writes)
    request = gtranslate.Request(input=images, out=out, direction="AtoB", device="cpu")
    with pytest.raises(GantrainError, match="0.png was written by another process meanwhile and is kept"):
        gtranslate.translate_files(run, request)
    assert (out / "0.png").read_bytes() == b"the other process's file"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_translated_files_follow_the_umask(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "v0_6_0" / "run", run)
    out = tmp_path / "out"
    result = command("gantrain-translate", str(run), f"input={FIXTURES / 'v0_6_0' / 'images' / 'trainA'}",
                     f"out={out}", "device=cpu", umask=0o027)
    assert result.returncode == 0, result.stderr
    assert {oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {"0o640"}
    assert all(Image.open(p).size for p in out.iterdir())


def test_report_refuses_a_folder_of_ordinary_runs_and_writes_nothing(run, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(run, runs / "a")
    before = snapshot(runs)
    line = one_line_error(command("gantrain-report", str(runs)), "gantrain-report")
    assert "is not a sweep folder" in line and "1 ordinary run(s)" in line
    assert snapshot(runs) == before


def test_report_refuses_a_metric_no_job_logs(tmp_path):
    sweep = tmp_path / "sweep"
    result, refused, ok = run_commands([("gantrain", "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={sweep}"),
                                        ("gantrain-report", str(sweep), "optimized_metric=loss/dd"),
                                        ("gantrain-report", str(sweep), "optimized_metric=loss/d", "direction=minimize")],
                                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = one_line_error(refused, "gantrain-report")
    assert "optimized_metric=loss/dd is logged by no job" in line and "did you mean loss/d?" in line
    assert ok.returncode == 0 and "best loss/d (minimize)" in ok.stdout


def test_best_metric_is_checked_also_when_evaluation_is_off(tmp_path):
    refused, fine = run_commands([("gantrain", *TINY, "trainer.best_metric=nope", f"hydra.run.dir={tmp_path / 'r'}"),
                                  ("gantrain", *TINY, "trainer.best_metric=fid_classifier", f"hydra.run.dir={tmp_path / 'ok'}")],
                                 cwd=tmp_path)
    line = one_line_error(refused)
    assert "trainer.best_metric=nope is not among the evaluated metrics (fid_classifier" in line
    assert not (tmp_path / "r").exists()
    assert fine.returncode == 0, fine.stderr
