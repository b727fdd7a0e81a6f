"""Metrics on cases with a known answer, the domain classifier, gantrain-eval and evaluation in training."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import FAST, run_gantrain
from gantrain.metrics import class_histogram, fid, frechet_distance, inception_score, precision_recall


def features(n=2000, d=16, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_fid_identical_shifted_and_scaled():
    real = features()
    assert abs(fid(real, real)) < 1e-6
    shift = torch.zeros(16)
    shift[0] = 3.0
    assert fid(real, real + shift) == pytest.approx(9.0, rel=1e-6)  # same covariance: FID = |shift|^2
    # Gaussians with known statistics: N(0, I) vs N(0, 4I) in d dims: Tr(I + 4I - 2*2I) = d.
    eye = torch.eye(16, dtype=torch.float64)
    assert frechet_distance(torch.zeros(16, dtype=torch.float64), eye, torch.zeros(16, dtype=torch.float64), 4 * eye) == pytest.approx(16.0)
    assert fid(real, real * 0.5) > fid(real, real * 0.9) > 0


def test_precision_recall_known_cases():
    real = features()
    assert precision_recall(real, real) == (1.0, 1.0)
    shrunk = real * 0.2  # all fake samples in the dense centre: precise, but they cover little of the data
    p, r = precision_recall(real, shrunk)
    assert p > 0.95 and r < 0.3
    wide = real * 3.0  # spread far beyond the data: imprecise, still covers the data
    p, r = precision_recall(real, wide)
    assert p < 0.3 and r > 0.5
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)


def test_inception_score_and_class_histogram():
    ten = torch.eye(10).repeat(100, 1)  # confident and uniform over 10 classes
    assert inception_score(ten, splits=10) == pytest.approx(10.0, rel=1e-6)
    one = torch.zeros(1000, 10)
    one[:, 3] = 1
    assert inception_score(one) == pytest.approx(1.0, rel=1e-6)
    labels = torch.arange(10).repeat(100)
    assert class_histogram(labels, labels, 10) == {"classes": 10.0, "class_kl": pytest.approx(0.0, abs=1e-12)}
    collapsed = class_histogram(torch.full((1000,), 3), labels, 10)
    assert collapsed["classes"] == 1 and collapsed["class_kl"] == pytest.approx(math.log(10))


@pytest.mark.slow
def test_classifier_reaches_98_percent_on_mnist(data_root, classifier_cache):
    result = subprocess.run([str(Path(sys.executable).with_name("gantrain-classifier")), "dataset=mnist",
                             f"dataset.root={data_root}", "device=cpu"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("test accuracy ")[1].split("%")[0])
    assert accuracy >= 98.0
    saved = torch.load(classifier_cache / "classifiers" / "MNIST-28px.pt", weights_only=True)
    assert saved["test_accuracy"] == pytest.approx(accuracy / 100, abs=1e-4)


@pytest.mark.slow
def test_domain_evaluator_real_data_scores_near_floor(data_root):
    from gantrain.data import MNIST
    from gantrain.evaluate import Evaluator

    dataset = MNIST(root=str(data_root), download=False)
    evaluator = Evaluator(dataset, "auto", num_samples=2000)
    test = dataset.split(train=False)

    class Replay(torch.nn.Module):
        """A 'generator' that returns real test images: its scores must sit at the real-vs-real floor."""

        latent_dim = 1

        def __init__(self, images):
            super().__init__()
            self.images, self.w = images, torch.nn.Parameter(torch.zeros(1))
            self.i = 0

        def sample(self, n, generator=None):
            out = self.images[self.i : self.i + n].float() / 127.5 - 1
            self.i += n
            return out

    fake = evaluator(Replay(test.tensor()))
    assert fake["fid_classifier"] == pytest.approx(evaluator.floor["fid_classifier"], rel=0.05)
    assert fake["classes"] == 10 and fake["precision"] > 0.6 and fake["recall"] > 0.6
    ones = (test.tensor()[test.labels() == 1][:1000])
    collapsed = evaluator(Replay(ones.repeat(2, 1, 1, 1)))
    assert collapsed["classes"] == 1 and collapsed["class_kl"] > 2.0
    assert collapsed["fid_classifier"] > 10 * evaluator.floor["fid_classifier"] and collapsed["recall"] < 0.3
    assert len(evaluator.provenance["classifier"]["weights_sha256"]) == 64


@pytest.mark.slow
def test_gantrain_eval_on_a_digits_run(tmp_path):
    run = tmp_path / "run"
    assert run_gantrain("trainer.steps=20", "trainer.ema_decay=0.9", *FAST, f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    exe = str(Path(sys.executable).with_name("gantrain-eval"))
    result = subprocess.run([exe, str(run), "num_samples=500"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((run / "eval.json").read_text())
    assert report["generator"] == "ema" and report["step"] == 20
    assert set(report["metrics"]) == {"fid_classifier", "is_classifier", "precision", "recall", "classes", "class_kl"}
    assert set(report["real_vs_real_floor"]) == set(report["metrics"])
    assert report["provenance"]["classifier"]["num_generated"] == 500
    assert "fid_classifier" in result.stdout and "real-vs-real" in result.stdout
    offline = subprocess.run([exe, str(run), "metrics=[fid]"], capture_output=True, text=True, timeout=600,
                             env={**__import__("os").environ, "TORCH_HOME": str(tmp_path / "torch-home"),
                                  "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"})
    assert offline.returncode == 2 and "InceptionV3" in offline.stderr and "TORCH_HOME" in offline.stderr
    bad = subprocess.run([exe, str(run), "metrics=[fidd]"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "unknown metric(s) fidd" in bad.stderr


@pytest.mark.slow
def test_grid_run_logs_modes_and_keeps_best(tmp_path):
    run = tmp_path / "grid"
    result = run_gantrain("experiment=grid", "trainer.steps=40", *FAST, "trainer.eval_every=20", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r for r in rows if "eval/modes" in r}
    assert sorted(evals) == [20, 40]
    assert evals[40]["floor/modes"] == 25 and evals[40]["floor/high_quality_pct"] > 97  # samples of the mixture itself
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["metrics"]["best"]["modes"] == max(r["eval/modes"] for r in evals.values())


@pytest.mark.slow
def test_unavailable_metric_never_crashes_training(tmp_path):
    run = tmp_path / "run"
    result = run_gantrain("trainer.steps=10", *FAST, "trainer.eval_every=5", "trainer.metrics=[fid]",
                          f"hydra.run.dir={run}", cwd=tmp_path, env={"TORCH_HOME": str(tmp_path / "th"),
                                                                    "https_proxy": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    assert "evaluation during training is off" in result.stdout + result.stderr
    assert (run / "checkpoints" / "last.pt").is_file()


class TinyFeatures(torch.nn.Module):
    """A fixed stand-in for InceptionV3 (whose weights cannot be downloaded offline): pooled pixels."""

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x.float() / 255.0, 4).flatten(1)


def test_inception_family_plumbing_with_a_stand_in_extractor():
    from gantrain.data import Digits
    from gantrain.evaluate import Evaluator

    digits = Digits(image_size=16)
    evaluator = Evaluator(digits, ["fid", "kid", "is"], num_samples=500, inception=TinyFeatures())

    class Replay(torch.nn.Module):
        latent_dim = 1

        def __init__(self, images):
            super().__init__()
            self.images, self.i, self.w = images, 0, torch.nn.Parameter(torch.zeros(1))

        def sample(self, n, generator=None):
            out = self.images[self.i : self.i + n].float() / 127.5 - 1
            self.i += n
            return out

    pick = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))[:500]
    same = evaluator(Replay(digits.tensor()[pick]))  # exactly the real reference set
    noise = evaluator(Replay(torch.randint(0, 256, (500, 1, 16, 16), dtype=torch.uint8)))
    assert abs(same["fid"]) < 1e-3 and noise["fid"] > 100 * max(same["fid"], 1e-3)
    assert noise["kid"] > same["kid"]
    assert same["is"] >= 1.0
    assert evaluator.provenance["inception"]["feature_extractor"] == "TinyFeatures"
