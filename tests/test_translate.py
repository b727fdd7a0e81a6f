"""Evaluation of translators, `gantrain-translate` and `gantrain-eval` on translation runs: tiny real runs on
real MNIST (edges2mnist with pix2pix, mnist2mnistm with CycleGAN) and translators whose scores are known."""
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import gantrain
from gantrain.data.base import normalize
from gantrain.errors import GantrainError
from gantrain.nets.translation import Translator, to_channels
from gantrain.data.translation import MNIST2MNISTM, Edges2MNIST, UnpairedFolder
from gantrain.eval.translation import HIGHER_IS_BETTER, TranslationEvaluator, make_translation_evaluator
from conftest import run_command

TINY = ["trainer.device=cpu", "trainer.steps=4", "trainer.batch_size=4", "trainer.log_every=2", "trainer.sample_every=4",
        "trainer.ckpt_every=4", "trainer.progress=false", "generator.width=8", "discriminator.width=8"]



@pytest.fixture(scope="module")
def cache(tmp_path_factory, data_root):
    """GANTRAIN_CACHE of this module (restored afterwards), holding an MNIST-32px classifier trained briefly:
    the full one takes minutes on CPUs, and every score below holds for any classifier."""
    from gantrain.eval.classifier import save_classifier, train_classifier
    from gantrain.data.images import MNIST

    folder = tmp_path_factory.mktemp("translate-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANTRAIN_CACHE", str(folder))
        mnist = MNIST(root=str(data_root), image_size=32, download=False)
        model, accuracy = train_classifier(mnist, steps=30, batch_size=64)
        save_classifier(model, mnist, accuracy)
        yield folder


@pytest.fixture(scope="module")
def edges(cache, data_root):
    return Edges2MNIST(root=str(data_root), image_size=32, download=False)


@pytest.fixture(scope="module")
def pix2pix_run(cache, data_root, tmp_path_factory):
    """4 steps of pix2pix on edges2mnist, evaluated at step 4 (the paired metrics: the classifier's are slower)."""
    run = tmp_path_factory.mktemp("pix2pix") / "run"
    cfg = gantrain.compose(["experiment=pix2pix_edges2mnist", f"dataset.root={data_root}", "dataset.download=false",
                            *TINY, "trainer.eval_every=4", "trainer.metrics=[l1,psnr,ssim]"])
    return gantrain.train(cfg, run)


@pytest.fixture(scope="module")
def cyclegan_run(cache, data_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("cyclegan") / "run"
    cfg = gantrain.compose(["experiment=cyclegan_mnist2mnistm", f"dataset.root={data_root}", "dataset.download=false",
                            *TINY, "generator.n_blocks=1", "trainer.eval_every=0"])
    return gantrain.train(cfg, run)


class Identity(Translator):
    """Returns its input (in the direction's output channels): translation that changes nothing."""

    def forward(self, x, direction="AtoB"):
        return to_channels(x, self.channels(direction)[1])


def identity(channels_a, channels_b, both=False):
    return Identity(nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1) if both else None, channels_a, channels_b, 32).eval()


def finite(values):
    return all(isinstance(v, float) and math.isfinite(v) for v in values)


def one_line_error(capsys, argv, main):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and "error:" in err and "Traceback" not in err, err
    return err


# ---- the evaluator -----------------------------------------------------------------------------


