"""gantrain-export's parts, exactly, without a trained run: the command line, atomic writes, example inputs, the
metadata beside safetensors weights, style-based and text generators, load_exported's refusals and ONNX failures.
(test_sample_export.py exports tiny trained runs through the command.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gantrain
from gantrain.commands import export as gexport
from gantrain.errors import GantrainError
from test_sample_export import TinyConditional, seeded_z

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated")
__all__ = ["TinyConditional"]  # rebuilt by load_exported from this module's path


def test_export_parse_args_defaults_spellings_and_refusals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert gexport.parse_args(["run", "format=onnx"]) == (Path("run"), "onnx", Path("generator.onnx"), True, "cpu", False)
    assert gexport.parse_args(["run", "format=safetensors"])[2] == Path("generator.safetensors")
    assert gexport.parse_args(["run", "format=TorchScript"])[1:3] == ("torchscript", Path("generator.pt"))
    got = gexport.parse_args(["~/r", " format = onnx ", "out='a/G.ONNX'", "ema=Off", "device=cuda:1", "overwrite=YES"])
    assert got == (Path("~/r").expanduser(), "onnx", Path("a/G.ONNX"), False, "cuda:1", True)
    for text, value in (("true", True), ("1", True), ("on", True), ("yes", True), ("false", False), ("0", False),
                        ("no", False), ("off", False)):
        assert gexport.parse_args(["run", "format=onnx", f"ema={text}"])[3] is value
        assert gexport.parse_args(["run", "format=onnx", f"overwrite={text}"])[5] is value
    for suffix in (".pt", ".pth", ".ts", ".torchscript"):
        assert gexport.parse_args(["run", "format=torchscript", f"out=g{suffix}"])[2] == Path(f"g{suffix}")
    (tmp_path / "d").mkdir()
    for args, message in (
            (["a", "b", "format=onnx"], "give exactly one run folder or checkpoint file (got 2): gantrain-export "
                                        "RUN_OR_CHECKPOINT format=... out=PATH"),
            (["format=onnx"], "give exactly one run folder or checkpoint file (got 0): gantrain-export "
                              "RUN_OR_CHECKPOINT format=... out=PATH"),
            (["run", "fromat=onnx"], "unknown option fromat; did you mean format=? valid options: format=, out=, ema=, "
                                     "device=, overwrite= (see gantrain-export --help)"),
            (["run", "--force", "format=onnx"], "unknown option --force; valid options: format=, out=, ema=, device=, "
                                                "overwrite= (see gantrain-export --help)"),
            (["run"], "no format= given; give format=safetensors, format=torchscript or format=onnx"),
            (["run", "format=onnx", "out="], "out= is empty; give the file to write, e.g. out=generator.onnx (or leave "
                                              "out= out for generator.<format> in the current folder)"),
            (["run", "format", "=", "onnx"], "'format = onnx': write an option as key=value with no spaces around '=' "
                                             "(e.g. format=onnx)"),
            (["run", "format=tf"], "format=tf is not a format; give format=safetensors, format=torchscript or format=onnx"),
            (["run", "format=onnx", "out=d"], f"out=d is a folder; give a file name, e.g. out={Path('d/generator.onnx')}"),
            (["run", "format=onnx", "out=g.pt"], "out=g.pt does not end in .onnx as format=onnx files do; use out=g.onnx"),
            (["run", "format=torchscript", "out=g"], "out=g does not end in .pt or .pth or .ts or .torchscript as "
                                                     "format=torchscript files do; use out=g.pt"),
            (["run", "format=onnx", "ema=2"], "ema=2 must be true or false"),
            (["run", "format=onnx", "overwrite=y"], "overwrite=y must be true or false")):
        with pytest.raises(GantrainError) as err:
            gexport.parse_args(args)
        assert str(err.value) == message, args


def test_export_atomic_write_keeps_what_exists(tmp_path):
    from gantrain.checkpoint import file_mode

    path = tmp_path / "sub" / "f.bin"
    gexport._atomic(path, lambda tmp: Path(tmp).write_bytes(b"one"), overwrite=False)
    assert path.read_bytes() == b"one" and (path.stat().st_mode & 0o777) == file_mode()
    with pytest.raises(GantrainError) as err:
        gexport._atomic(path, lambda tmp: Path(tmp).write_bytes(b"two"), overwrite=False)
    assert str(err.value) == (f"{path} was written by another process meanwhile and is kept as it is; choose another "
                              "out=..., or overwrite=true to replace it")
    assert path.read_bytes() == b"one"

    def broken(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        gexport._atomic(path, broken, overwrite=True)
    assert path.read_bytes() == b"one"
    gexport._atomic(path, lambda tmp: Path(tmp).write_bytes(b"three"))  # overwrite by default
    assert path.read_bytes() == b"three"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.bin"]  # no temporary file left behind


def test_export_example_inputs_are_seeded_and_fit_the_generator():
    class Plain(nn.Module):
        latent_dim = 5

    (z,) = gexport.example_inputs(Plain(), batch=3)
    assert torch.equal(z, torch.randn(3, 5, generator=torch.Generator().manual_seed(0)))
    model = TinyConditional(num_classes=3)
    z, y = gexport.example_inputs(model, batch=40)
    rng = torch.Generator().manual_seed(0)
    assert torch.equal(z, torch.randn(40, 4, generator=rng))
    assert torch.equal(y, torch.randint(3, (40,), generator=rng, dtype=torch.int64)) and y.dtype == torch.int64
    assert set(y.tolist()) == {0, 1, 2} and gexport._num_classes(model) == 3
    model.num_classes = 0
    assert gexport._num_classes(model) is None and len(gexport.example_inputs(model)) == 1


def test_export_generator_refusals_and_metadata(tmp_path):
    torch.manual_seed(2)
    model = TinyConditional()
    meta = {"generator": {"_target_": f"{__name__}.TinyConditional", "latent_dim": 4}, "data_shape": [1, 8, 8],
            "data_kind": "image", "num_classes": 99, "step": 7}
    with pytest.raises(GantrainError) as err:
        gexport.export_generator(model, "tflite", tmp_path / "g.tflite")
    assert str(err.value) == "format=tflite is not one of safetensors, torchscript, onnx"
    for key in ("generator", "data_shape", "data_kind"):
        with pytest.raises(GantrainError) as err:
            gexport.export_generator(model, "safetensors", tmp_path / "m.safetensors", {k: v for k, v in meta.items() if k != key})
        assert str(err.value) == f"cannot export safetensors without `{key}` in the metadata (what rebuilds the generator)"
    assert not list(tmp_path.iterdir())
    out = tmp_path / "g.safetensors"
    assert gexport.export_generator(model, "safetensors", out, meta) == [out, tmp_path / "g.json"]
    info = json.loads((tmp_path / "g.json").read_text())
    assert (info["format"], info["weights"], info["num_classes"], info["latent_dim"], info["step"]) == (
        "gantrain-generator", "g.safetensors", 3, 4, 7)  # the model's own class count wins over the stale 99
    assert info["out_shape"] == [1, 8, 8] and info["gantrain_version"] == gantrain.__version__
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        assert f.metadata() == {"format": "gantrain-generator", "gantrain_version": gantrain.__version__}
        assert sorted(f.keys()) == ["embed.weight", "net.bias", "net.weight"]
    other = tmp_path / "h.safetensors"
    (tmp_path / "h.json").write_text("{}")
    with pytest.raises(GantrainError) as err:
        gexport.export_generator(model, "safetensors", other, meta, overwrite=False)
    assert str(err.value) == f"{tmp_path / 'h.json'} exists; choose another out=..., or overwrite=true to replace it"
    assert not other.exists() and (tmp_path / "h.json").read_text() == "{}"
    program = tmp_path / "g.pt"
    program.write_bytes(b"old")
    with pytest.raises(GantrainError, match="was written by another process meanwhile"):
        gexport.export_generator(model, "torchscript", program, overwrite=False)
    assert program.read_bytes() == b"old"


def test_export_of_a_style_based_generator_traces_its_fixed_noise(tmp_path):
    from gantrain.nets.stylegan2 import StyleGAN2Generator

    torch.manual_seed(0)
    model = StyleGAN2Generator((1, 8, 8), latent_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)
    with torch.no_grad():
        for conv in model.synthesis.convs:
            conv.noise_strength.fill_(1.0)  # noise that shows (it starts at strength 0)
    assert model.noise_mode == "random"
    gexport.export_generator(model, "torchscript", tmp_path / "s.pt")
    assert model.noise_mode == "random"  # the generator given is left as it was
    program = torch.jit.load(str(tmp_path / "s.pt"))
    z = seeded_z(3, 4, 8)
    with torch.no_grad():
        expected = model(z, noise_mode="const")
        assert torch.allclose(program(z), expected, atol=1e-5)
        assert torch.equal(program(z), program(z))  # deterministic


def test_load_exported_refuses_damaged_and_foreign_files(tmp_path):
    torch.manual_seed(3)
    model = TinyConditional().eval()
    meta = {"generator": {"_target_": f"{__name__}.TinyConditional", "latent_dim": 4}, "data_shape": [1, 8, 8],
            "data_kind": "image"}
    out = tmp_path / "g.safetensors"
    gexport.export_generator(model, "safetensors", out, meta)
    z, y = seeded_z(1, 2, 4), torch.tensor([0, 2])
    with torch.no_grad():
        # the .json names the pair (the same weights: equal up to the kernels' rounding on any CPU)
        torch.testing.assert_close(gexport.load_exported(tmp_path / "g.json")(z, y), model(z, y), rtol=1e-6, atol=1e-6)
    sidecar = tmp_path / "g.json"
    good = sidecar.read_text()

    def refused(path: Path) -> str:
        with pytest.raises(GantrainError) as err:
            gexport.load_exported(path)
        return str(err.value)

    assert refused(tmp_path / "none.safetensors") == (f"{tmp_path / 'none.safetensors'} does not exist; give the "
                                                      ".safetensors file written by gantrain-export")
    sidecar.write_text("{not json")
    assert refused(out).startswith(f"{sidecar} is unreadable (") and refused(out).endswith("); export again")
    for text in ('["a"]', '{"format": "other"}'):
        sidecar.write_text(text)
        assert refused(out) == f"{sidecar} was not written by gantrain-export; export again"
    sidecar.write_text(good)
    weights = out.read_bytes()
    out.write_bytes(b"garbage")
    assert refused(out).startswith(f"{out} is not a readable safetensors file (")
    out.write_bytes(weights)
    info = json.loads(good)
    info["generator"]["latent_dim"] = 6  # weights of a latent_dim=4 generator
    sidecar.write_text(json.dumps(info))
    assert refused(out).startswith(f"{out} does not fit the generator described in g.json (Error(s) in loading")
    sidecar.write_text(good)
    assert not gexport.load_exported(out).training


def test_export_of_a_text_generator_writes_its_vocabulary_and_takes_token_ids(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from gantrain.nets.dcgan import DCGANGenerator
    from gantrain.nets.text import BagEncoder, TextGenerator

    torch.manual_seed(0)
    words = ["<pad>", "<unk>", "red", "blue"]
    g = TextGenerator(DCGANGenerator((1, 8, 8), latent_dim=4, base_channels=4, condition_dim=6), BagEncoder(4, 8),
                      words, 3, True, ["red blue"])
    written = gexport.export_generator(g, "onnx", tmp_path / "t.onnx")
    assert written == [tmp_path / "t.onnx", tmp_path / "t.onnx.vocab.json"]
    info = json.loads((tmp_path / "t.onnx.vocab.json").read_text())
    assert info == {"format": "gantrain-vocabulary", "words": words, "length": 3, "precomputed": False,
                    "tokenizer": "lower-case the caption, split it into runs of letters and digits (regex \\w+), map "
                                 "each word to its position in words (1 when absent: unknown), cut at length, pad with 0"}
    assert (tmp_path / "t.onnx.vocab.json").read_text() == json.dumps(info, indent=1) + "\n"
    session = ort.InferenceSession(str(tmp_path / "t.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z", "tokens"]
    z, tokens = seeded_z(4, 3, g.latent_dim), g.tokenize(["red", "blue red", "red red blue"])
    with torch.no_grad():
        (out,) = session.run(None, {"z": z.numpy(), "tokens": tokens.numpy()})
        np.testing.assert_allclose(out, g(z, tokens).numpy(), atol=1e-4)
    (tmp_path / "t.pt.vocab.json").write_text("{}")
    with pytest.raises(GantrainError, match="t.pt.vocab.json was written by another process meanwhile"):
        gexport.export_generator(g, "torchscript", tmp_path / "t.pt", overwrite=False)  # the vocabulary's file exists


def test_export_onnx_failure_is_one_line_naming_the_cause(tmp_path):
    pytest.importorskip("onnx")

    class Refuses(nn.Module):
        latent_dim = 2

        def forward(self, z):
            raise RuntimeError("an operator the exporter cannot translate " + "x" * 300 + "\nsecond line")

    with pytest.raises(GantrainError) as err:
        gexport.export_generator(Refuses(), "onnx", tmp_path / "r.onnx")
    first = "an operator the exporter cannot translate " + "x" * 300
    assert str(err.value) == (f"ONNX export failed (RuntimeError: {first[:200]}); try format=torchscript or "
                              "format=safetensors")
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_export_refuses_what_exists_and_a_folder_before_loading_anything(tmp_path):
    run = tmp_path / "not-read"  # exists; never opened, as every refusal below comes first
    run.mkdir()
    with pytest.raises(GantrainError) as err:
        gexport.export(run, "onnx", tmp_path)
    assert str(err.value) == f"out={tmp_path} is a folder; give a file name, e.g. out={tmp_path / 'generator'}"
    weights, sidecar = tmp_path / "g.safetensors", tmp_path / "g.json"
    weights.write_bytes(b"old")
    with pytest.raises(GantrainError) as err:
        gexport.export(run, "safetensors", weights)
    assert str(err.value) == f"{weights} exists; choose another out=..., or overwrite=true to replace it"
    sidecar.write_text("{}")
    with pytest.raises(GantrainError) as err:
        gexport.export(run, "safetensors", weights)
    assert str(err.value) == (f"{weights} and {sidecar} exist; choose another out=..., or overwrite=true to replace "
                              "them")
    weights.unlink()
    with pytest.raises(GantrainError) as err:
        gexport.export(run, "safetensors", weights)
    assert str(err.value) == f"{sidecar} exists; choose another out=..., or overwrite=true to replace it"
    with pytest.raises(GantrainError) as err:
        gexport.export(tmp_path / "missing", "onnx", tmp_path / "x.onnx")
    assert str(err.value) == (f"{tmp_path / 'missing'}: no such run folder or checkpoint file; give a run folder "
                              "(outputs/DATE/TIME) or one of its checkpoints/*.pt")
    with pytest.raises(GantrainError, match="^unknown option fromat; did you mean format=?"):
        gexport.parse_args(["r", "fromat=onnx", "ot=x"])


def test_export_atomic_write_makes_nested_folders_and_help_exits_0(tmp_path, capsys):
    path = tmp_path / "a" / "b" / "f.bin"
    gexport._atomic(path, lambda tmp: Path(tmp).write_bytes(b"x"), overwrite=False)
    assert path.read_bytes() == b"x"
    with pytest.raises(SystemExit) as stop:
        gexport.main(["--help"])
    assert stop.value.code == 0 and "gantrain-export RUN_OR_CHECKPOINT" in capsys.readouterr().out


def test_load_exported_refuses_a_json_of_another_format_that_sorts_first(tmp_path):
    (tmp_path / "g.safetensors").write_bytes(b"")
    (tmp_path / "g.json").write_text('{"format": "a"}')
    with pytest.raises(GantrainError) as err:
        gexport.load_exported(tmp_path / "g.safetensors")
    assert str(err.value) == f"{tmp_path / 'g.json'} was not written by gantrain-export; export again"


def test_export_names_a_missing_package_before_opening_the_run(tmp_path, monkeypatch):
    import sys

    run = tmp_path / "not-a-run"  # opening it would fail with another message
    run.mkdir()
    for module, fmt, name in (("onnx", "onnx", "onnx"), ("safetensors.torch", "safetensors", "safetensors")):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
        with pytest.raises(GantrainError) as err:
            gexport.export(run, fmt, tmp_path / f"g.{fmt}")
        assert str(err.value) == (f"format={fmt} needs the {name} package, which is not installed; run: pip install "
                                  "'gantrain[export]'")
        monkeypatch.delitem(sys.modules, module)


def test_export_defaults_and_file_names(tmp_path):
    torch.manual_seed(0)
    model = TinyConditional()
    assert len(gexport.example_inputs(model)[0]) == 2  # traced with a batch of 2 (1 can specialise broadcasting)
    (tmp_path / "g.pt").write_bytes(b"old")
    gexport.export_generator(model, "torchscript", tmp_path / "g.pt")  # the Python call replaces by default
    assert (tmp_path / "g.pt").read_bytes() != b"old"
    assert gexport.parse_args(["r", "format=onnx", "out=a=b.onnx"])[2] == Path("a=b.onnx")
    (tmp_path / "w.safetensors").write_bytes(b"")
    for name in ("w", "w.pt", "w.bin"):  # only .json names its .safetensors beside it
        with pytest.raises(GantrainError, match="does not exist"):
            gexport.load_exported(tmp_path / name)


def test_export_of_a_text_generator_without_prompts_and_onnx_opset_17(tmp_path):
    onnx = pytest.importorskip("onnx")
    from gantrain.nets.dcgan import DCGANGenerator
    from gantrain.nets.text import BagEncoder, TextGenerator

    torch.manual_seed(0)
    g = TextGenerator(DCGANGenerator((1, 8, 8), latent_dim=4, base_channels=4, condition_dim=6), BagEncoder(4, 8),
                      ["<pad>", "<unk>", "red", "blue"], 3, True, ())
    gexport.export_generator(g, "torchscript", tmp_path / "t.pt")
    program = torch.jit.load(str(tmp_path / "t.pt"))
    z, tokens = seeded_z(2, 2, g.latent_dim), g.tokenize(["red", "blue"])
    with torch.no_grad():
        torch.testing.assert_close(program(z, tokens), g(z, tokens))
    gexport.export_generator(TinyConditional(), "onnx", tmp_path / "c.onnx")
    assert [o.version for o in onnx.load(str(tmp_path / "c.onnx")).opset_import if o.domain in ("", "ai.onnx")] == [17]
