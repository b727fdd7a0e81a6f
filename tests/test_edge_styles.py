"""edges2mnist's outline styles: the mixed training styles (several operators, widths and drawing sizes per
digit), the held-out styles the evaluation scores, 0.7.0's set behind edge_styles=sobel, and the per-style rows
of `gantrain-eval` on a tiny real run. Small subsets of the real MNIST test digits; exact comparisons only
between two computations on this machine."""
import itertools
import json
import os

import pytest
import torch

from gantrain.data import outlines
from gantrain.data import translation as td
from gantrain.config import with_added_keys
from gantrain.data.images import MNIST
from gantrain.errors import GantrainError
from gantrain.data.translation import Edges2MNIST
from gantrain.data.outlines import draw_outlines, held_out_outlines, sample_styles, sobel_edges
from conftest import run_command

N = 64  # digits per style check


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edge-styles-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANTRAIN_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def digits(data_root):
    ds = MNIST(root=str(data_root), image_size=32, download=False, train=False)
    return ds.tensor(), ds.labels()


@pytest.fixture(scope="module")
def mixed_test(cache, data_root):
    """The mixed test split (10,000 digits), built in this module's cache."""
    ds = Edges2MNIST(root=str(data_root), train=False, download=False)
    ds.tensor()
    return ds


def training_specs():
    return [(op, w, s, 0.0) for op, w, s in itertools.product(outlines.TRAIN_OPERATORS, outlines.TRAIN_WIDTHS, outlines.TRAIN_SCALES)]


def test_every_style_is_deterministic_and_the_jitter_follows_its_seed(digits):
    x = digits[0][:N]
    for spec in training_specs():
        first = draw_outlines(x, *spec)
        assert first.shape == x.shape and first.dtype == torch.uint8 and int(first.flatten(1).amax(1).min()) > 0, spec
        assert torch.equal(first, draw_outlines(x, *spec)), spec
    for style in ("sobel", *outlines.HELD_OUT_STYLES):
        first = held_out_outlines(x, style, seed=3)
        assert int(first.flatten(1).amax(1).min()) > 0, style  # every digit gets an outline
        assert torch.equal(first, held_out_outlines(x, style, seed=3)), style
        changed = not torch.equal(first, held_out_outlines(x, style, seed=4))
        assert changed == (outlines.HELD_OUT_STYLES.get(style, outlines.SOBEL_STYLE)[3] > 0), style  # only the jitter draws
    one = sample_styles(1000, torch.Generator().manual_seed(5))
    assert torch.equal(one, sample_styles(1000, torch.Generator().manual_seed(5)))
    assert not torch.equal(one, sample_styles(1000, torch.Generator().manual_seed(6)))


def test_the_styles_differ_from_each_other(digits):
    x = digits[0][:N]
    drawn = {spec: draw_outlines(x, *spec) for spec in training_specs()}
    drawn.update({name: held_out_outlines(x, name) for name in outlines.HELD_OUT_STYLES})
    for (a, xa), (b, xb) in itertools.combinations(drawn.items(), 2):
        # most digits are drawn differently by any two styles (not one lucky pixel)
        differ = (xa != xb).flatten(1).any(1).float().mean()
        assert differ > 0.9, (a, b, float(differ))


def test_held_out_styles_are_never_drawn_in_training(mixed_test, digits):
    styles = mixed_test.styles()
    assert styles.shape == (10000, 3) and styles.dtype == torch.int64
    for column, choices in enumerate((outlines.TRAIN_OPERATORS, outlines.TRAIN_WIDTHS, outlines.TRAIN_SCALES)):
        used = set(styles[:, column].tolist())
        assert used == set(range(len(choices)))  # every choice drawn, nothing outside them
    trained = set(training_specs())
    for name, spec in outlines.HELD_OUT_STYLES.items():
        assert spec not in trained, name
        assert spec[0] not in outlines.TRAIN_OPERATORS or spec[1] not in outlines.TRAIN_WIDTHS or spec[2] not in outlines.TRAIN_SCALES \
            or spec[3] > 0, name
    assert outlines.SOBEL_STYLE in trained  # 0.7.0's outline is one of the training styles
    # on the digits themselves: no held-out outline of a test digit equals its training outline
    pairs = mixed_test.tensor()[:500]
    a, b = pairs[:, :1], pairs[:, 1:]
    assert torch.equal(b, digits[0][:500])
    for name in outlines.HELD_OUT_STYLES:
        same = (held_out_outlines(b, name) == a).flatten(1).all(1)
        assert not bool(same.any()), name
    # and each training outline is its own style's drawing
    for i in range(0, 500, 25):
        op, w, s = styles[i].tolist()
        spec = (outlines.TRAIN_OPERATORS[op], outlines.TRAIN_WIDTHS[w], outlines.TRAIN_SCALES[s])
        assert torch.equal(a[i:i + 1], draw_outlines(b[i:i + 1], *spec)), i


