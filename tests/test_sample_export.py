"""gantrain-sample and gantrain-export: pictures, folders and arrays of samples from a trained run, and the
generator exported as safetensors, TorchScript and ONNX, checked against the PyTorch generator.

Three tiny real runs are trained once (an 8x8 digits DCGAN with EMA, the 2D grid MLP and the conditional
digits DCGAN); a small conditional Generator defined here covers the conditional paths in detail.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import gantrain
from gantrain.commands import export as gexport
from gantrain.commands import sample as gsample
from gantrain.data.base import to_uint8_image
from gantrain.errors import GantrainError
from gantrain.nets.base import Generator
from conftest import run_command

TINY = ["dataset=digits", "trainer.device=cpu", "trainer.steps=2", "trainer.batch_size=16", "generator.base_channels=4",
        "discriminator.base_channels=4", "trainer.log_every=1", "trainer.sample_every=100", "trainer.ckpt_every=100",
        "trainer.ema_decay=0.9"]
GRID = ["experiment=grid", "trainer.device=cpu", "trainer.steps=2", "trainer.batch_size=64", "trainer.eval_every=0",
        "trainer.log_every=1", "trainer.sample_every=100", "trainer.ckpt_every=100"]
CGAN = ["experiment=cgan_digits", *TINY[1:]]  # 10 classes
LATENT = 100  # the DCGAN's default latent_dim
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated")  # torch 2.10+ (Future- or DeprecationWarning)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {"image": gantrain.train(gantrain.compose(TINY), root / "image"),
            "points": gantrain.train(gantrain.compose(GRID), root / "points"),
            "conditional": gantrain.train(gantrain.compose(CGAN), root / "conditional")}


@pytest.fixture(scope="module")
def g(runs: dict[str, Path]) -> Generator:
    return gantrain.load_generator(runs["image"])


def command(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a real console script (next to sys.executable, else `python -m gantrain.<module>`)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return run_command(name, *args, cwd=cwd, timeout=300, env=env)


def call(main, args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a command's main() run in this process."""
    args = [str(a) for a in args]
    if main is gsample.main and args and not any(a.startswith("device=") for a in args):
        args.append("device=cpu")  # compared with CPU results: the same on a machine with CUDA
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str, prog: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def seeded_z(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class TinyConditional(Generator):
    """A small class-conditional generator: z and a label embedding through one linear layer to 8x8 images."""

    def __init__(self, out_shape=(1, 8, 8), latent_dim: int = 4, num_classes: int = 3, bounded: bool = True):
        super().__init__()
        self.latent_dim, self.out_shape, self.num_classes = latent_dim, tuple(out_shape), num_classes
        self.embed = nn.Embedding(num_classes, 3)
        self.net = nn.Linear(latent_dim + 3, int(np.prod(out_shape)))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(torch.cat([z, self.embed(y)], 1))).view(z.shape[0], *self.out_shape)


@pytest.fixture()
def tiny_conditional(monkeypatch: pytest.MonkeyPatch) -> TinyConditional:
    """A conditional generator that gantrain-sample's main() loads for any existing path."""
    torch.manual_seed(0)
    model = TinyConditional().eval()
    monkeypatch.setattr(gantrain.api, "load_generator", lambda path, device="cpu", ema=True: model.to(device))
    return model


# ---- gantrain-sample: the real command -------------------------------------------------------------


