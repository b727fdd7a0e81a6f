"""Metrics on cases with a known answer, the domain classifier, gantrain-eval and evaluation in training."""
import json
import math

import pytest
import torch

from conftest import FAST, replay_generator, run_command, run_gantrain
from gantrain.eval.metrics import class_histogram, fid, frechet_distance, inception_score, precision_recall


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


def test_fid_exact_on_hand_built_sets():
    # 1D: a = {0, 2}: mean 1, unbiased variance 2; b = {0, 4}: mean 2, variance 8.
    # FID = (1 - 2)^2 + 2 + 8 - 2 sqrt(2 * 8) = 3
    a, b = torch.tensor([[0.0], [2.0]]), torch.tensor([[0.0], [4.0]])
    assert fid(a, b) == pytest.approx(3.0, abs=1e-12)
    assert fid(b, a) == pytest.approx(3.0, abs=1e-12)
    # three samples (the unbiased n - 1 matters): {0, 1, 2}: mean 1, variance 1; {0, 3, 6}: mean 3, variance 9.
    # FID = (1 - 3)^2 + 1 + 9 - 2 sqrt(9) = 8 (dividing by n instead would give 20/3)
    assert fid(torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[0.0], [3.0], [6.0]])) == pytest.approx(8.0, abs=1e-12)
    # 2D, two rank-1 clouds along (1, 2): c = (1,0) -+ (1,2), covariance [[2,4],[4,8]] (trace 10);
    # e = (0,0) -+ (1/2,1), covariance [[1/2,1],[1,2]] (trace 5/2). S_c S_e = 5 [[1,2],[2,4]] has eigenvalues 25
    # and 0 (a round-off-sized one, clamped), so Tr sqrt = 5 and FID = |(1,0)|^2 + 10 + 5/2 - 2 * 5 = 3.5
    c = torch.tensor([[0.0, -2.0], [2.0, 2.0]])
    e = torch.tensor([[-0.5, -1.0], [0.5, 1.0]])
    assert fid(c, e) == pytest.approx(3.5, abs=1e-12)
    # one sample has no spread (covariance divided by max(n - 1, 1): zero, not NaN): FID = |mean difference|^2
    assert fid(torch.tensor([[1.0, 2.0]]), torch.tensor([[4.0, 6.0]])) == pytest.approx(25.0, abs=1e-12)


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


def test_precision_recall_exact_on_a_hand_built_set():
    """Points on a line, k-NN radii worked out by hand (k-th neighbour of a point, the point itself excluded).

    real 12, 15, 18, 19 -- fake -2, 4, 7, 11; one point sits exactly on a ball's edge, and edges count as inside.
    k=1  real radii 3, 3, 1, 1: balls [9,15] [12,18] [17,19] [18,20] hold fake 11 only             -> precision 1/4
         fake radii 6, 3, 3, 4: balls [-8,4] [1,7] [4,10] [7,15] hold real 12 and 15 (on the edge) -> recall 2/4
    k=2  real radii 6, 3, 3, 4: balls [6,18] [12,18] [15,21] [15,23] hold fake 7 and 11           -> precision 2/4
         fake radii 9, 6, 4, 7: balls [-11,7] [-2,10] [3,11] [4,18] hold real 12, 15, 18 (edge)   -> recall 3/4
    Counting the point itself as its 1st neighbour would give k=1: (0, 0) and k=2: the k=1 answer.
    """
    real = torch.tensor([[12.0], [15.0], [18.0], [19.0]])
    fake = torch.tensor([[-2.0], [4.0], [7.0], [11.0]])
    assert precision_recall(real, fake, k=1) == (0.25, 0.5)
    assert precision_recall(real, fake, k=2) == (0.5, 0.75)
    # k=3 (the default): real radii 7, 4, 6, 7 hold fake 7 and 11; fake radii 13, 7, 9, 13 hold every real point
    assert precision_recall(real, fake, k=3) == precision_recall(real, fake) == (0.5, 1.0)
    assert precision_recall(fake, real, k=2) == (0.75, 0.5)  # the roles swap
    # In 2D the distance is Euclidean (3-4-5 triangles). real (0,0), (3,4), (6,8): 1st-neighbour radii 5, 5, 5.
    real2 = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    fake2 = torch.tensor([[0.0, -5.0], [7.0, 1.0], [10.0, 11.0], [9.0, 12.5]])
    # inside: (0,-5), (7,1), (10,11), each exactly 5 from a real point; outside: (9,12.5), 5.41 from (6,8).
    # fake radii 9.22, 9.22, 1.80, 1.80: (0,0) is 5 from (0,-5), (3,4) 5 from (7,1), (6,8) 7.07 from (7,1).
    assert precision_recall(real2, fake2, k=1) == (0.75, 1.0)