def test_mixed_set_is_deterministic_per_seed_and_cached_under_its_own_name(mixed_test, data_root, cache, tmp_path,
                                                                           monkeypatch):
    assert mixed_test.edge_styles == "mixed" and mixed_test.seed == 0
    assert mixed_test.cache_path == cache / "datasets" / "edges2mnist-32-test-mixed-seed0.pt"
    assert mixed_test.cache_path.is_file()
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path))  # empty: built again from MNIST
    again = Edges2MNIST(root=str(data_root), train=False, download=False, seed=0)
    assert torch.equal(again.tensor(), mixed_test.tensor()) and torch.equal(again.styles(), mixed_test.styles())
    other = Edges2MNIST(root=str(data_root), train=False, download=False, seed=1)
    assert other.cache_path.name == "edges2mnist-32-test-mixed-seed1.pt"
    assert torch.equal(other.tensor()[:, 1:], mixed_test.tensor()[:, 1:])  # the same digits,
    assert not torch.equal(other.styles(), mixed_test.styles())  # drawn in other styles
    split = mixed_test.split(True)
    assert (split.train, split.edge_styles, split.seed) == (True, "mixed", 0)
    # a cache of 0.7.0's set (its file name) is never read as the mixed set, nor the reverse
    sobel = Edges2MNIST(root=str(data_root), train=False, download=False, edge_styles="sobel")
    assert sobel.cache_path.name == "edges2mnist-32-test.pt" and sobel.styles() is None
    assert not torch.equal(sobel.tensor(), again.tensor())
    with pytest.raises(GantrainError, match="edge_styles='canny' is not one of mixed, sobel"):
        Edges2MNIST(root=str(data_root), edge_styles="canny")


def test_edge_styles_sobel_is_the_old_set(data_root, digits, tmp_path, monkeypatch):
    """edge_styles=sobel against 0.7.0's build: the one-pixel Sobel maxima of each digit, paired with the digit."""
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path))
    ds = Edges2MNIST(root=str(data_root), train=False, download=False, edge_styles="sobel", seed=7)  # seed unused
    old = torch.cat([sobel_edges(digits[0]), digits[0]], dim=1)  # what 0.7.0's Edges2MNIST._build stored
    assert torch.equal(ds.tensor(), old) and torch.equal(ds.labels(), digits[1])
    assert torch.equal(draw_outlines(digits[0][:N], *outlines.SOBEL_STYLE), sobel_edges(digits[0][:N]))
    # 0.7.0's cache file (same name and content) is read as it is
    monkeypatch.setattr(td, "_digits", lambda *a: pytest.fail("MNIST read although 0.7.0's cache is there"))
    assert torch.equal(Edges2MNIST(root=str(data_root), train=False, download=False, edge_styles="sobel").tensor(), old)


def test_runs_written_before_edge_styles_keep_the_old_set():
    old = {"seed": 0, "dataset": {"_target_": "gantrain.translation_data.Edges2MNIST", "root": "data", "image_size": 32,
                                  "download": True, "on_device": "auto"}}
    assert with_added_keys(old)["dataset"]["edge_styles"] == "sobel" and with_added_keys(old)["dataset"]["seed"] == 0
    new = {**old, "dataset": {**old["dataset"], "edge_styles": "mixed", "seed": 2}}
    assert {k: with_added_keys(new)["dataset"][k] for k in ("edge_styles", "seed")} == {"edge_styles": "mixed", "seed": 2}
    mnist = {"seed": 0, "dataset": {"_target_": "gantrain.data.MNIST", "root": "data"}}
    assert "edge_styles" not in with_added_keys(mnist)["dataset"]  # only edges2mnist has the key


@pytest.fixture(scope="module")
def classifier_cache(cache, data_root):
    """An MNIST-32px classifier trained briefly (the real one takes minutes on CPUs) in this module's cache."""
    from gantrain.eval.classifier import save_classifier, train_classifier

    mnist = MNIST(root=str(data_root), image_size=32, download=False)
    model, accuracy = train_classifier(mnist, steps=30, batch_size=64)
    save_classifier(model, mnist, accuracy)
    return cache



def test_gantrain_eval_reports_every_outline_style(classifier_cache, data_root, tmp_path):
    env = {**os.environ, "GANTRAIN_CACHE": str(classifier_cache), "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    trained = run_command(
        "gantrain", "experiment=pix2pix_edges2mnist", f"dataset.root={data_root}", "dataset.download=false",
         "trainer.device=cpu", "trainer.steps=2", "trainer.batch_size=4", "trainer.log_every=1", "trainer.sample_every=2",
         "trainer.ckpt_every=2", "trainer.eval_every=0", "trainer.progress=false", "generator.width=8",
         "discriminator.width=8", f"hydra.run.dir={run}", timeout=300, env=env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    result = run_command("gantrain-eval", str(run), "num_samples=100", "device=cpu", timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = dict(line.split(": ", 1) for line in result.stdout.splitlines() if line.startswith(("label_acc[", "floor/")))
    report = json.loads((run / "eval.json").read_text())
    styles = ["sobel", "canny", "morph_gradient", "thick", "sketch64"]
    assert list(outlines.HELD_OUT_STYLES) == styles[1:]
    for style in styles:
        for key in (f"label_acc[{style}]", f"floor/label_acc[{style}]"):
            value = report["translation"][key]
            assert 0 <= value <= 1 and value * 100 == pytest.approx(round(value * 100)), key  # a share of 100 digits
            assert float(printed[key]) == pytest.approx(value, abs=1e-4), key
        assert "held out" in report["provenance"]["outline_styles"][style] or style == "sobel"
    assert report["provenance"]["outline_styles"]["training"] == "mixed"
    # the floors are the classifier on the raw outlines: the same whatever the translator
    from gantrain.eval.translation import TranslationEvaluator

    evaluator = TranslationEvaluator(Edges2MNIST(root=str(data_root), train=True, download=False), num_samples=100)
    evaluator.prepare()
    for style in styles:
        assert evaluator.style_floor[style] == report["translation"][f"floor/label_acc[{style}]"], style