def test_command_writes_a_default_grid_in_the_current_folder(runs, tmp_path):
    result = command("gantrain-sample", str(runs["image"]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "samples.png").is_file()
    assert "samples.png" in result.stdout.strip().splitlines()[-1]
    assert png_size(tmp_path / "samples.png") == (8 * 10 + 2, 8 * 10 + 2)  # 64 8x8 digits, 8 a row, 2 px padding


def test_command_error_is_one_line_exit_2(runs, tmp_path):
    result = command("gantrain-sample", str(runs["image"]), "nn=3", cwd=tmp_path)
    assert result.returncode == 2
    line = one_error_line(result.stderr, "gantrain-sample")
    assert "unknown option nn" in line and "n=" in line and "truncation=" in line
    assert not list(tmp_path.iterdir())


def test_help_prints_the_usage(capsys):
    code, out, _ = call(gsample.main, ["--help"], capsys)
    assert code == 0 and "gantrain-sample" in out and "interpolate=K" in out and "truncation=" in out
    code, out, _ = call(gexport.main, ["-h"], capsys)
    assert code == 0 and "format=" in out and "onnx" in out


# ---- gantrain-sample: outputs ------------------------------------------------------------------------


def test_png_grid_size(runs, tmp_path, capsys):
    out = tmp_path / "sub" / "grid.png"  # a missing folder is made
    code, stdout, err = call(gsample.main, [runs["image"], "n=10", f"out={out}"], capsys)
    assert code == 0, err
    assert str(out) in stdout
    assert png_size(out) == (5 * 10 + 2, 2 * 10 + 2)  # 5 a row, 2 full rows


def test_npz_holds_samples_of_the_seeded_noise(runs, g, tmp_path, capsys):
    out = tmp_path / "s.npz"
    code, _, err = call(gsample.main, [runs["image"], "n=6", "seed=3", f"out={out}", "device=cpu"], capsys)
    assert code == 0, err
    data = np.load(out)
    assert set(data.files) == {"samples", "z"}  # no labels: unconditional
    assert data["samples"].shape == (6, 1, 8, 8) and data["samples"].dtype == np.float32
    z = torch.from_numpy(data["z"])
    assert torch.equal(z, seeded_z(3, 6, LATENT))
    with torch.no_grad():
        assert np.allclose(data["samples"], g(z).numpy(), atol=1e-6)
    assert -1 <= data["samples"].min() and data["samples"].max() <= 1


def test_same_seed_same_output_other_seed_other_output(runs, tmp_path, capsys):
    files = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        for suffix in ("png", "npz"):
            files[name, suffix] = tmp_path / f"{name}.{suffix}"
            code, _, err = call(gsample.main, [runs["image"], "n=9", f"seed={seed}", f"out={files[name, suffix]}"], capsys)
            assert code == 0, err
    assert files["a", "png"].read_bytes() == files["b", "png"].read_bytes()
    assert files["a", "png"].read_bytes() != files["c", "png"].read_bytes()
    a, b, c = (np.load(files[k, "npz"])["samples"] for k in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_folder_of_pngs(runs, g, tmp_path, capsys):
    out = tmp_path / "fid"
    code, _, err = call(gsample.main, [runs["image"], "n=5", "seed=2", f"out={out}"], capsys)
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:06d}.png" for i in range(5)]
    with torch.no_grad():
        expected = to_uint8_image(g(seeded_z(2, 5, LATENT)))
    for i, name in enumerate(names):
        with Image.open(out / name) as image:
            assert image.size == (8, 8) and image.mode == "L"
            assert np.array_equal(np.asarray(image), expected[i, 0].numpy())
    # an existing folder receives them too, whatever its name
    dotted = tmp_path / "run.v2"
    dotted.mkdir()
    assert call(gsample.main, [runs["image"], "n=2", f"out={dotted}"], capsys)[0] == 0
    assert len(list(dotted.glob("*.png"))) == 2
    # a name with a slash after it is a folder, even one ending in .png
    assert call(gsample.main, [runs["image"], "n=2", f"out={tmp_path / 'shots.png'}/"], capsys)[0] == 0
    assert sorted(p.name for p in (tmp_path / "shots.png").iterdir()) == ["000000.png", "000001.png"]


def test_interpolation_strip(runs, g, tmp_path, capsys):
    out = tmp_path / "walk.npz"
    code, _, err = call(gsample.main, [runs["image"], "n=3", "interpolate=5", "seed=4", f"out={out}"], capsys)
    assert code == 0, err
    data = np.load(out)
    assert data["samples"].shape == (15, 1, 8, 8)
    z = torch.from_numpy(data["z"]).view(3, 5, LATENT)
    ends = seeded_z(4, 2, 3, LATENT)
    assert torch.equal(z[:, 0], ends[0]) and torch.equal(z[:, -1], ends[1])
    samples = torch.from_numpy(data["samples"]).view(3, 5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(samples[:, 0], g(ends[0]), atol=1e-6)
        assert torch.allclose(samples[:, -1], g(ends[1]), atol=1e-6)
    picture = tmp_path / "walk.png"
    assert call(gsample.main, [runs["image"], "n=3", "interpolate=5", f"out={picture}"], capsys)[0] == 0
    assert png_size(picture) == (5 * 10 + 2, 3 * 10 + 2)  # a row of 5 steps per strip


def test_slerp_walks_the_great_circle():
    a, b = seeded_z(0, 2, 16)
    a, b = a / a.norm(), b / b.norm()
    path = gsample.slerp(a[None], b[None], 9)[0]
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    assert torch.allclose(path.norm(dim=1), torch.ones(9), atol=1e-5)  # stays on the sphere
    steps = torch.acos((path[:-1] * path[1:]).sum(1).clamp(-1, 1))
    assert torch.allclose(steps, steps.mean().expand(8), atol=1e-4)  # equal angles
    same = gsample.slerp(a[None], a[None], 4)[0]  # no great circle between a point and itself
    assert torch.allclose(same, a.expand(4, -1))


def test_slerp_between_vectors_of_any_length_and_angle():
    for a, b in (([1.0, 0.0], [2.0, 2.0]), ([0.5, 0.0], [-1.0, 1.0]), ([0.3, 0.4], [0.0, -0.2])):
        a, b = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
        omega = torch.acos((a / a.norm()) @ (b / b.norm()).t()).item()  # 45, 135 and 143 degrees
        path = gsample.slerp(a, b, 5)[0]
        for i, t in enumerate(torch.linspace(0, 1, 5, dtype=torch.float64).tolist()):
            expected = (math.sin((1 - t) * omega) * a[0] + math.sin(t * omega) * b[0]) / math.sin(omega)
            torch.testing.assert_close(path[i], expected)


def test_sample_syntax_of_labels_truncation_and_strips():
    assert gsample._labels("3") == 3 and gsample._labels("10") == 10 and gsample._labels(" 09 ") == 9
    assert gsample._labels("[3,3,5]") == [3, 3, 5] and gsample._labels("3, 5") == [3, 5]
    assert gsample._labels("[4") == [4] and gsample._labels("7]") == [7]  # one bracket is enough to mean a list
    for text, words in (("[]", "names no class"), ("[3,]", "(empty) is not a class number"), ("x", "x is not")):
        with pytest.raises(GantrainError, match=re.escape(words)):
            gsample._labels(text)
    assert gsample._truncation("0.7") == 0.7 and gsample._truncation("1") == 1.0 and gsample._truncation("2.5") == 2.5
    for text in ("0", "-1", "inf", "nan", "x"):
        with pytest.raises(GantrainError, match="must be a number > 0"):
            gsample._truncation(text)
    assert gsample._strip("0:1:6") == (0.0, 1.0, 6) and gsample._strip("0.2:0.8:2") == (0.2, 0.8, 2)
    assert gsample._strip("1:0:3") == (1.0, 0.0, 3)  # from A down to B
    for text in ("0:1", "0:1:6:7", "0:1:1", "-0.1:1:3", "0:-1:3", "inf:1:3", "0:inf:3", "a:1:3", "0:1:x", ""):
        with pytest.raises(GantrainError, match="is not a strip A:B:K"):
            gsample._strip(text)


def test_plan_labels_sizes_the_grid_and_names_the_first_bad_label():
    Request = gsample.Request
    assert gsample.plan_labels(Request(), None) == (64, None, 8)  # 64 samples, rows of 8
    assert gsample.plan_labels(Request(n=1, n_given=True), None) == (1, None, 1)
    assert gsample.plan_labels(Request(n=10, n_given=True), None) == (10, None, 5)  # two full rows
    assert gsample.plan_labels(Request(interpolate=10), None) == (8, None, 10)  # 8 rows of 10 steps
    n, y, nrow = gsample.plan_labels(Request(n=4, n_given=True, labels=9), 10)
    assert (n, y.tolist(), nrow) == (4, [9, 9, 9, 9], 2)
    for labels, first in ((10, 10), ([3, 11, 15], 11), ([-1], -1)):
        with pytest.raises(GantrainError) as error:
            gsample.plan_labels(Request(labels=labels), 10)
        assert str(error.value) == (f"label {first} is outside this run's classes 0..9; give labels between 0 and 9")


def test_truncation_keeps_every_component_inside():
    rng = torch.Generator().manual_seed(0)
    z = gsample.truncated_normal((2000, 32), 0.5, rng)
    assert z.abs().max() <= 0.5 and z.shape == (2000, 32)
    assert z.std() > 0.2  # still spread over the interval
    assert torch.equal(gsample.truncated_normal((5, 3), None, torch.Generator().manual_seed(1)), seeded_z(1, 5, 3))
    assert gsample.truncated_normal((100, 8), 1e-2, rng).abs().max() <= 1e-2
    # a tiny psi: after REDRAWS rounds of redrawing, what is left is drawn by inverse CDF, so it cannot stall
    tiny = gsample.truncated_normal((64, 16), 1e-7, torch.Generator().manual_seed(2))
    assert tiny.abs().max() <= 1e-7 and bool((tiny != 0).any()) and bool(tiny.isfinite().all())
    moderate = gsample.truncated_normal((4000,), 0.05, torch.Generator().manual_seed(3))
    assert moderate.abs().max() <= 0.05 and moderate.mean().abs() < 0.005  # centred on 0 over the interval
    assert 0.026 < moderate.std() < 0.032  # near uniform there: 0.05 / sqrt(3) = 0.0289


def test_the_inverse_cdf_fallback_draws_the_truncated_normal(monkeypatch):
    """With no redraws at all, every value beyond psi comes from the fallback: the whole sample must still be a
    standard normal truncated to [-1, 1] (mean 0, std 0.5396, mean |z| 0.4599)."""
    monkeypatch.setattr(gsample, "REDRAWS", 0)
    z = gsample.truncated_normal((40000,), 1.0, torch.Generator().manual_seed(8)).double()
    mass = 2 * 0.8413447460685429 - 1  # P(|z| <= 1)
    density = 0.24197072451914337  # the standard normal density at 1
    assert z.abs().max() <= 1.0 and abs(float(z.mean())) < 0.01
    assert float(z.std()) == pytest.approx(math.sqrt(1 - 2 * density / mass), abs=0.006)
    assert float(z.abs().mean()) == pytest.approx(2 * (0.3989422804014327 - density) / mass, abs=0.006)
    outside = torch.randn(40000, generator=torch.Generator().manual_seed(8)).abs() > 1.0
    assert 0.3 < float(outside.double().mean()) < 0.34  # about a third of the values came from the fallback


def test_truncation_redraws_exactly_as_a_plain_rejection_sampler_when_it_suffices():
    """For a usual psi every value lands inside within the redraws: the draws are those of plain rejection."""
    def rejection(shape, psi, rng):
        z = torch.randn(*shape, generator=rng)
        while bool((z.abs() > psi).any()):
            outside = z.abs() > psi
            z[outside] = torch.randn(int(outside.sum()), generator=rng)
        return z

    for psi in (0.3, 0.7, 2.0):
        assert torch.equal(gsample.truncated_normal((50, 8), psi, torch.Generator().manual_seed(5)),
                           rejection((50, 8), psi, torch.Generator().manual_seed(5)))


def test_truncation_applies_to_the_command(runs, tmp_path, capsys):
    out = tmp_path / "t.npz"
    assert call(gsample.main, [runs["image"], "n=40", "truncation=0.3", f"out={out}"], capsys)[0] == 0
    assert np.abs(np.load(out)["z"]).max() <= 0.3


def test_raw_generator_with_ema_false(runs, tmp_path, capsys):
    outs = {}
    for ema in ("true", "false"):
        outs[ema] = tmp_path / f"{ema}.npz"
        assert call(gsample.main, [runs["image"], "n=4", f"ema={ema}", f"out={outs[ema]}"], capsys)[0] == 0
    raw = gantrain.load_generator(runs["image"], ema=False)
    with torch.no_grad():
        assert np.allclose(np.load(outs["false"])["samples"], raw(seeded_z(0, 4, LATENT)).numpy(), atol=1e-6)
    assert not np.array_equal(np.load(outs["true"])["samples"], np.load(outs["false"])["samples"])


def test_points_scatter_and_npz(runs, tmp_path, capsys):
    picture, arrays = tmp_path / "points.png", tmp_path / "points.npz"
    assert call(gsample.main, [runs["points"], "n=300", f"out={picture}"], capsys)[0] == 0
    with Image.open(picture) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (480, 480, 3)
    colours = {tuple(c) for c in pixels.reshape(-1, 3)}
    assert (220, 30, 30) in colours and (170, 170, 170) in colours  # samples red over the data in grey
    assert call(gsample.main, [runs["points"], "n=50", f"out={arrays}"], capsys)[0] == 0
    data = np.load(arrays)
    assert data["samples"].shape == (50, 2) and data["samples"].dtype == np.float32
    code, _, err = call(gsample.main, [runs["points"], f"out={tmp_path / 'folder'}"], capsys)
    assert code == 2 and "2D points" in one_error_line(err, "gantrain-sample")


# ---- gantrain-sample: mistakes -----------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["bogus=1"], ["unknown option bogus", "n=", "labels=", "device="]),
    (["seeds=1"], ["unknown option seeds", "did you mean seed="]),
    (["n=0"], ["n=0", "whole number >= 1"]),
    (["n=2.5"], ["n=2.5", "whole number"]),
    (["n=lots"], ["n=lots", "whole number"]),
    (["seed=-1"], ["seed=-1", "whole number >= 0"]),
    (["labels=3"], ["unconditional", "leave labels out"]),
    (["per_class=true"], ["per_class", "unconditional"]),
    (["per_class=maybe"], ["per_class=maybe", "true or false"]),
    (["truncation=0"], ["truncation=0", "> 0"]),
    (["truncation=-0.5"], ["truncation=-0.5", "> 0"]),
    (["truncation=nan"], ["truncation=nan", "> 0"]),
    (["truncation=big"], ["truncation=big", "> 0"]),
    (["interpolate=1"], ["interpolate=1", ">= 2"]),
    (["device=tpu"], ["device=tpu", "cpu"]),
    (["out=x.jpg"], ["x.jpg", ".png", ".npz"]),
    (["out={file}/x.png"], ["is a file, not a folder"]),
    (["out={file}"], ["exists and is not a folder"]),
    (["{run}"], ["exactly one run folder"]),
])
def test_sample_mistakes_are_one_line(runs, tmp_path, capsys, args, words):
    file = tmp_path / "afile"
    file.write_text("x")
    argv = [runs["image"]] + [a.format(file=file, run=runs["image"]) for a in args]
    code, out, err = call(gsample.main, argv, capsys)
    assert code == 2
    line = one_error_line(err, "gantrain-sample")
    for word in words:
        assert word in line, line
    assert out == ""


