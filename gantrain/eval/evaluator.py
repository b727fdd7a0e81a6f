"""Evaluation of a generator: `gantrain-eval RUN_OR_CHECKPOINT [metrics=[...]]`, and during training.

Metric families (names as logged, under eval/ in TensorBoard):
- 2D mixtures: modes, high_quality_pct, reverse_kl (VEEGAN / PacGAN definitions, 2,500 samples).
- labelled image datasets (mnist, fashion_mnist, digits), in the feature space of a small domain
  classifier: fid_classifier, is_classifier, precision, recall (k = 3), classes, class_kl.
- any image dataset, with InceptionV3 through torchmetrics: fid, kid, is.
- Stacked MNIST (dataset=stacked_mnist; VEEGAN / PacGAN definitions, 26,000 samples): each channel of a sample
  is classified by the MNIST domain classifier (trained on MNIST itself, never on the stacked images), the
  three digits giving one of 1000 modes. stacked_modes: modes with at least one sample (higher is better, at
  most 1000); stacked_kl: KL(p_gen || uniform) of the mode histogram in nats (lower is better, 0 for an even
  spread, log 1000 = 6.91 for a single mode). The floor: the same on as many stacked test images. These
  replace the domain metrics there, whose classifier would have to learn the 1000 stacked classes.
- class-conditional generators (Evaluator(conditional=True); each sample is asked for a class, the labels
  arange(n) % num_classes, balanced; the other metrics then score those same samples):
  - cond_mode_pct (2D mixtures): percent (0-100) of samples within 3 std of the mean of the Gaussian of
    their requested label, and cond_mode_pct_min, the same for the worst mode; higher is better, about
    98.9% for the mixture itself (1 - exp(-4.5)).
  - cond_accuracy, cond_accuracy_min (labelled image datasets): share (0-1) of samples the domain classifier
    puts in their requested class, over all samples and for the worst class; higher is better, the floor is
    the classifier's own accuracy on test images (overall and its worst class).
  - intra_fid (labelled image datasets): the classifier-space FID of each class (training images of class c
    vs samples requested as c) averaged over the classes; lower is better, the floor is train vs test.
  The per-class values of the latest call are in `Evaluator.details`, those of the floors in the provenance.
Every score comes with its real-vs-real floor (training vs test images) and its provenance.
"""
from __future__ import annotations

import inspect
import logging
import math
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from gantrain.data.base import Dataset, normalize, to_uint8_image
from gantrain.errors import GantrainError
from gantrain.eval.metrics import (class_accuracy, class_histogram, fid, inception_score, intra_fid, mixture_metrics, precision_recall, stacked_mnist_metrics, within_mode_pct, within_mode_pct_per_class, worst_class)
from gantrain.nets.base import Generator
from gantrain.data.stacked_mnist import EVAL_SAMPLES, NUM_MODES, StackedMNIST, classify_stacked

log = logging.getLogger("gantrain")

MIXTURE_METRICS = ("modes", "high_quality_pct", "reverse_kl")
DOMAIN_METRICS = ("fid_classifier", "is_classifier", "precision", "recall", "classes", "class_kl")
INCEPTION_METRICS = ("fid", "kid", "is")
COND_MIXTURE_METRICS = ("cond_mode_pct", "cond_mode_pct_min")
COND_DOMAIN_METRICS = ("cond_accuracy", "cond_accuracy_min", "intra_fid")
CONDITIONAL_METRICS = COND_MIXTURE_METRICS + COND_DOMAIN_METRICS
STACKED_METRICS = ("stacked_modes", "stacked_kl")
ALL_METRICS = MIXTURE_METRICS + DOMAIN_METRICS + INCEPTION_METRICS + CONDITIONAL_METRICS + STACKED_METRICS
#: whether a larger value of each metric is better (distances and divergences are lower-better)
HIGHER_IS_BETTER = {
    "modes": True, "high_quality_pct": True, "reverse_kl": False,
    "fid_classifier": False, "is_classifier": True, "precision": True, "recall": True, "classes": True,
    "class_kl": False, "fid": False, "kid": False, "is": True,
    "cond_mode_pct": True, "cond_mode_pct_min": True, "cond_accuracy": True, "cond_accuracy_min": True, "intra_fid": False,
    "stacked_modes": True, "stacked_kl": False,
}


