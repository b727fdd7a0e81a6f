"""Evaluation of a generator: `gantrain-eval RUN_OR_CHECKPOINT [metrics=[...]]`, and during training.

Metric families (names as logged, under eval/ in TensorBoard):
- 2D mixtures: modes, high_quality_pct, reverse_kl (VEEGAN / PacGAN definitions, 2,500 samples).
- labelled image datasets (mnist, fashion_mnist, digits), in the feature space of a small domain
  classifier: fid_classifier, is_classifier, precision, recall (k = 3), classes, class_kl.
- any image dataset, with InceptionV3 through torchmetrics: fid, kid, is.
Every score comes with its real-vs-real floor (training vs test images) and its provenance.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from .data import Dataset, normalize, to_uint8_image
from .errors import GantrainError
from .metrics import class_histogram, fid, inception_score, mixture_metrics, precision_recall
from .models import Generator

log = logging.getLogger("gantrain")

MIXTURE_METRICS = ("modes", "high_quality_pct", "reverse_kl")
DOMAIN_METRICS = ("fid_classifier", "is_classifier", "precision", "recall", "classes", "class_kl")
INCEPTION_METRICS = ("fid", "kid", "is")
ALL_METRICS = MIXTURE_METRICS + DOMAIN_METRICS + INCEPTION_METRICS
#: whether a larger value of each metric is better (distances and divergences are lower-better)
HIGHER_IS_BETTER = {
    "modes": True, "high_quality_pct": True, "reverse_kl": False,
    "fid_classifier": False, "is_classifier": True, "precision": True, "recall": True, "classes": True,
    "class_kl": False, "fid": False, "kid": False, "is": True,
}


class MetricChoiceError(GantrainError):
    """The metrics asked for do not exist or do not fit the dataset (a config mistake: fatal)."""


class MetricUnavailable(GantrainError):
    """The metrics fit but cannot run here (a missing extra or weights file): training goes on without them."""


def default_metrics(dataset: Dataset) -> list[str]:
    if dataset.kind == "points":
        return list(MIXTURE_METRICS)
    if hasattr(dataset, "split"):
        return list(DOMAIN_METRICS)
    return list(INCEPTION_METRICS)


@torch.no_grad()
def generate(generator: Generator, n: int, seed: int = 0, batch: int = 500) -> Tensor:
    """n samples from a fixed noise seed, on the CPU (the training RNG is not touched)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([generator.sample(min(batch, n - i), generator=gen).float().cpu() for i in range(0, n, batch)])


