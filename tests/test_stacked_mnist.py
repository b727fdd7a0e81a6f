"""Stacked MNIST: the dataset (deterministic, cached outside the repository, labels that match its digits, MNIST's
own errors), the mode metrics (pure functions on hand-made histograms; the MNIST classifier on real stacked data
and on a collapsed batch), the choice of metrics, and a tiny `gantrain` run scored by `gantrain-eval`."""
import json
import math

import pytest
import torch

from conftest import FAST, REPO, replay_generator, run_command, run_gantrain
from gantrain.errors import GantrainError
from gantrain.eval.metrics import kl_to_uniform, mode_histogram, modes_covered, stacked_mnist_metrics
from gantrain.data.stacked_mnist import StackedMNIST, classify_stacked, label_digits, stacked_labels


# ---- the dataset -------------------------------------------------------------------------------


def test_same_seed_same_set_other_seed_other_set(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "a"))
    first = StackedMNIST(str(data_root), num_samples=3000, seed=0)
    images, labels = first.tensor(), first.labels()
    assert images.shape == (3000, 3, 28, 28) and images.dtype == torch.uint8 and len(first) == 3000
    assert labels.shape == (3000,) and labels.dtype == torch.int64 and first.num_classes == 1000
    assert 0 <= int(labels.min()) and int(labels.max()) <= 999
    # cached under $GANTRAIN_CACHE/datasets, keyed by size, count, seed and split; nothing is written in the repository
    assert first.cache_path.is_file() and first.cache_path.parent == tmp_path / "a" / "datasets"
    assert first.cache_path.name == "stacked_mnist-28px-3000-seed0-train.pt"
    assert not first.cache_path.resolve().is_relative_to(REPO)
    # built again from scratch (another, empty cache): the same set
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "b"))
    again = StackedMNIST(str(data_root), num_samples=3000, seed=0)
    assert not again.cache_path.exists()
    assert torch.equal(again.tensor(), images) and torch.equal(again.labels(), labels)
    assert torch.equal(StackedMNIST(str(data_root), num_samples=3000, seed=0).tensor(), images)  # read from the cache
    other = StackedMNIST(str(data_root), num_samples=3000, seed=1)
    assert not torch.equal(other.indices(), first.indices()) and not torch.equal(other.tensor(), images)
    assert other.cache_path != first.cache_path
    # the test split: the same construction from MNIST's 10,000 test digits
    test = first.split(train=False, num_samples=500)
    assert isinstance(test, StackedMNIST) and len(test.tensor()) == 500 and int(test.indices().max()) < 10000
    assert test.cache_path.name == "stacked_mnist-28px-500-seed0-test.pt"
    # every triple of digits is a mode: 3,000 samples spread over most of the 1000
    assert len(labels.unique()) > 900


def test_labels_are_the_digits_of_the_recorded_mnist_images(data_root):
    from gantrain.data.images import MNIST

    for train, count in ((True, 2000), (False, 1000)):
        stacked = StackedMNIST(str(data_root), num_samples=count, train=train)
        mnist = MNIST(str(data_root), train=train)
        digits, digit_labels = mnist.tensor(), mnist.labels()
        where = stacked.indices()
        assert where.shape == (count, 3) and int(where.min()) >= 0 and int(where.max()) < len(digits)
        for c in range(3):  # channel c (R, G, B) is the MNIST image at where[:, c]
            assert torch.equal(stacked.tensor()[:, c], digits[where[:, c], 0])
        triples = digit_labels[where]
        assert torch.equal(stacked.labels(), 100 * triples[:, 0] + 10 * triples[:, 1] + triples[:, 2])
        assert torch.equal(label_digits(stacked.labels()), triples)
    assert stacked_labels(torch.tensor([[1, 2, 3], [0, 0, 7], [9, 9, 9]])).tolist() == [123, 7, 999]
    # the three indices are drawn independently: the channels of a sample are not tied to one another
    assert (where[:, 0] != where[:, 1]).float().mean() > 0.99