def test_precision_recall_same_in_chunks():
    """The k-NN radii and ball tests work on chunks of rows (memory); chunking must not change the answer."""
    from gantrain.eval import metrics

    real, fake = features(n=50, d=3, seed=4), features(n=40, d=3, seed=5) * 1.3
    radii = metrics._kth_neighbour_radii(real, 3)
    assert radii.shape == (50,)
    torch.testing.assert_close(metrics._kth_neighbour_radii(real, 3, chunk=7), radii)
    inside = metrics._inside_any(fake, real, radii)
    assert inside.dtype == torch.bool and inside.shape == (40,)
    assert torch.equal(metrics._inside_any(fake, real, radii, chunk=6), inside)
    p, r = precision_recall(real, fake)
    assert p == pytest.approx(float(inside.float().mean()))
    assert 0.0 < p < 1.0 and 0.0 < r <= 1.0


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
    # IS is averaged over `splits` (default 10) equal parts: 10 classes x 12 samples sorted by class give parts
    # of one class each (IS 1) with 10 splits, parts that mix two classes with 9 or 11
    sorted_classes = torch.eye(10).repeat_interleave(12, 0)
    assert inception_score(sorted_classes) == pytest.approx(1.0, rel=1e-9)
    assert inception_score(sorted_classes, splits=10) == pytest.approx(1.0, rel=1e-9)
    assert inception_score(sorted_classes, splits=1) == pytest.approx(10.0, rel=1e-9)
    assert inception_score(sorted_classes, splits=9) > 1.5
    # soft predictions: p(y|x) = (3/4, 1/4) and (1/4, 3/4), marginal (1/2, 1/2): KL = log 2 - H(3/4, 1/4)
    soft = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert inception_score(soft, splits=1) == pytest.approx(math.exp(math.log(2) - entropy), rel=1e-9)
    # class coverage counts a class from a tenth of a uniform share (here 1 in 100 samples), and no less
    covered = class_histogram(torch.cat([torch.full((95,), 0), torch.tensor([1, 2, 2, 3, 3])]), labels, 10)
    assert covered["classes"] == 4.0  # shares 0.95, 0.01, 0.02, 0.02
    sparse = class_histogram(torch.cat([torch.full((999,), 0), torch.tensor([1])]), labels, 10)
    assert sparse["classes"] == 1.0  # class 1 has 1 in 1000 < 1/100
    # a class the data does not have: KL stays finite, its reference share is taken as 1e-12
    missing = class_histogram(torch.full((10,), 3), torch.arange(3).repeat(5), 10)
    assert missing == {"classes": 1.0, "class_kl": pytest.approx(math.log(1e12), rel=1e-9)}