class Evaluator:
    """Callable(generator) -> {metric: value}; `floor` holds real-vs-real values, `provenance` their source,
    `higher_is_better` each metric's direction."""

    higher_is_better = HIGHER_IS_BETTER

    def __init__(self, dataset: Dataset, metrics: Sequence[str] | str = "auto", num_samples: Optional[int] = None,
                 device: str | torch.device = "cpu", seed: int = 0, inception: Optional[torch.nn.Module] = None):
        """inception: a feature extractor for fid/kid/is in place of InceptionV3 (uint8 (N, 3, H, W) -> (N, d))."""
        names = default_metrics(dataset) if metrics in ("auto", None) else list(metrics)
        if not names:
            raise MetricChoiceError(f"no metric named; give metrics=[...] from {', '.join(ALL_METRICS)}, or auto")
        unknown = [m for m in names if m not in ALL_METRICS]
        if unknown:
            raise MetricChoiceError(f"unknown metric(s) {', '.join(unknown)}; valid: {', '.join(ALL_METRICS)}")
        if num_samples is not None and num_samples < 1:
            raise MetricChoiceError(f"num_samples={num_samples} must be a positive number of generated samples")
        self.dataset, self.names, self.device, self.seed = dataset, names, torch.device(device), seed
        self.num_samples = num_samples or (2500 if dataset.kind == "points" else 10000)
        self.floor: dict[str, float] = {}
        self.provenance: dict[str, Any] = {}
        self.parts: Optional[list[Callable[[Tensor], dict[str, float]]]] = None  # set up on first use
        self._inception_extractor = inception
        mixture = [m for m in names if m in MIXTURE_METRICS]
        if mixture and dataset.kind != "points":
            raise MetricChoiceError(f"metrics {', '.join(mixture)} are for the 2D mixtures (ring, grid)")
        if dataset.kind == "points" and len(mixture) < len(names):
            raise MetricChoiceError("image metrics asked for on 2D data; use modes, high_quality_pct, reverse_kl")
        domain = [m for m in names if m in DOMAIN_METRICS]
        if domain and not hasattr(dataset, "split"):
            raise MetricChoiceError(f"{', '.join(domain)} need a labelled dataset (mnist, fashion_mnist, digits)")

    def prepare(self) -> None:
        """The costly part, run once: real-data features, floors, a classifier trained if none is cached.

        The training RNG is left as it was (evaluation never changes what training draws).
        """
        if self.parts is not None:
            return
        parts: list[Callable[[Tensor], dict[str, float]]] = []
        dataset, seed = self.dataset, self.seed
        with torch.random.fork_rng(devices=[]):
            if mixture := [m for m in self.names if m in MIXTURE_METRICS]:
                parts.append(lambda x: {k: v for k, v in mixture_metrics(x, dataset.means, dataset.std).items() if k in mixture})
                truth = dataset.sample(self.num_samples, torch.Generator().manual_seed(seed + 1))
                self.floor.update(mixture_metrics(truth, dataset.means, dataset.std))
                self.provenance["mixture"] = {"num_generated": self.num_samples, "modes": len(dataset.means),
                                              "std": dataset.std, "floor": f"{self.num_samples} samples of the mixture itself"}
            if domain := [m for m in self.names if m in DOMAIN_METRICS]:
                parts.append(self._domain(domain))
            if inception_names := [m for m in self.names if m in INCEPTION_METRICS]:
                parts.append(self._inception(inception_names, self._inception_extractor))
        self.parts = parts

    def __call__(self, generator: Generator) -> dict[str, float]:
        self.prepare()
        assert self.parts is not None
        out: dict[str, float] = {}
        with torch.random.fork_rng(devices=[]):
            samples = generate(generator, self.num_samples, self.seed)
            for part in self.parts:
                out.update(part(samples))
        return {k: out[k] for k in self.names if k in out}

    # ---- the domain classifier's feature space ------------------------------------------------

    def _domain(self, names: list[str]) -> Callable[[Tensor], dict[str, float]]:
        from .classifier import load_classifier

        model, meta = load_classifier(self.dataset, device=str(self.device))
        train, test = self.dataset.split(train=True), self.dataset.split(train=False)
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))[: min(self.num_samples, len(train))]
        real_images = normalize(train.tensor()[pick])
        real_labels = train.labels()[pick]
        num_classes = model.num_classes

        @torch.no_grad()
        def embed(images: Tensor) -> tuple[Tensor, Tensor]:
            feats, probs = [], []
            for part in images.split(1000):
                f = model.features(part.to(self.device))
                feats.append(f.float().cpu())
                probs.append(model.head(f).softmax(1).float().cpu())
            return torch.cat(feats), torch.cat(probs)

        real_f, _ = embed(real_images)

        def scores(feats: Tensor, probs: Tensor) -> dict[str, float]:
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
            return out

        test_images = normalize(test.tensor()[: len(pick)])
        self.floor.update(scores(*embed(test_images)))
        self.provenance["classifier"] = {**meta, "num_real": len(pick), "num_generated": self.num_samples,
                                         "floor": f"{len(pick)} training vs {len(test_images)} test images"}
        return lambda samples: scores(*embed(samples))

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
            raise MetricUnavailable(f"{', '.join(names)} unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:100]}); "
                                f"{help_line}") from None
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