def test_missing_or_damaged_mnist_gives_mnists_errors(tmp_path, monkeypatch):
    import gzip

    from gantrain.data.images import MNIST

    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))

    def error(dataset):
        with pytest.raises(GantrainError) as info:
            dataset.tensor()
        return str(info.value)

    empty = tmp_path / "empty"
    message = error(StackedMNIST(str(empty), num_samples=10, download=False))
    assert message == error(MNIST(str(empty), download=False)) and "dataset.root" in message and "\n" not in message
    raw = tmp_path / "bad" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        with gzip.open(raw / f"{stem}.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 3, 0, 0, 0, 9, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(100))  # truncated
    message = error(StackedMNIST(str(tmp_path / "bad"), num_samples=10, download=False))
    assert message == error(MNIST(str(tmp_path / "bad"), download=False)) and "truncated" in message
    for bad, key in (({"num_samples": 0}, "dataset.num_samples"), ({"num_samples": 2.5}, "dataset.num_samples"),
                     ({"seed": -1}, "dataset.seed"), ({"root": ""}, "dataset.root"),
                     ({"image_size": 2}, "dataset.image_size"),
                     ({"on_device": "maybe"}, "dataset.on_device")):
        with pytest.raises(GantrainError, match=key.replace(".", r"\.")) as info:
            StackedMNIST(**{"root": str(empty), **bad})
        assert "\n" not in str(info.value)


# ---- the pure metrics --------------------------------------------------------------------------


def test_mode_metrics_on_hand_made_histograms():
    assert mode_histogram(torch.tensor([0, 0, 3, 9]), 10).tolist() == [2, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError):
        mode_histogram(torch.tensor([10]), 10)
    histogram = torch.tensor([5, 0, 1, 0])
    assert modes_covered(histogram) == 2.0 and modes_covered(histogram, min_count=2) == 1.0
    assert modes_covered(torch.zeros(4, dtype=torch.int64)) == 0.0
    # KL(p || uniform) = sum p log(K p): 0 when even, log K for one mode, log(K / m) for m equal modes
    assert kl_to_uniform(torch.full((1000,), 26)) == pytest.approx(0.0, abs=1e-12)
    assert kl_to_uniform(torch.tensor([0, 26000, 0, 0])) == pytest.approx(math.log(4))
    assert kl_to_uniform(torch.tensor([7, 7, 0, 0, 0, 0])) == pytest.approx(math.log(3))
    assert kl_to_uniform(torch.tensor([3, 1])) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert math.isnan(kl_to_uniform(torch.zeros(5, dtype=torch.int64)))
    every = stacked_mnist_metrics(torch.arange(1000).repeat(26))
    assert every == {"stacked_modes": 1000.0, "stacked_kl": pytest.approx(0.0, abs=1e-12)}
    one = stacked_mnist_metrics(torch.full((26000,), 123))
    assert one == {"stacked_modes": 1.0, "stacked_kl": pytest.approx(math.log(1000))}
    half = stacked_mnist_metrics(torch.arange(500).repeat(3))  # half of the modes, evenly
    assert half == {"stacked_modes": 500.0, "stacked_kl": pytest.approx(math.log(2))}


# ---- the Evaluator -----------------------------------------------------------------------------


def test_metric_choice_never_trains_a_classifier_on_stacked_images(data_root):
    from gantrain.data.images import MNIST
    from gantrain.eval.evaluator import HIGHER_IS_BETTER, STACKED_METRICS, Evaluator, MetricChoiceError, default_metrics

    stacked = StackedMNIST(str(data_root))
    assert default_metrics(stacked) == default_metrics(stacked, conditional=True) == list(STACKED_METRICS)
    assert Evaluator(stacked).num_samples == 26000  # VEEGAN's and PacGAN's count
    assert (HIGHER_IS_BETTER["stacked_modes"], HIGHER_IS_BETTER["stacked_kl"]) == (True, False)
    for domain in (["fid_classifier"], ["classes", "stacked_modes"]):
        with pytest.raises(MetricChoiceError, match="stacked_modes, stacked_kl") as info:
            Evaluator(stacked, domain)
        assert "\n" not in str(info.value)
    with pytest.raises(MetricChoiceError, match="stacked_mnist"):
        Evaluator(MNIST(str(data_root)), ["stacked_kl"])
    assert "stacked_modes" not in default_metrics(MNIST(str(data_root)))


def test_real_stacked_data_covers_every_mode_and_a_constant_batch_one(data_root, classifier_cache):
    from gantrain.eval.classifier import cache_dir
    from gantrain.data.images import MNIST
    from gantrain.eval.evaluator import Evaluator

    stacked = StackedMNIST(str(data_root))
    evaluator = Evaluator(stacked)
    evaluator.prepare()  # the floor: the modes of 26,000 real stacked test images
    floor, n, k = evaluator.floor, 26000, 1000
    assert floor["stacked_modes"] == 1000
    # the KL a real sample should show: KL(p || uniform) of the true mode distribution p (three independent
    # digits at MNIST's test frequencies) plus the expected KL of an n-sample histogram to p, (k - 1) / 2n to
    # first order, with a standard deviation of sqrt(2 (k - 1)) / 2n (2n KL is about chi-square with k - 1 dof)
    frequencies = torch.bincount(MNIST(str(data_root), train=False).labels(), minlength=10).double() / 10000
    true_kl = 3 * float((frequencies * torch.log(10 * frequencies)).sum())
    expected, sd = true_kl + (k - 1) / (2 * n), math.sqrt(2 * (k - 1)) / (2 * n)
    assert 0.02 < expected < 0.03
    test = stacked.split(train=False, num_samples=n)
    exact = stacked_mnist_metrics(test.labels())  # the true labels of the same images
    assert abs(exact["stacked_kl"] - expected) < 5 * sd
    assert floor["stacked_kl"] < expected + 5 * sd and abs(floor["stacked_kl"] - exact["stacked_kl"]) < 0.003
    provenance = evaluator.provenance["stacked_mnist"]
    assert provenance["num_real"] == provenance["num_generated"] == n and provenance["modes"] == k
    assert provenance["floor_mode_accuracy"] > 0.95 and len(provenance["weights_sha256"]) == 64
    # the classifier is MNIST's (trained on MNIST, 10 classes), never one of the stacked images
    assert provenance["feature_extractor"] == "DomainClassifier(MNIST-28px)"
    assert not list(cache_dir().glob("stacked*"))
    # classifying each source digit once (the floor) gives what classifying every channel gives
    from gantrain.eval.classifier import load_classifier

    model, _ = load_classifier(MNIST(str(data_root)))
    part = test.tensor()[:1500]
    direct = classify_stacked(model, part)
    assert torch.equal(direct, classify_stacked(model, part, indices=test.indices()[:1500]))
    assert (direct == test.labels()[:1500]).float().mean() > 0.95
    # a collapsed generator: one real stacked image repeated is one mode, KL = log 1000
    small = Evaluator(stacked, num_samples=1000)
    constant = small(replay_generator(test.tensor()[:1].repeat(1000, 1, 1, 1)))
    assert constant["stacked_modes"] == 1 and constant["stacked_kl"] == pytest.approx(math.log(1000))
    replayed = small(replay_generator(test.tensor()[-1000:]))  # real images: about the floor of the same count
    assert abs(replayed["stacked_modes"] - small.floor["stacked_modes"]) < 60


def test_other_image_sizes_are_classified_at_28_px(data_root):
    from gantrain.eval.classifier import load_classifier
    from gantrain.data.images import MNIST

    test = StackedMNIST(str(data_root), image_size=32, num_samples=300, train=False)
    assert test.tensor().shape == (300, 3, 32, 32)
    model, _ = load_classifier(MNIST(str(data_root)))
    assert (classify_stacked(model, test.tensor()) == test.labels()).float().mean() > 0.9


# ---- configs and the commands ------------------------------------------------------------------


def test_the_experiment_is_pacgans_dcgan_setting_and_trains_conditionally(data_root, tmp_path):
    import gantrain
    from gantrain.training.build import build

    cfg = gantrain.compose(["experiment=dcgan_stacked_mnist"])
    assert cfg.dataset._target_ == "gantrain.data.stacked_mnist.StackedMNIST" and cfg.dataset.num_samples == 128000
    assert cfg.generator._target_.endswith("DCGANGenerator")
    assert cfg.discriminator._target_.endswith("DCGANDiscriminator")
    assert cfg.loss._target_.endswith("NonSaturating") and cfg.generator.latent_dim == 100
    assert (cfg.optimizer.name, cfg.optimizer.lr, list(cfg.optimizer.betas)) == ("adam", 2e-4, [0.5, 0.999])
    assert cfg.trainer.batch_size == 64 and cfg.trainer.eval_every == cfg.trainer.steps  # scored after the last step
    assert gantrain.compose(["experiment=dcgan_stacked_mnist", "trainer.steps=300"]).trainer.eval_every == 300
    # labels 0..999: conditional=true trains on them
    cfg = gantrain.compose(["experiment=dcgan_stacked_mnist", f"dataset.root={data_root}", "dataset.num_samples=256",
                            "conditional=true", "generator.base_channels=4", "discriminator.base_channels=4",
                            "trainer.batch_size=8", "trainer.device=cpu"])
    loop = build(cfg, tmp_path / "run", evaluate=False)
    assert loop.game.G.num_classes == 1000
    loop.game.step(loop.batches.next(1))
    assert all(math.isfinite(v) for v in loop.stats.read().values())


@pytest.mark.slow
def test_gantrain_run_then_gantrain_eval_prints_modes_and_kl(data_root, tmp_path):
    run = tmp_path / "run"
    result = run_gantrain("experiment=dcgan_stacked_mnist", f"dataset.root={data_root}", "dataset.num_samples=512",
                          "generator.base_channels=4", "discriminator.base_channels=4", "generator.latent_dim=8",
                          "trainer.steps=4", "trainer.batch_size=16", "trainer.eval_every=0", *FAST,
                          f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # 2,000 samples here to keep the test short; the metrics are defined for any count (26,000 by default)
    evaluated = run_command("gantrain-eval", str(run), "num_samples=2000", "device=cpu")
    assert evaluated.returncode == 0, evaluated.stderr
    rows = {line.split()[0]: line.split()[1:] for line in evaluated.stdout.splitlines() if line.startswith("stacked_")}
    assert set(rows) == {"stacked_modes", "stacked_kl"} and all(len(v) == 2 for v in rows.values())  # value, floor
    report = json.loads((run / "eval.json").read_text())
    assert set(report["metrics"]) == set(report["real_vs_real_floor"]) == {"stacked_modes", "stacked_kl"}
    modes, kl = report["metrics"]["stacked_modes"], report["metrics"]["stacked_kl"]
    assert 1 <= modes <= 1000 and 0 <= kl <= math.log(1000) + 1e-9
    floor = report["real_vs_real_floor"]
    assert float(rows["stacked_modes"][0]) == modes and float(rows["stacked_modes"][1]) == floor["stacked_modes"]
    assert floor["stacked_modes"] > 800  # 2,000 real samples cover most of the 1000 modes
    assert report["provenance"]["stacked_mnist"]["num_generated"] == 2000