@pytest.mark.slow
def test_classifier_reaches_98_percent_on_mnist(data_root, classifier_cache, tmp_path):
    """The classifier the metrics read (trained once per session, by whichever test needs it first, with the
    steps gantrain-classifier takes by default) reaches 98%; the command itself trains, reports and caches one
    (a short run here, into a cache of its own: the session's classifier stays)."""

    from gantrain.data.images import MNIST
    from gantrain.eval.classifier import TRAINING_STEPS, load_classifier

    _, meta = load_classifier(MNIST(str(data_root)))
    assert meta["test_accuracy"] >= 0.98 and TRAINING_STEPS == 1000
    saved = torch.load(classifier_cache / "classifiers" / "MNIST-28px.pt", weights_only=True)
    assert saved["test_accuracy"] == meta["test_accuracy"]
    result = run_command("gantrain-classifier", "dataset=mnist", f"dataset.root={data_root}", "device=cpu", "steps=10",
                         timeout=900, env={"GANTRAIN_CACHE": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("MNIST-28px classifier: test accuracy ")[1].split("%")[0])
    assert 30.0 < accuracy < 90.0  # 10 steps: well above chance (10%), short of the full run (63% here)
    short = torch.load(tmp_path / "classifiers" / "MNIST-28px.pt", weights_only=True)
    assert short["test_accuracy"] == pytest.approx(accuracy / 100, abs=1e-4)
    assert torch.load(classifier_cache / "classifiers" / "MNIST-28px.pt", weights_only=True)["test_accuracy"] == \
        meta["test_accuracy"]  # the session's cache untouched
    # run again: the cached classifier is shown and kept (a retrained one would change every classifier score)
    cached = (tmp_path / "classifiers" / "MNIST-28px.pt").read_bytes()
    shown = run_command("gantrain-classifier", "dataset=mnist", f"dataset.root={data_root}", "device=cpu", "steps=5",
                        timeout=900, env={"GANTRAIN_CACHE": str(tmp_path)})
    assert shown.returncode == 0 and (tmp_path / "classifiers" / "MNIST-28px.pt").read_bytes() == cached
    assert f"MNIST-28px classifier: test accuracy {accuracy:.2f}%, cached in {tmp_path / 'classifiers' / 'MNIST-28px.pt'} (kept;" in shown.stdout
    redone = run_command("gantrain-classifier", "dataset=mnist", f"dataset.root={data_root}", "device=cpu", "steps=5",
                         "overwrite=true", timeout=900, env={"GANTRAIN_CACHE": str(tmp_path)})
    assert redone.returncode == 0 and (tmp_path / "classifiers" / "MNIST-28px.pt").read_bytes() != cached
    assert "MNIST-28px classifier: test accuracy " in redone.stdout and "saved" in redone.stdout
    bad = run_command("gantrain-classifier", "dataset=mnist", "overwrite=maybe", env={"GANTRAIN_CACHE": str(tmp_path)})
    assert bad.returncode == 2 and bad.stderr.strip() == "gantrain-classifier: error: overwrite=maybe must be true or false"


def test_processes_evaluating_at_once_train_the_classifier_once(tmp_path, monkeypatch):
    import threading

    import gantrain.eval.classifier as classifier
    from gantrain.data.images import Digits

    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path))
    trained = []
    real_train = classifier.train_classifier

    def counting(dataset, **kwargs):
        trained.append(threading.get_ident())
        return real_train(dataset, steps=50, **{k: v for k, v in kwargs.items() if k != "steps"})

    monkeypatch.setattr(classifier, "train_classifier", counting)
    loaded = []
    threads = [threading.Thread(target=lambda: loaded.append(classifier.load_classifier(Digits())[1])) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(trained) == 1 and len(loaded) == 2  # the second waited on the lock, then loaded the cached weights
    assert loaded[0]["weights_sha256"] == loaded[1]["weights_sha256"]


@pytest.mark.slow
def test_domain_evaluator_real_data_scores_near_floor(data_root):
    from gantrain.data.images import MNIST
    from gantrain.eval.evaluator import Evaluator

    dataset = MNIST(root=str(data_root), download=False)
    evaluator = Evaluator(dataset, "auto", num_samples=2000)
    test = dataset.split(train=False)

    fake = evaluator(replay_generator(test.tensor()))
    assert fake["fid_classifier"] == pytest.approx(evaluator.floor["fid_classifier"], rel=0.05)
    assert fake["classes"] == 10 and fake["precision"] > 0.6 and fake["recall"] > 0.6
    ones = (test.tensor()[test.labels() == 1][:1000])
    collapsed = evaluator(replay_generator(ones.repeat(2, 1, 1, 1)))
    assert collapsed["classes"] == 1 and collapsed["class_kl"] > 2.0
    assert collapsed["fid_classifier"] > 10 * evaluator.floor["fid_classifier"] and collapsed["recall"] < 0.3
    assert len(evaluator.provenance["classifier"]["weights_sha256"]) == 64


@pytest.mark.slow
def test_gantrain_eval_on_a_digits_run(tmp_path):
    run = tmp_path / "run"
    assert run_gantrain("trainer.steps=20", "trainer.ema_decay=0.9", *FAST, f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    result = run_command("gantrain-eval", str(run), "num_samples=500")
    assert result.returncode == 0, result.stderr
    report = json.loads((run / "eval.json").read_text())
    assert report["generator"] == "ema" and report["step"] == 20
    assert set(report["metrics"]) == {"fid_classifier", "is_classifier", "precision", "recall", "classes", "class_kl"}
    assert set(report["real_vs_real_floor"]) == set(report["metrics"])
    assert report["provenance"]["classifier"]["num_generated"] == 500
    assert "fid_classifier" in result.stdout and "real-vs-real" in result.stdout
    offline = run_command("gantrain-eval", str(run), "metrics=[fid]", env={
        "TORCH_HOME": str(tmp_path / "torch-home"), "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"})
    assert offline.returncode == 2 and "InceptionV3" in offline.stderr and "TORCH_HOME" in offline.stderr
    bad = run_command("gantrain-eval", str(run), "metrics=[fidd]")
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
    top = max(r["eval/modes"] for r in evals.values())
    assert best["periodic"]["evaluation"]["best"]["modes"] == top
    assert best["step"] == min(step for step, r in evals.items() if r["eval/modes"] == top)  # the first best is kept


@pytest.mark.slow
def test_unavailable_metric_never_crashes_training(tmp_path):
    run = tmp_path / "run"
    result = run_gantrain("trainer.steps=10", *FAST, "trainer.eval_every=5", "trainer.metrics=[fid]",
                          f"hydra.run.dir={run}", cwd=tmp_path, env={"TORCH_HOME": str(tmp_path / "th"),
                                                                    "https_proxy": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "evaluation at step 5 failed" in output and "off for the rest of this run" in output
    assert "evaluation at step 10" not in output  # said once, not at every evaluation
    assert (run / "checkpoints" / "last.pt").is_file()


class TinyFeatures(torch.nn.Module):
    """A fixed stand-in for InceptionV3 (whose weights cannot be downloaded offline): pooled pixels."""

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x.float() / 255.0, 4).flatten(1)


def test_inception_family_plumbing_with_a_stand_in_extractor():
    from gantrain.data.images import Digits
    from gantrain.eval.evaluator import Evaluator

    digits = Digits(image_size=16)
    evaluator = Evaluator(digits, ["fid", "kid", "is"], num_samples=500, inception=TinyFeatures())

    pick = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))[:500]
    same = evaluator(replay_generator(digits.tensor()[pick]))  # exactly the real reference set
    noise = evaluator(replay_generator(torch.randint(0, 256, (500, 1, 16, 16), dtype=torch.uint8)))
    assert abs(same["fid"]) < 1e-3 and noise["fid"] > 100 * max(same["fid"], 1e-3)
    assert noise["kid"] > same["kid"]
    assert same["is"] >= 1.0
    assert evaluator.provenance["inception"]["feature_extractor"] == "TinyFeatures"


def test_a_missing_torch_fidelity_is_named_in_whole_words(monkeypatch):
    import importlib.util

    import torchmetrics.image.fid as tm_fid

    from gantrain.data.images import Digits
    from gantrain.eval.evaluator import Evaluator, MetricUnavailable

    def refuse(*args, **kwargs):  # torchmetrics' own error, as it reads without the package
        raise ModuleNotFoundError("FrechetInceptionDistance metric requires that `Torch-fidelity` is installed. Either "
                                  "install as `pip install torchmetrics[image]` or `pip install torch-fidelity`.")

    monkeypatch.setattr(tm_fid, "FrechetInceptionDistance", refuse)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch_fidelity" else real_find_spec(name, *a))
    with pytest.raises(MetricUnavailable) as info:
        Evaluator(Digits(image_size=16), ["fid"], num_samples=10)._inception(["fid"], None)
    assert str(info.value).startswith("fid unavailable (torch-fidelity is not installed); InceptionV3 metrics need "
                                      "torch-fidelity (pip install 'gantrain[fid]')")