class MetricChoiceError(GantrainError):
    """The metrics asked for do not exist or do not fit the dataset (a config mistake: fatal)."""


class MetricUnavailable(GantrainError):
    """The metrics fit but cannot run here (a missing extra or weights file): training goes on without them."""


def default_metrics(dataset: Dataset, conditional: bool = False) -> list[str]:
    """The metrics of metrics=auto; conditional adds those of class-conditional generators where they apply."""
    if dataset.kind == "points":
        return list(MIXTURE_METRICS + (COND_MIXTURE_METRICS if conditional else ()))
    if isinstance(dataset, StackedMNIST):  # not the domain metrics: their classifier would learn the stacked images
        return list(STACKED_METRICS)
    if hasattr(dataset, "split"):
        return list(DOMAIN_METRICS + (COND_DOMAIN_METRICS if conditional else ()))
    return list(INCEPTION_METRICS)


@torch.no_grad()
def generate(generator: Generator, n: int, seed: int = 0, batch: int = 500) -> Tensor:
    """n samples from a fixed noise seed, on the CPU (the training RNG is not touched)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([generator.sample(min(batch, n - i), generator=gen).float().cpu() for i in range(0, n, batch)])


def balanced_labels(n: int, num_classes: int) -> Tensor:
    """The labels conditional evaluation asks for: 0, 1, ..., K-1, 0, 1, ... (int64 (n,)), every class equally often."""
    return torch.arange(n, dtype=torch.int64) % num_classes


def _takes_labels(generator: Any) -> bool:
    try:
        return "labels" in inspect.signature(generator.sample).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def _device_of(module: Any) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def generate_conditional(generator: Generator, labels: Tensor, seed: int = 0, batch: int = 500) -> Tensor:
    """One sample per requested label (int64 (n,)) from a fixed noise seed, on the CPU (the training RNG is
    not touched): generator.sample(k, generator=gen, labels=y) per batch of 500, or, for a generator whose
    sample takes no labels, G(z, y) with z drawn from the same private CPU torch.Generator."""
    gen = torch.Generator().manual_seed(seed)
    labels = labels.detach().long().cpu()
    takes_labels = _takes_labels(generator)
    out = []
    for part in labels.split(batch):
        if takes_labels:
            x = generator.sample(len(part), generator=gen, labels=part)
        else:
            device = _device_of(generator)
            z = torch.randn(len(part), generator.latent_dim, generator=gen).to(device)
            x = generator(z, part.to(device))
        out.append(x.float().cpu())
    return torch.cat(out)


def labelled_mixture_sample(dataset: Any, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """n points of a 2D mixture and the index of the Gaussian each came from (its label)."""
    if hasattr(dataset, "sample_labelled"):
        return dataset.sample_labelled(n, generator)
    which = torch.randint(len(dataset.means), (n,), generator=generator)  # as _Mixture.sample draws them
    return dataset.means[which] + dataset.std * torch.randn(n, 2, generator=generator), which


def _listed(values: Tensor) -> list[Optional[float]]:
    """Per-class values for JSON: NaN (a class without samples) as None."""
    return [None if math.isnan(v) else v for v in values.tolist()]


class Evaluator:
    """Callable(generator) -> {metric: value}; `floor` holds real-vs-real values, `provenance` their source,
    `higher_is_better` each metric's direction; `details` the per-class values of the latest call
    (conditional metrics)."""

    higher_is_better = HIGHER_IS_BETTER

    def __init__(self, dataset: Dataset, metrics: Sequence[str] | str = "auto", num_samples: Optional[int] = None,
                 device: str | torch.device = "cpu", seed: int = 0, inception: Optional[torch.nn.Module] = None,
                 conditional: bool = False):
        """inception: a feature extractor for fid/kid/is in place of InceptionV3 (uint8 (N, 3, H, W) -> (N, d)).
        conditional: the generators are class-conditional (num_classes, G(z, y)): samples are asked for balanced
        labels, and metrics=auto adds the conditional metrics of the dataset."""
        names = default_metrics(dataset, conditional) if metrics in ("auto", None) else list(metrics)
        if not names:
            raise MetricChoiceError(f"no metric named; give metrics=[...] from {', '.join(ALL_METRICS)}, or auto")
        unknown = [m for m in names if m not in ALL_METRICS]
        if unknown:
            raise MetricChoiceError(f"unknown metric(s) {', '.join(unknown)}; valid: {', '.join(ALL_METRICS)}")
        if num_samples is not None and num_samples < 1:
            raise MetricChoiceError(f"num_samples={num_samples} must be a positive number of generated samples")
        if num_samples is not None and num_samples < 2:
            raise MetricChoiceError(f"num_samples={num_samples} is too few: the scores compare two sets of samples "
                                    f"(a covariance needs two or more); give num_samples=2 or more (thousands for "
                                    f"scores worth comparing)")
        if num_samples is not None and num_samples < 4 and {"precision", "recall"} & set(names):
            raise MetricChoiceError(f"num_samples={num_samples} is too few for precision and recall, which look at each "
                                    f"sample's 3 nearest neighbours: give num_samples=4 or more")
        wanted = [m for m in names if m in CONDITIONAL_METRICS]
        if wanted and not conditional:
            raise MetricChoiceError(f"{', '.join(wanted)} score class-conditional generators; they need a conditional "
                                    f"run (conditional=true)")
        self.conditional = bool(conditional)
        self.details: dict[str, Any] = {}
        self._classes: Optional[int] = None  # the classes of the data, known once prepared
        self.dataset, self.names, self.device, self.seed = dataset, names, torch.device(device), seed
        stacked = isinstance(dataset, StackedMNIST)
        self.num_samples = num_samples or (2500 if dataset.kind == "points" else EVAL_SAMPLES if stacked else 10000)
        self.floor: dict[str, float] = {}
        self.provenance: dict[str, Any] = {}
        # set up on first use; each part maps (samples, requested labels or None) to scores
        self.parts: Optional[list[Callable[[Tensor, Optional[Tensor]], dict[str, float]]]] = None
        self._inception_extractor = inception
        mixture = [m for m in names if m in MIXTURE_METRICS + COND_MIXTURE_METRICS]
        if mixture and dataset.kind != "points":
            raise MetricChoiceError(f"metrics {', '.join(mixture)} are for the 2D mixtures (ring, grid)")
        if dataset.kind == "points" and len(mixture) < len(names):
            usable = MIXTURE_METRICS + (COND_MIXTURE_METRICS if conditional else ())
            raise MetricChoiceError(f"image metrics asked for on 2D data; use {', '.join(usable)}")
        domain = [m for m in names if m in DOMAIN_METRICS + COND_DOMAIN_METRICS]
        if domain and not hasattr(dataset, "split"):
            raise MetricChoiceError(f"{', '.join(domain)} need a labelled dataset (mnist, fashion_mnist, digits)")
        if domain and stacked:
            raise MetricChoiceError(f"{', '.join(domain)} would train a domain classifier on the 1000 stacked classes; "
                                    f"on stacked_mnist use {', '.join(STACKED_METRICS)} (or fid, kid, is)")
        wrong = [m for m in names if m in STACKED_METRICS]
        if wrong and not stacked:
            raise MetricChoiceError(f"{', '.join(wrong)} are for dataset=stacked_mnist; {dataset.name} has its own: "
                                    f"metrics=auto")

    def prepare(self) -> None:
        """The costly part, run once: real-data features, floors, a classifier trained if none is cached.

        The training RNG is left as it was (evaluation never changes what training draws).
        """
        if self.parts is not None:
            return
        parts: list[Callable[[Tensor, Optional[Tensor]], dict[str, float]]] = []
        dataset, seed = self.dataset, self.seed
        with torch.random.fork_rng(devices=[]):
            if dataset.kind == "points":
                self._classes = len(dataset.means)
            if mixture := [m for m in self.names if m in MIXTURE_METRICS]:
                parts.append(lambda x, y: {k: v for k, v in mixture_metrics(x, dataset.means, dataset.std).items() if k in mixture})
                truth = dataset.sample(self.num_samples, torch.Generator().manual_seed(seed + 1))
                self.floor.update(mixture_metrics(truth, dataset.means, dataset.std))
                self.provenance["mixture"] = {"num_generated": self.num_samples, "modes": len(dataset.means),
                                              "std": dataset.std, "floor": f"{self.num_samples} samples of the mixture itself"}
            if "cond_mode_pct" in self.names or "cond_mode_pct_min" in self.names:
                parts.append(self._conditional_mixture())
            if domain := [m for m in self.names if m in DOMAIN_METRICS + COND_DOMAIN_METRICS]:
                parts.append(self._domain(domain))
            if stacked := [m for m in self.names if m in STACKED_METRICS]:
                parts.append(self._stacked(stacked))
            if inception_names := [m for m in self.names if m in INCEPTION_METRICS]:
                inception_scores = self._inception(inception_names, self._inception_extractor)
                parts.append(lambda x, y: inception_scores(x))
        self.parts = parts

    def __call__(self, generator: Generator) -> dict[str, float]:
        self.prepare()
        assert self.parts is not None
        out: dict[str, float] = {}
        self.details = {}
        with torch.random.fork_rng(devices=[]):
            labels = self._requested_labels(generator)
            if labels is None:
                samples = generate(generator, self.num_samples, self.seed)
            else:
                samples = generate_conditional(generator, labels, self.seed)
            for part in self.parts:
                out.update(part(samples, labels))
        return {k: out[k] for k in self.names if k in out}

    def _requested_labels(self, generator: Generator) -> Optional[Tensor]:
        """The labels a conditional generator is asked for (balanced), or None: generate unconditionally."""
        if not self.conditional:
            return None
        wanted = [m for m in self.names if m in CONDITIONAL_METRICS]
        classes = getattr(generator, "num_classes", None)
        if not classes:
            if wanted:
                raise MetricChoiceError(f"{', '.join(wanted)} need a class-conditional generator (num_classes set); "
                                        f"this one is unconditional")
            return None
        if wanted and self._classes is not None and classes != self._classes:
            raise MetricChoiceError(f"the generator has {classes} classes but {self.dataset.name} has {self._classes}; "
                                    f"{', '.join(wanted)} need a generator trained on this dataset's classes")
        return balanced_labels(self.num_samples, int(classes))

    # ---- class-conditional 2D mixtures ---------------------------------------------------------

    def _conditional_mixture(self) -> Callable[[Tensor, Optional[Tensor]], dict[str, float]]:
        dataset = self.dataset
        points, which = labelled_mixture_sample(dataset, self.num_samples, torch.Generator().manual_seed(self.seed + 1))
        self.floor["cond_mode_pct"] = within_mode_pct(points, which, dataset.means, dataset.std)
        self.floor["cond_mode_pct_min"] = worst_class(within_mode_pct_per_class(points, which, dataset.means, dataset.std))
        self.provenance["conditional"] = {
            "num_generated": self.num_samples, "labels": "arange(n) % num_classes (balanced)",
            "floor": f"{self.num_samples} labelled samples of the mixture itself"}

        def scores(samples: Tensor, labels: Optional[Tensor]) -> dict[str, float]:
            if labels is None:
                return {}
            per_mode = within_mode_pct_per_class(samples, labels, dataset.means, dataset.std)
            self.details["cond_mode_pct_per_class"] = _listed(per_mode)
            return {"cond_mode_pct": within_mode_pct(samples, labels, dataset.means, dataset.std),
                    "cond_mode_pct_min": worst_class(per_mode)}
        return scores

    # ---- the domain classifier's feature space ------------------------------------------------

    def _domain(self, names: list[str]) -> Callable[[Tensor, Optional[Tensor]], dict[str, float]]:
        from gantrain.eval.classifier import load_classifier

        model, meta = load_classifier(self.dataset, device=str(self.device))
        train, test = self.dataset.split(train=True), self.dataset.split(train=False)
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))[: min(self.num_samples, len(train))]
        real_images = normalize(train.tensor()[pick])
        real_labels = train.labels()[pick]
        num_classes = self._classes = model.num_classes

        @torch.no_grad()
        def embed(images: Tensor) -> tuple[Tensor, Tensor]:
            feats, probs = [], []
            for part in images.split(1000):
                f = model.features(part.to(self.device))
                feats.append(f.float().cpu())
                probs.append(model.head(f).softmax(1).float().cpu())
            return torch.cat(feats), torch.cat(probs)

        real_f, _ = embed(real_images)

        def scores(feats: Tensor, probs: Tensor, labels: Optional[Tensor], details: dict[str, Any]) -> dict[str, float]:
            """labels: the class each sample was asked for (test labels for the floor); None: unconditional."""
            out: dict[str, float] = {}
            if "fid_classifier" in names:
                out["fid_classifier"] = fid(real_f, feats)
            if "is_classifier" in names:
                out["is_classifier"] = inception_score(probs)
            if "precision" in names or "recall" in names:
                out["precision"], out["recall"] = precision_recall(real_f, feats, k=3)
            if "classes" in names or "class_kl" in names:
                hist = class_histogram(probs.argmax(1), real_labels, num_classes)
                out["classes"], out["class_kl"] = hist["classes"], hist["class_kl"]
            if labels is not None and ("cond_accuracy" in names or "cond_accuracy_min" in names):
                accuracy, per_class = class_accuracy(probs.argmax(1), labels, num_classes)
                out["cond_accuracy"], out["cond_accuracy_min"] = accuracy, worst_class(per_class)
                details["cond_accuracy_per_class"] = _listed(per_class)
            if labels is not None and "intra_fid" in names:
                out["intra_fid"], per_class = intra_fid(real_f, real_labels, feats, labels, num_classes)
                details["intra_fid_per_class"] = _listed(per_class)
            return out

        test_images = normalize(test.tensor()[: len(pick)])
        test_labels = test.labels()[: len(pick)]
        floor_details: dict[str, Any] = {}
        self.floor.update(scores(*embed(test_images), test_labels, floor_details))
        self.provenance["classifier"] = {**meta, "num_real": len(pick), "num_generated": self.num_samples,
                                         "floor": f"{len(pick)} training vs {len(test_images)} test images"}
        if any(m in COND_DOMAIN_METRICS for m in names):
            self.provenance["conditional"] = {
                "num_generated": self.num_samples, "labels": "arange(n) % num_classes (balanced)",
                "floor": f"the classifier on {len(test_images)} test images (cond_accuracy); {len(pick)} training vs "
                         f"{len(test_images)} test images, class by class (intra_fid)",
                **{f"floor_{k}": v for k, v in floor_details.items()}}

        def generated_scores(samples: Tensor, labels: Optional[Tensor]) -> dict[str, float]:
            return scores(*embed(samples), labels, self.details)
        return generated_scores

    # ---- Stacked MNIST: modes by the MNIST classifier, channel by channel ---------------------------

    def _stacked(self, names: list[str]) -> Callable[[Tensor, Optional[Tensor]], dict[str, float]]:
        from gantrain.eval.classifier import load_classifier

        dataset: StackedMNIST = self.dataset  # type: ignore[assignment]
        model, meta = load_classifier(dataset.digits(), device=str(self.device))  # MNIST's, trained once and cached
        self._classes = NUM_MODES
        test = dataset.split(train=False, num_samples=self.num_samples)
        real_modes = classify_stacked(model, test.tensor(), self.device, indices=test.indices())  # each digit once
        self.floor.update({k: v for k, v in stacked_mnist_metrics(real_modes, NUM_MODES).items() if k in names})
        self.provenance["stacked_mnist"] = {
            **meta, "modes": NUM_MODES, "num_generated": self.num_samples, "num_real": len(test),
            "mode": "100 * d_R + 10 * d_G + d_B, each digit the classifier's argmax on one channel"
                    + (f" resized to {model.in_shape[-1]} px" if dataset.image_size != model.in_shape[-1] else ""),
            "stacked_modes": "modes with at least one sample",
            "stacked_kl": "KL(p_gen || uniform over 1000 modes), nats",
            "floor": f"{len(test)} stacked test images (MNIST test digits, seed {dataset.seed})",
            "floor_mode_accuracy": float((real_modes == test.labels()).double().mean()),
        }

        def scores(samples: Tensor, labels: Optional[Tensor]) -> dict[str, float]:
            values = stacked_mnist_metrics(classify_stacked(model, samples, self.device), NUM_MODES)
            return {k: v for k, v in values.items() if k in names}
        return scores

    # ---- InceptionV3 through torchmetrics -----------------------------------------------------

    def _inception(self, names: list[str], extractor: Optional[torch.nn.Module]) -> Callable[[Tensor], dict[str, float]]:
        help_line = ("InceptionV3 metrics need torch-fidelity (pip install 'gantrain[fid]') and the "
                     "FID Inception weights (weights-inception-2015-12-05-6726825d.pth), downloaded on first use into "
                     "$TORCH_HOME/hub/checkpoints; offline, copy that file there")
        try:
            from torchmetrics.image.fid import FrechetInceptionDistance
            from torchmetrics.image.inception import InceptionScore
            from torchmetrics.image.kid import KernelInceptionDistance

            subset = min(1000, self.num_samples)
            metrics = {
                "fid": FrechetInceptionDistance(feature=extractor or 2048) if "fid" in names else None,
                "kid": KernelInceptionDistance(feature=extractor or 2048, subset_size=subset) if "kid" in names else None,
                "is": InceptionScore(feature=extractor or "logits_unbiased") if "is" in names else None,
            }
        except Exception as exc:  # ImportError, ModuleNotFoundError, URLError, RuntimeError from the download
            import importlib.util

            if importlib.util.find_spec("torch_fidelity") is None:  # torchmetrics' own words about it are cut short
                why = "torch-fidelity is not installed"
            else:
                first = (str(exc).splitlines() or [""])[0]
                why = f"{type(exc).__name__}: {first if len(first) <= 160 else first[:157] + '...'}"
            raise MetricUnavailable(f"{', '.join(names)} unavailable ({why}); {help_line}") from None
        metrics = {k: m.to(self.device) for k, m in metrics.items() if m is not None}
        data = self.dataset.tensor()
        pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.seed))[: self.num_samples]
        real = data[pick]

        def rgb(images_uint8: Tensor) -> Tensor:
            return images_uint8.expand(-1, 3, -1, -1) if images_uint8.shape[1] == 1 else images_uint8

        for part in real.split(500):
            for key in ("fid", "kid"):
                if key in metrics:
                    metrics[key].update(rgb(part).to(self.device), real=True)

        def scores(samples: Tensor) -> dict[str, float]:
            out = {}
            images = to_uint8_image(samples)
            for key, metric in metrics.items():
                if key in ("fid", "kid"):
                    metric.reset_real_features = False
                    metric.reset()
                for part in images.split(500):
                    if key == "is":
                        metric.update(rgb(part).to(self.device))
                    else:
                        metric.update(rgb(part).to(self.device), real=False)
                value = metric.compute()
                out[key] = float(value[0] if isinstance(value, tuple) else value)
            return out

        name = type(extractor).__name__ if extractor is not None else "InceptionV3 (torchmetrics / torch-fidelity, FID weights)"
        self.provenance["inception"] = {"feature_extractor": name,
                                        "num_real": len(real), "num_generated": self.num_samples}
        return scores
