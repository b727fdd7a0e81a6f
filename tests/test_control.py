"""Control of a trained generator: W truncation, truncation strips and style mixing (gantrain.nets.control and
gantrain-sample), with their one-line refusals."""

import pytest
import torch
from PIL import Image

import gantrain

from gantrain.commands.sample import Request, generate, parse_args
from gantrain.errors import GantrainError
from gantrain.nets.control import parse_layers, style_mix, synthesize
from gantrain.nets.dcgan import DCGANGenerator
from gantrain.nets.stylegan2 import StyleGAN2Generator
from conftest import run_command


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    g = StyleGAN2Generator((1, 16, 16), latent_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)
    g.mapping(torch.randn(64, 8))  # a w_avg away from zero
    return g.eval()


def test_w_truncation_psi_0_gives_the_average_and_psi_1_the_sample(G):
    z = torch.randn(3, 8)
    average = G.synthesis(G.mapping.w_avg.expand(1, G.num_ws, 8), noise_mode="const")
    torch.testing.assert_close(synthesize(G, z, psi=0.0), average.expand(3, -1, -1, -1))
    plain = G.synthesis(G.mapping(z).unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const")
    torch.testing.assert_close(synthesize(G, z, psi=1.0), plain)  # w laid out another way: not bit for bit
    assert torch.equal(synthesize(G, z), synthesize(G, z, psi=1.0))
    assert not torch.allclose(synthesize(G, z, psi=0.5), plain)


def test_style_mixing_with_no_layers_is_the_row_and_with_all_layers_the_column(G):
    rows, cols = torch.randn(2, 8), torch.randn(3, 8)
    none = style_mix(G, rows, cols, [])
    every = style_mix(G, rows, cols, list(range(G.num_ws)))
    assert none.shape == every.shape == (2, 3, 1, 16, 16)
    row_images, col_images = synthesize(G, rows), synthesize(G, cols)
    for r in range(2):
        for c in range(3):
            torch.testing.assert_close(none[r, c], row_images[r])
            torch.testing.assert_close(every[r, c], col_images[c])
    coarse = style_mix(G, rows, cols, [0, 1])
    assert not torch.allclose(coarse[0, 0], row_images[0]) and not torch.allclose(coarse[0, 0], col_images[0])


def test_layers_are_parsed_and_checked():
    assert parse_layers("0-3", 8) == [0, 1, 2, 3] and parse_layers("5,1,1", 8) == [1, 5]
    assert parse_layers("all", 4) == [0, 1, 2, 3] and parse_layers("none", 4) == []
    for bad in ("0-8", "x", "3-1", "9", "2,12"):
        with pytest.raises(GantrainError, match="layers="):
            parse_layers(bad, 8)
    with pytest.raises(GantrainError) as error:
        parse_layers("3-1", 8)
    assert str(error.value) == ("layers=3-1: the range 3-1 runs backwards; give it from the lower layer to the higher, "
                                "e.g. layers=1-3")
    with pytest.raises(GantrainError) as error:
        parse_layers("10", 10)  # one past the last layer, alone
    assert str(error.value) == ("layers=10: this generator has layers 0..9 of styles; give a range within them, "
                                "e.g. layers=0-3 (coarse: pose and shape) or layers=5-9 (fine)")
    with pytest.raises(GantrainError, match=r"layers=3-5 \(fine\)"):
        parse_layers("6", 6)


def test_strips_and_mixing_are_refused_for_a_generator_without_styles():
    dcgan = DCGANGenerator((1, 8, 8), latent_dim=4, base_channels=4)
    for args, words in ((["truncation=0:1:4"], "truncation strip needs a style-based run"),
                        (["style_mix=true"], "style mixing needs a style-based run"),
                        (["truncation=0"], "must be a number > 0")):
        _, request = parse_args(["run", *args])
        with pytest.raises(GantrainError, match=words):
            generate(dcgan, request)
    with pytest.raises(GantrainError, match="add style_mix=true"):
        parse_args(["run", "layers=0-3"])
    with pytest.raises(GantrainError, match="not a strip"):
        parse_args(["run", "truncation=0:1"])


def test_a_strip_has_one_column_per_psi_from_the_same_latents(G):
    batch = generate(G, Request(n=3, n_given=True, strip=(0.0, 1.0, 5)))
    assert batch.samples.shape == (15, 1, 16, 16) and batch.nrow == 5
    grid = batch.samples.view(3, 5, 1, 16, 16)
    z = batch.z[::5]
    for k, psi in enumerate(torch.linspace(0, 1, 5).tolist()):
        torch.testing.assert_close(grid[:, k], synthesize(G, z, psi=psi))
    torch.testing.assert_close(grid[0, 0], grid[1, 0])  # psi 0: every row is the average image


def test_the_style_mixing_figure_through_the_console_script(tmp_path, tiny_stylegan2_runs):
    run = tiny_stylegan2_runs["plain"]
    out = tmp_path / "mix.png"
    command = ["gantrain-sample", str(run), "style_mix=true", "rows=3", "cols=4", "layers=0-2", f"out={out}"]
    proc = run_command(*command, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (5 * 18 + 2, 4 * 18 + 2)  # (cols + 1) x (rows + 1) tiles of 16 px + padding
    again = run_command(*command[:-1], f"out={tmp_path / 'again.png'}", timeout=300)
    assert again.returncode == 0 and (tmp_path / "again.png").read_bytes() == out.read_bytes()  # the seed decides
    for out in (tmp_path / "mix.npz", tmp_path / "cells"):  # arrays or a folder of PNGs: the figure is one picture
        refused = run_command(*command[:-1], f"out={out}", timeout=300)
        assert refused.returncode == 2 and refused.stderr == ("gantrain-sample: error: style_mix=true draws one figure "
                                                              "(sources along the top and down the left, their mixes "
                                                              "inside): give out=NAME.png\n") and not out.exists()
    bad = run_command(*command[:-2], "layers=0-40", f"out={tmp_path / 'x.png'}", timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "layers 0..5" in bad.stderr
    assert not (tmp_path / "x.png").exists()


def test_a_loaded_style_based_generator_is_decided_by_its_seed_as_its_export_is(tmp_path, tiny_stylegan2_runs):
    from gantrain.commands.export import export, load_exported

    g = gantrain.load_generator(tiny_stylegan2_runs["plain"])
    draw = lambda model: model.sample(4, generator=torch.Generator().manual_seed(0))  # noqa: E731
    first = draw(g)
    assert torch.equal(first, draw(g))  # each layer's fixed noise input, not fresh noise every call
    export(tiny_stylegan2_runs["plain"], "safetensors", tmp_path / "g.safetensors")
    torch.testing.assert_close(draw(load_exported(tmp_path / "g.safetensors")), first, rtol=0, atol=1e-6)


def test_an_out_that_is_a_folder_where_a_file_goes_is_one_line_and_nothing_is_written(tmp_path, tiny_stylegan2_runs,
                                                                                       capsys):
    from gantrain.commands.directions import main as directions_main
    from gantrain.commands.export import main as export_main

    run = tiny_stylegan2_runs["plain"]
    (tmp_path / "dirs.npz").mkdir()
    (tmp_path / "g.json").mkdir()  # where the safetensors' JSON would go
    for main, args, line in (
            (directions_main, ["method=pca", f"out={tmp_path / 'dirs.npz'}", "overwrite=true"],
             f"gantrain-directions: error: out={tmp_path / 'dirs.npz'} is a folder; give the name of a .npz file"),
            (export_main, ["format=safetensors", f"out={tmp_path / 'g.safetensors'}", "overwrite=true"],
             f"gantrain-export: error: {tmp_path / 'g.json'} is a folder, where the export would write a file; "
             f"choose another out=...")):
        with pytest.raises(SystemExit) as stop:
            main([str(run), *args, "device=cpu"])
        assert stop.value.code == 2 and capsys.readouterr().err == line + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dirs.npz", "g.json"]  # no half-written export
    assert not any((tmp_path / "dirs.npz").iterdir()) and not any((tmp_path / "g.json").iterdir())


def test_gantrain_eval_draws_a_style_based_run_with_fresh_noise_as_training_evaluates(tiny_stylegan2_runs, monkeypatch,
                                                                                       capsys):
    import gantrain.eval.evaluator as evaluator
    from gantrain.commands.evaluate import eval_main

    modes = []

    def record(self, generator):  # what the metrics would draw from: stop there
        modes.extend(m.noise_mode for m in generator.modules() if hasattr(m, "noise_mode"))
        raise GantrainError("recorded")

    monkeypatch.setattr(evaluator.Evaluator, "prepare", lambda self: None)
    monkeypatch.setattr(evaluator.Evaluator, "__call__", record)
    with pytest.raises(SystemExit):
        eval_main([str(tiny_stylegan2_runs["plain"]), "metrics=[fid]", "num_samples=10", "device=cpu"])
    assert "recorded" in capsys.readouterr().err
    assert modes and set(modes) == {"random"}  # (gantrain-sample and load_generator: each layer's fixed noise)