def test_sample_missing_run_and_unwritable_out(runs, tmp_path, capsys):
    code, _, err = call(gsample.main, [tmp_path / "no_such_run"], capsys)
    assert code == 2 and "no such run folder" in one_error_line(err, "gantrain-sample")
    code, _, err = call(gsample.main, [tmp_path], capsys)  # a folder without checkpoints
    assert code == 2 and "no checkpoint" in one_error_line(err, "gantrain-sample")
    code, _, err = call(gsample.main, [], capsys)
    assert code == 2 and "give a run folder" in one_error_line(err, "gantrain-sample")
    if Path("/proc").is_dir():  # a folder nobody can write, even root
        code, _, err = call(gsample.main, [runs["image"], "out=/proc/gantrain/x.png"], capsys)
        assert code == 2 and "cannot write" in one_error_line(err, "gantrain-sample")


# ---- gantrain-sample: conditional generators ---------------------------------------------------------


def test_conditional_default_draws_labels(tiny_conditional, runs, tmp_path, capsys):
    out = tmp_path / "c.npz"
    assert call(gsample.main, [runs["image"], "n=30", "seed=5", f"out={out}"], capsys)[0] == 0
    data = np.load(out)
    labels, z = torch.from_numpy(data["labels"]), torch.from_numpy(data["z"])
    assert labels.dtype == torch.int64 and labels.shape == (30,) and labels.min() >= 0 and labels.max() <= 2
    assert len(labels.unique()) > 1
    with torch.no_grad():
        assert np.allclose(data["samples"], tiny_conditional(z, labels).numpy(), atol=1e-6)