def test_training_logs_translation_metrics_with_floors(pix2pix_run):
    rows = [json.loads(line) for line in (pix2pix_run / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in rows if "eval/l1" in r]
    assert [r["step"] for r in evaluated] == [4]
    row = evaluated[0]
    assert sorted(k for k in row if k.startswith(("eval/", "floor/"))) == [
        "eval/l1", "eval/psnr", "eval/ssim", "floor/l1", "floor/psnr", "floor/ssim"]  # the metrics asked for
    assert finite([row[k] for k in row if k.startswith(("eval/", "floor/"))])
    # the logged scores are those of the step-4 translator on the run's test pairs, scored again here; the floors
    # are the scores of a translator that leaves its input as it is
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from gantrain.checkpoint import load_checkpoint

    state = load_checkpoint(pix2pix_run / "checkpoints" / "last.pt")
    assert state["step"] == 4
    dataset = instantiate(OmegaConf.create(state["config"]["dataset"]))
    evaluator = TranslationEvaluator(dataset, ["l1", "psnr", "ssim"], kind="pix2pix", styles=False)
    scores, floors = evaluator(gantrain.load_translator(pix2pix_run)), evaluator(identity(1, 1))
    for name in ("l1", "psnr", "ssim"):
        assert row[f"eval/{name}"] == pytest.approx(scores[name], rel=1e-5), name
        assert row[f"floor/{name}"] == pytest.approx(floors[name], rel=1e-5), name
    assert row["floor/l1"] < row["eval/l1"]  # 4 steps do worse than leaving the edges as they are


def test_evaluator_scores_the_tiny_run_and_leaves_training_rng_alone(pix2pix_run, edges):
    evaluator = TranslationEvaluator(edges, num_samples=300)
    assert evaluator.names == ["l1", "psnr", "ssim", "label_acc", "fid_classifier"]
    translator = gantrain.load_translator(pix2pix_run)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = evaluator(translator)
    assert torch.equal(before, torch.get_rng_state())  # set-up and scoring draw nothing from training's RNG
    assert list(first) == evaluator.names and finite(first.values())
    assert set(evaluator.floor) == set(first) and finite(evaluator.floor.values())
    assert len(evaluator.inputs) == 300 and (evaluator.indices < 10000).all()
    assert 0 <= first["l1"] <= 2 and 0 <= first["label_acc"] <= 1 and -1 <= first["ssim"] <= 1
    # the floor of fid_classifier is real vs real: far below an untrained translator's distance
    assert evaluator.floor["fid_classifier"] < first["fid_classifier"]
    assert 0.7 < evaluator.details["label_acc_ceiling"] <= 1  # the classifier on real digits
    assert evaluator(translator) == first  # the set-up is kept, the scores are deterministic
    for name, higher in {"l1": False, "psnr": True, "ssim": True, "label_acc": True, "fid_classifier": False}.items():
        assert HIGHER_IS_BETTER[name] is higher and evaluator.higher_is_better[name] is higher
    assert evaluator.higher_is_better["modes"] is True  # the GAN metrics' directions are kept


def test_identity_translator_scores_match_a_hand_computation(edges, cache):
    from gantrain.eval.classifier import load_classifier
    from gantrain.data.images import MNIST

    evaluator = TranslationEvaluator(edges, num_samples=400, seed=3)
    scores = evaluator(identity(1, 1))
    pairs = edges.split(train=False).tensor()[evaluator.indices]
    a, b = pairs[:, :1].double() / 127.5 - 1, pairs[:, 1:].double() / 127.5 - 1
    assert scores["l1"] == pytest.approx(float((a - b).abs().mean()), rel=1e-6)
    mse = ((a - b) / 2).square().mean(dim=(1, 2, 3))
    assert scores["psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), rel=1e-5)
    # doing nothing scores exactly its floor: the untranslated input against the target
    for name in ("l1", "psnr", "ssim", "label_acc"):
        assert scores[name] == pytest.approx(evaluator.floor[name], rel=1e-9, abs=1e-12), name
    model, _ = load_classifier(MNIST(root=edges.root, image_size=32, download=False), train_if_missing=False)
    labels = edges.split(train=False).labels()[evaluator.indices]
    with torch.no_grad():
        by_hand = float((model(normalize(pairs[:, :1])).argmax(1) == labels).double().mean())
        ceiling = float((model(normalize(pairs[:, 1:])).argmax(1) == labels).double().mean())
    assert scores["label_acc"] == pytest.approx(by_hand, abs=1.5 / 400)
    assert evaluator.details["label_acc_ceiling"] == pytest.approx(ceiling, abs=1.5 / 400)
    assert scores["fid_classifier"] > evaluator.floor["fid_classifier"]  # edge maps are not digits


def test_cyclegan_is_scored_from_mnistm_to_mnist(cyclegan_run, data_root, cache):
    dataset = MNIST2MNISTM(root=str(data_root), image_size=32, download=False)
    evaluator = make_translation_evaluator(dataset, "auto", "cpu", "cyclegan")
    evaluator.num_samples = 200
    assert evaluator.names == ["label_acc", "fid_classifier"] and evaluator.direction == "BtoA"
    scores = evaluator(gantrain.load_translator(cyclegan_run))
    assert list(scores) == evaluator.names and finite(scores.values()) and finite(evaluator.floor.values())
    assert evaluator.inputs.shape[1:] == (3, 32, 32)  # MNIST-M digits go in
    # the floor is the classifier on raw MNIST-M turned grey: what a translator that changes nothing gets
    unchanged = evaluator(identity(3, 3, both=True))
    assert unchanged["label_acc"] == pytest.approx(evaluator.floor["label_acc"], abs=1e-12)
    assert evaluator.floor["label_acc"] < evaluator.details["label_acc_ceiling"]


def test_metric_choice(edges, data_root, tmp_path, caplog):
    assert make_translation_evaluator(edges, [], "cpu", "pix2pix") is None
    assert make_translation_evaluator(edges, "[l1, ssim]", "cpu", "pix2pix").names == ["l1", "ssim"]
    with pytest.raises(GantrainError, match="unknown translation metric.*precision.*l1, psnr, ssim, label_acc"):
        make_translation_evaluator(edges, ["precision"], "cpu", "pix2pix")
    mnistm = MNIST2MNISTM(root=str(data_root), image_size=32)
    with pytest.raises(GantrainError, match="l1 do not apply.*label_acc, fid_classifier"):
        TranslationEvaluator(mnistm, ["l1"], kind="cyclegan")
    for side in ("trainA", "trainB", "testA", "testB"):
        (tmp_path / side).mkdir()
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(tmp_path / side / "x.png")
    folders = UnpairedFolder(str(tmp_path), image_size=8)
    with caplog.at_level(logging.INFO, logger="gantrain"):
        assert make_translation_evaluator(folders, "auto", "cpu", "cyclegan") is None
    assert any("evaluation off" in r.getMessage() for r in caplog.records)
    with pytest.raises(GantrainError, match="no translation metric applies"):
        TranslationEvaluator(folders, "auto", kind="cyclegan")
    with pytest.raises(GantrainError, match="ssim do not apply.*that apply: none"):
        make_translation_evaluator(folders, ["ssim"], "cpu", "cyclegan")


# ---- gantrain-translate ------------------------------------------------------------------------


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / "digit.png")  # grey 28x28
    Image.fromarray(rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)).save(folder / "photo.png")  # RGB 40 wide
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(folder / "exact.png")  # the trained size
    good = (folder / "digit.png").read_bytes()
    (folder / "broken.png").write_bytes(good[: len(good) // 2])  # cut short
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_translate_a_folder_through_the_command(pix2pix_run, images, tmp_path):
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    out = tmp_path / "out" / "new"
    result = run_command("gantrain-translate", str(pix2pix_run), f"input={images}", f"out={out}", timeout=300)
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "broken.png" in result.stderr, result.stderr
    assert result.stdout.strip() == f"translated 3 images AtoB into {out}"
    assert sorted(p.name for p in out.iterdir()) == ["digit.png", "exact.png", "photo.png"]
    with Image.open(out / "digit.png") as digit, Image.open(out / "photo.png") as photo:
        assert digit.size == (28, 28) and photo.size == (40, 50) and digit.mode == photo.mode == "L"
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before  # the inputs are untouched
    # an image at the trained size goes through untouched by resizing: the translator's own output
    translator = gantrain.load_translator(pix2pix_run)
    x = torch.from_numpy(np.asarray(Image.open(images / "exact.png"), dtype=np.uint8).copy())[None, None]
    expected = ((translator.translate(normalize(x))[0, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert np.array_equal(np.asarray(Image.open(out / "exact.png")), expected.numpy())


def test_translate_one_file_and_refusals(pix2pix_run, images, tmp_path, capsys):
    from gantrain.commands.translate import main

    with pytest.raises(SystemExit) as stop:
        main([str(pix2pix_run), f"input={images / 'photo.png'}", f"out={tmp_path / 'single'}"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"translated 1 image AtoB into {tmp_path / 'single'}"
    assert [p.name for p in (tmp_path / "single").iterdir()] == ["photo.png"]
    # again into the same folder: refused unless overwrite=true
    assert "already holds 1" in one_line_error(capsys, [str(pix2pix_run), f"input={images / 'photo.png'}",
                                                        f"out={tmp_path / 'single'}"], main)
    listing = sorted(p.name for p in images.iterdir())
    assert "input folder" in one_line_error(capsys, [str(pix2pix_run), f"input={images}", f"out={images}"], main)
    assert sorted(p.name for p in images.iterdir()) == listing
    err = one_line_error(capsys, [str(pix2pix_run), f"input={images}", f"out={tmp_path / 'x'}", "direction=BtoA"], main)
    assert "direction=BtoA" in err and "pix2pix" in err
    assert "input= is missing" in one_line_error(capsys, [str(pix2pix_run), f"out={tmp_path / 'x'}"], main)
    assert "did you mean direction=" in one_line_error(capsys, [str(pix2pix_run), f"input={images}",
                                                                f"out={tmp_path / 'x'}", "directon=AtoB"], main)
    (tmp_path / "empty").mkdir()
    assert "no images" in one_line_error(capsys, [str(pix2pix_run), f"input={tmp_path / 'empty'}",
                                                  f"out={tmp_path / 'x'}"], main)
    gan = Path(__file__).parent / "fixtures" / "v0_1_0" / "run"  # a GAN run written by gantrain 0.1.0
    assert "not an image translation run" in one_line_error(capsys, [str(gan), f"input={images}",
                                                                     f"out={tmp_path / 'x'}"], main)
    assert not (tmp_path / "x").exists()  # nothing is made by a refused command
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0 and "input=FILE_OR_FOLDER" in capsys.readouterr().out


def test_cyclegan_translates_back_from_mnistm(cyclegan_run, images, tmp_path, capsys):
    from gantrain.commands.translate import main

    with pytest.raises(SystemExit) as stop:
        main([str(cyclegan_run), f"input={images / 'photo.png'}", f"out={tmp_path / 'back'}", "direction=BtoA"])
    assert stop.value.code == 0, capsys.readouterr().err
    with Image.open(tmp_path / "back" / "photo.png") as back:
        assert back.size == (40, 50) and back.mode == "RGB"  # the run trains both domains in RGB


# ---- gantrain-eval -----------------------------------------------------------------------------


def test_gantrain_eval_on_a_translation_run(pix2pix_run, edges, capsys):
    from gantrain.commands.evaluate import eval_main

    result = run_command("gantrain-eval", str(pix2pix_run), "num_samples=200", "device=cpu", timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("metric"))
    assert lines[header].split() == ["metric", "value", "floor"]
    table = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[header + 1: header + 6]}
    report = json.loads((pix2pix_run / "eval.json").read_text())
    assert list(report["metrics"]) == ["l1", "psnr", "ssim", "label_acc", "fid_classifier"] == list(table)
    assert report["step"] == 4 and report["settings"] == {"num_samples": 200, "seed": 0}
    assert report["translation"]["direction"] == "AtoB" and "label_acc_ceiling" in report["translation"]
    again = TranslationEvaluator(edges, num_samples=200)
    scores = again(gantrain.load_translator(pix2pix_run))
    for name, value in scores.items():
        assert report["metrics"][name] == pytest.approx(value, rel=1e-6), name
        assert report["real_vs_real_floor"][name] == pytest.approx(again.floor[name], rel=1e-6), name
        assert table[name] == [pytest.approx(value, abs=1e-4), pytest.approx(again.floor[name], abs=1e-4)]
    with pytest.raises(SystemExit) as stop:
        eval_main([str(pix2pix_run), "metrics=[modes]"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and "l1, psnr, ssim" in err, err