def test_conditional_labels(tiny_conditional, runs, tmp_path, capsys):
    out = tmp_path / "c.npz"
    assert call(gsample.main, [runs["image"], "labels=[2,0,1]", f"out={out}"], capsys)[0] == 0
    assert np.load(out)["labels"].tolist() == [2, 0, 1]  # n taken from the list
    assert call(gsample.main, [runs["image"], "labels=2", "n=5", f"out={out}", "overwrite=true"], capsys)[0] == 0
    assert np.load(out)["labels"].tolist() == [2] * 5
    assert call(gsample.main, [runs["image"], "labels=[1, 0]", "n=2", "interpolate=3", f"out={out}", "overwrite=true"],
                capsys)[0] == 0
    assert np.load(out)["labels"].tolist() == [1, 1, 1, 0, 0, 0]  # one class per row


def test_conditional_per_class_grid(tiny_conditional, runs, tmp_path, capsys):
    out, picture = tmp_path / "pc.npz", tmp_path / "pc.png"
    assert call(gsample.main, [runs["image"], "per_class=true", "n=4", f"out={out}"], capsys)[0] == 0
    assert np.load(out)["labels"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert call(gsample.main, [runs["image"], "per_class=true", f"out={picture}"], capsys)[0] == 0
    assert png_size(picture) == (8 * 10 + 2, 3 * 10 + 2)  # one row per class, 8 columns by default


@pytest.mark.parametrize("args, words", [
    (["labels=3"], ["label 3", "0..2"]),
    (["labels=[0,-1]"], ["label -1", "0..2"]),
    (["labels=[0,1]", "n=3"], ["labels has 2 values", "n=3"]),
    (["labels=[0,x]"], ["x is not a class number"]),
    (["labels=[]"], ["names no class"]),
    (["per_class=true", "labels=1"], ["give one of them"]),
    (["per_class=true", "interpolate=3"], ["cannot be combined"]),
])
def test_conditional_mistakes(tiny_conditional, runs, tmp_path, capsys, args, words):
    code, _, err = call(gsample.main, [runs["image"], *args, f"out={tmp_path / 'x.png'}"], capsys)
    assert code == 2
    line = one_error_line(err, "gantrain-sample")
    for word in words:
        assert word in line, line
    assert not (tmp_path / "x.png").exists()


def test_real_conditional_run(runs, tmp_path, capsys):
    run = runs["conditional"]
    gc = gantrain.load_generator(run)
    assert gc.num_classes == 10
    picture, arrays = tmp_path / "pc.png", tmp_path / "l.npz"
    assert call(gsample.main, [run, "per_class=true", f"out={picture}"], capsys)[0] == 0
    assert png_size(picture) == (8 * 10 + 2, 10 * 10 + 2)  # 10 classes x 8 columns
    assert call(gsample.main, [run, "labels=[1,9,4]", "seed=2", f"out={arrays}"], capsys)[0] == 0
    data = np.load(arrays)
    assert data["labels"].tolist() == [1, 9, 4]
    with torch.no_grad():
        expected = gc(torch.from_numpy(data["z"]), torch.from_numpy(data["labels"]))
    assert np.allclose(data["samples"], expected.numpy(), atol=1e-6)
    code, _, err = call(gsample.main, [run, "labels=10", f"out={tmp_path / 'x.png'}"], capsys)
    assert code == 2 and "label 10 is outside this run's classes 0..9" in one_error_line(err, "gantrain-sample")


# ---- gantrain-export ---------------------------------------------------------------------------------


def _zs(generator, *batches: int) -> list[torch.Tensor]:
    return [seeded_z(10 + b, b, generator.latent_dim) for b in batches]


def test_export_safetensors_loads_back(runs, g, tmp_path, capsys):
    out = tmp_path / "w" / "gen.safetensors"
    code, stdout, err = call(gexport.main, [runs["image"], "format=safetensors", f"out={out}"], capsys)
    assert code == 0, err
    sidecar = tmp_path / "w" / "gen.json"
    assert str(out) in stdout and str(sidecar) in stdout
    info = json.loads(sidecar.read_text())
    assert info["generator"]["_target_"] == "gantrain.nets.dcgan.DCGANGenerator"
    assert info["data_shape"] == [1, 8, 8] and info["data_kind"] == "image" and info["num_classes"] is None
    assert info["gantrain_version"] == gantrain.__version__ and info["ema"] is True
    loaded = gexport.load_exported(out)
    assert not loaded.training
    with torch.no_grad():
        for z in _zs(g, 1, 7):
            assert torch.allclose(loaded(z), g(z), atol=1e-5)


def test_export_torchscript_loads_back(runs, g, tmp_path, capsys):
    out = tmp_path / "gen.pt"
    code, _, err = call(gexport.main, [runs["image"], "format=torchscript", f"out={out}", "ema=false"], capsys)
    assert code == 0, err
    raw = gantrain.load_generator(runs["image"], ema=False)
    program = torch.jit.load(str(out))
    with torch.no_grad():
        for z in _zs(g, 1, 2, 5):  # the export traced a batch of 2
            assert torch.allclose(program(z), raw(z), atol=1e-5)


def test_export_onnx_command_runs_in_onnxruntime(runs, g, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    result = command("gantrain-export", str(runs["image"]), "format=onnx", "out=gen.onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    session = ort.InferenceSession(str(tmp_path / "gen.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z"] and [o.name for o in session.get_outputs()] == ["samples"]
    with torch.no_grad():
        for z in _zs(g, 1, 3, 9):
            (out,) = session.run(None, {"z": z.numpy()})
            assert np.allclose(out, g(z).numpy(), atol=1e-4)


def test_export_points_generator(runs, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    g2 = gantrain.load_generator(runs["points"])
    for fmt, name in (("onnx", "p.onnx"), ("torchscript", "p.pt"), ("safetensors", "p.safetensors")):
        assert call(gexport.main, [runs["points"], f"format={fmt}", f"out={tmp_path / name}"], capsys)[0] == 0
    z = seeded_z(0, 11, g2.latent_dim)
    with torch.no_grad():
        expected = g2(z)
        session = ort.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"])
        assert np.allclose(session.run(None, {"z": z.numpy()})[0], expected.numpy(), atol=1e-4)
        assert torch.allclose(torch.jit.load(str(tmp_path / "p.pt"))(z), expected, atol=1e-5)
        assert torch.allclose(gexport.load_exported(tmp_path / "p.safetensors")(z), expected, atol=1e-5)
    gexport.export(runs["image"], "safetensors", tmp_path / "raw.safetensors", ema=False)
    assert json.loads((tmp_path / "raw.json").read_text())["ema"] is False  # the raw generator of a run with EMA
    written = gexport.export(runs["image"], "safetensors", tmp_path / "e.safetensors")  # the Python call: EMA by default
    assert written == [tmp_path / "e.safetensors", tmp_path / "e.json"]
    assert json.loads((tmp_path / "e.json").read_text())["ema"] is True


def test_export_conditional_generator(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(1)
    model = TinyConditional().train()
    meta = {"generator": {"_target_": f"{__name__}.TinyConditional", "latent_dim": 4}, "data_shape": [1, 8, 8],
            "data_kind": "image"}
    written = gexport.export_generator(model, "safetensors", tmp_path / "c.safetensors", meta)
    assert not model.training  # exported in eval mode
    assert written == [tmp_path / "c.safetensors", tmp_path / "c.json"]
    assert json.loads((tmp_path / "c.json").read_text())["num_classes"] == 3
    gexport.export_generator(model, "torchscript", tmp_path / "c.pt")
    gexport.export_generator(model, "onnx", tmp_path / "c.onnx")
    loaded = gexport.load_exported(tmp_path / "c.safetensors")
    program = torch.jit.load(str(tmp_path / "c.pt"))
    session = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z", "labels"]
    with torch.no_grad():
        for batch in (1, 2, 6):
            z, y = seeded_z(batch, batch, 4), torch.arange(batch) % 3
            expected = model(z, y)
            assert torch.allclose(loaded(z, y), expected, atol=1e-5)
            assert torch.allclose(program(z, y), expected, atol=1e-5)
            (out,) = session.run(None, {"z": z.numpy(), "labels": y.numpy()})
            assert np.allclose(out, expected.numpy(), atol=1e-4)


def test_export_real_conditional_run(runs, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    run = runs["conditional"]
    gc = gantrain.load_generator(run)
    for fmt, name in (("onnx", "c.onnx"), ("torchscript", "c.pt"), ("safetensors", "c.safetensors")):
        assert call(gexport.main, [run, f"format={fmt}", f"out={tmp_path / name}"], capsys)[0] == 0
    assert json.loads((tmp_path / "c.json").read_text())["num_classes"] == 10
    loaded, program = gexport.load_exported(tmp_path / "c.safetensors"), torch.jit.load(str(tmp_path / "c.pt"))
    session = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z", "labels"]
    with torch.no_grad():
        for batch in (1, 4, 13):
            z, y = seeded_z(batch, batch, gc.latent_dim), torch.arange(batch) % 10
            expected = gc(z, y)
            assert torch.allclose(loaded(z, y), expected, atol=1e-5)
            assert torch.allclose(program(z, y), expected, atol=1e-5)
            (out,) = session.run(None, {"z": z.numpy(), "labels": y.numpy()})
            assert np.allclose(out, expected.numpy(), atol=1e-4)


@pytest.mark.parametrize("args, words", [
    ([], ["no format= given", "format=onnx"]),
    (["format=tflite"], ["format=tflite", "safetensors"]),
    (["format=onnx", "out=g.pt"], ["does not end in .onnx", "out=g.onnx"]),
    (["format=safetensors", "out=g.bin"], ["does not end in .safetensors"]),
    (["format=onnx", "fromat=1"], ["unknown option fromat", "out="]),
    (["format=onnx", "ema=maybe"], ["ema=maybe", "true or false"]),
    (["format=onnx", "out={file}/g.onnx"], ["is a file, not a folder"]),
    (["format=onnx", "out={tmp}"], ["is a folder"]),
    (["format=onnx", "device=tpu"], ["device=tpu"]),
])
def test_export_mistakes_are_one_line(runs, tmp_path, capsys, args, words):
    file = tmp_path / "afile"
    file.write_text("x")
    argv = [runs["image"]] + [a.format(file=file, tmp=tmp_path) for a in args]
    if not any(a.startswith("out=") for a in argv[1:]) and args:
        argv.append(f"out={tmp_path / 'g.onnx'}")
    code, out, err = call(gexport.main, argv, capsys)
    assert code == 2
    line = one_error_line(err, "gantrain-export")
    for word in words:
        assert word in line, line
    assert not (tmp_path / "g.onnx").exists()


def test_export_missing_run_and_missing_package(runs, tmp_path, capsys, monkeypatch):
    code, _, err = call(gexport.main, [tmp_path / "nope", "format=onnx", f"out={tmp_path / 'g.onnx'}"], capsys)
    assert code == 2 and "no such run folder" in one_error_line(err, "gantrain-export")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    code, _, err = call(gexport.main, [runs["image"], "format=onnx", f"out={tmp_path / 'g.onnx'}"], capsys)
    assert code == 2 and "pip install 'gantrain[export]'" in one_error_line(err, "gantrain-export")
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    code, _, err = call(gexport.main, [runs["image"], "format=safetensors", f"out={tmp_path / 'g.safetensors'}"], capsys)
    assert code == 2 and "pip install 'gantrain[export]'" in one_error_line(err, "gantrain-export")
    assert not list(tmp_path.glob("g.*"))


def test_load_exported_without_its_json(runs, tmp_path, capsys):
    out = tmp_path / "g.safetensors"
    assert call(gexport.main, [runs["image"], "format=safetensors", f"out={out}"], capsys)[0] == 0
    (tmp_path / "g.json").unlink()
    with pytest.raises(GantrainError, match="g.json is missing"):
        gexport.load_exported(out)
    with pytest.raises(GantrainError) as err:  # a run folder in its place
        gexport.load_exported(runs["image"])
    assert str(err.value) == (f"{runs['image']} is a folder; give the .safetensors file written by gantrain-export "
                              f"(a run folder loads with gantrain.load_generator)")
    with pytest.raises(GantrainError, match=r"nope.safetensors does not exist; give the .safetensors file"):
        gexport.load_exported(tmp_path / "nope.safetensors")


def test_export_beside_an_unrelated_json_file(runs, tmp_path, capsys):
    (tmp_path / "gen.json").write_text("{}")  # a TorchScript or ONNX export of an image run writes no .json
    for fmt, name in (("torchscript", "gen.pt"), ("onnx", "gen.onnx")):
        code, _, err = call(gexport.main, [runs["image"], f"format={fmt}", f"out={tmp_path / name}"], capsys)
        assert code == 0, err
    assert (tmp_path / "gen.json").read_text() == "{}"
    # those files given to load_exported: named for what they are, with what loads them
    for name, kind, loader in (("gen.pt", "TorchScript", "torch.jit.load(path)"),
                               ("gen.onnx", "ONNX", "onnxruntime.InferenceSession(path)")):
        with pytest.raises(GantrainError) as err:
            gexport.load_exported(tmp_path / name)
        assert str(err.value) == (f"{tmp_path / name} is a {kind} export; load_exported reads the .safetensors exports "
                                  f"(load this one with {loader})")


def test_slerp_between_a_point_and_itself_or_its_opposite_is_never_nan():
    """The cosine of a vector with itself (or its opposite) rounds past +-1 for many vectors: slerp clamps it, so
    the path is a itself (or the straight line through 0), never NaN."""
    from gantrain.commands.sample import slerp

    a = torch.randn(1000, 64, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0, 1, 5).view(1, 5, 1)
    same, opposite = slerp(a, a, 5), slerp(a, -a, 5)
    assert not torch.isnan(same).any() and not torch.isnan(opposite).any()
    torch.testing.assert_close(same, a[:, None, :].expand(-1, 5, -1), rtol=0, atol=1e-6)
    torch.testing.assert_close(opposite, (1 - 2 * t) * a[:, None, :], rtol=0, atol=1e-6)


def test_samples_that_are_not_finite_are_refused_and_nothing_is_written(runs, tmp_path, capsys):
    state = torch.load(runs["image"] / "checkpoints" / "last.pt", weights_only=True)
    for networks in (state["networks"], state.get("ema") or {}):
        weights = networks["generator"]
        name = next(k for k, v in weights.items() if v.is_floating_point() and v.dim() > 1)
        weights[name] = torch.full_like(weights[name], float("nan"))
    damaged = tmp_path / "nan.pt"
    torch.save(state, damaged)
    out = tmp_path / "grid.png"
    code, _, err = call(gsample.main, [damaged, "n=4", f"out={out}"], capsys)
    assert code == 2 and not out.exists()
    assert err == (f"gantrain-sample: error: the generator of {damaged} gave samples that are not finite (NaN or Inf), "
                   f"so none were written; a large truncation or strength can cause it (try values nearer 1), else "
                   f"the checkpoint itself is damaged: sample an earlier one\n")


def test_more_samples_than_memory_holds_is_one_line_and_writes_nothing(runs, tmp_path, capsys, monkeypatch):
    import gantrain.training.components as components

    out = tmp_path / "many.png"
    monkeypatch.setattr(components, "available_memory", lambda device: 2**30)  # 1 GiB free
    # 10 million 8x8 digits (and their noise), held twice while gathered: about 6 GiB
    code, _, err = call(gsample.main, [runs["image"], "n=10000000", f"out={out}"], capsys)
    assert code == 2 and err.count("\n") == 1 and not out.exists()
    assert err.startswith("gantrain-sample: error: n=10000000 samples of shape (1, 8, 8) need about ")
    assert "more than the 1.0 GiB of memory free; ask for fewer" in err
    code, _, err = call(gsample.main, [runs["image"], "n=100000", "interpolate=1000", f"out={out}"], capsys)
    assert code == 2 and err.startswith("gantrain-sample: error: 100000000 samples (n=100000, times the classes or "
                                        "interpolation steps) of shape (1, 8, 8) need about ")  # the count drawn
    # a count the estimate lets through but the drawing cannot hold (another mode, say): one line too
    monkeypatch.setattr(components, "available_memory", lambda device: 2**62)

    def short_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(gsample, "generate", short_of_memory)
    code, _, err = call(gsample.main, [runs["image"], "n=4", f"out={out}"], capsys)
    assert code == 2 and err == ("gantrain-sample: error: not enough memory on cpu to draw what was asked (n=4); ask "
                                 "for fewer samples, or draw them in several commands with other seeds\n")
    assert not out.exists()


def test_a_picture_too_large_to_write_is_one_line(runs, tmp_path, capsys, monkeypatch):
    def short_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(gsample, "write", short_of_memory)
    code, _, err = call(gsample.main, [runs["image"], "n=4", f"out={tmp_path / 'big.png'}"], capsys)
    assert code == 2 and err == (f"gantrain-sample: error: not enough memory to write 4 samples to "
                                 f"{tmp_path / 'big.png'}; ask for fewer samples\n")
