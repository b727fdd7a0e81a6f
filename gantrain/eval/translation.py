"""Evaluation of image-to-image translators (pix2pix, CycleGAN) on the held-out test split.

Metrics (logged as eval/<name>, each with its floor as floor/<name>):
- paired data (edges2mnist, paired_folder), direction AtoB, against each input's own target:
  - l1: mean |G(a) - b| in data units ([-1, 1]); lower is better.
  - psnr: peak signal-to-noise ratio in dB of each translated image against its target (images mapped to
    [0, 1], data range 1; torchmetrics), averaged over the images; higher is better.
  - ssim: structural similarity (torchmetrics, Gaussian window of 11 px, sigma 1.5), averaged over the
    images; higher is better.
  Their floor is the same score of the untranslated input against the target (what doing nothing gets).
- targets that are MNIST digits (edges2mnist AtoB; mnist2mnistm BtoA, i.e. MNIST-M -> MNIST), with the
  MNIST domain classifier (gantrain.eval.classifier, trained and cached on first use) on grey images:
  - label_acc: share (0-1) of translated test inputs the classifier puts in the class of the input;
    higher is better. The floor is its accuracy on the untranslated inputs (the raw edge maps, the
    MNIST-M digits turned grey): the floor to beat. Its accuracy on real target test images (the
    ceiling) is in `details["label_acc_ceiling"]`.
  - fid_classifier: Frechet distance in the classifier's feature space between real target test images
    (one half of the evaluated images) and translations of the other half's inputs; lower is better.
    The floor is the distance between the two halves of the real target images.
- unpaired image folders have neither targets nor labels: no metric applies.

edges2mnist also scores outlines drawn in other styles (`styles=True`): the same test digits outlined
as 0.7.0 drew every outline (`sobel`, one-pixel thinned Sobel maxima) and in the held-out styles no
training set draws (translation_data.HELD_OUT_STYLES: `canny`, `morph_gradient`, `thick`, `sketch64`).
For each, `details` holds `label_acc[STYLE]` (labels preserved on the translated outlines) and
`floor/label_acc[STYLE]` (the classifier on the raw outlines); gantrain-eval prints them and writes
them to eval.json.

The set-up (test images, classifier, floors) runs on the first call and is kept; set-up and scoring run
under torch.random.fork_rng, so evaluation never changes what training draws.
"""
from __future__ import annotations

import logging
from itertools import repeat
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from gantrain.data.base import normalize
from gantrain.errors import GantrainError
from gantrain.eval.evaluator import HIGHER_IS_BETTER as GAN_HIGHER_IS_BETTER
from gantrain.nets.translation import to_channels
from gantrain.eval.metrics import class_accuracy, fid

log = logging.getLogger("gantrain")

PAIRED_METRICS = ("l1", "psnr", "ssim")
LABEL_METRICS = ("label_acc", "fid_classifier")
ALL_METRICS = PAIRED_METRICS + LABEL_METRICS
#: whether a larger value of each translation metric is better
HIGHER_IS_BETTER = {"l1": False, "psnr": True, "ssim": True, "label_acc": True, "fid_classifier": False}

CHUNK = 250  # images per forward pass


def _target_classifier(dataset: Any, kind: str) -> Optional[tuple[str, str]]:
    """(direction, classifier dataset) of the label metrics of a dataset, or None when they do not apply."""
    from gantrain.data.translation import MNIST2MNISTM, Edges2MNIST

    if isinstance(dataset, Edges2MNIST):
        return "AtoB", "MNIST"
    if isinstance(dataset, MNIST2MNISTM) and kind != "pix2pix":  # MNIST-M -> MNIST needs the B -> A network
        return "BtoA", "MNIST"
    return None


def _outline_styles(dataset: Any) -> bool:
    """Whether the dataset's inputs are outlines of digits that can be drawn in other styles (edges2mnist)."""
    from gantrain.data.translation import Edges2MNIST

    return isinstance(dataset, Edges2MNIST)


def applicable_metrics(dataset: Any, kind: str = "pix2pix") -> list[str]:
    """The metrics that apply to a translation dataset (and game kind), in the order they are reported."""
    names = list(PAIRED_METRICS) if getattr(dataset, "paired", False) else []
    if _target_classifier(dataset, kind) is not None:
        names += list(LABEL_METRICS)
    return names


def _metric_list(metrics: Any) -> Any:
    """"auto", None or a list of names (a "[a,b]" string or a config list become a list)."""
    if metrics is None or (isinstance(metrics, str) and metrics.strip() == "auto"):
        return "auto"
    if isinstance(metrics, str):
        return [m.strip() for m in metrics.strip().strip("[]").split(",") if m.strip()]
    return [str(m) for m in metrics]


def _what(dataset: Any) -> str:
    if getattr(dataset, "paired", None) is False and not getattr(dataset, "num_classes", None):
        return f"{dataset.name} (unpaired images without labels)"
    return str(getattr(dataset, "name", type(dataset).__name__))


def make_translation_evaluator(dataset: Any, metrics: Any, device: Any, kind: str) -> Optional["TranslationEvaluator"]:
    """The evaluator of trainer.metrics for a translation run, or None when evaluation is off:
    trainer.metrics=[], or metrics=auto on data no metric applies to (one info line says why).
    A metric asked for by name that does not apply is an error."""
    names = _metric_list(metrics)
    if names != "auto" and not names:
        log.info("evaluation off: trainer.metrics=[] names no metric")
        return None
    if names == "auto" and not applicable_metrics(dataset, kind):
        log.info("evaluation off: no translation metric applies to %s; paired data (l1, psnr, ssim) or MNIST targets "
                 "(label_acc, fid_classifier) are needed", _what(dataset))
        return None
    # the outline styles are read by gantrain-eval; training's periodic evaluation logs only the metrics
    return TranslationEvaluator(dataset, names, device=device, kind=kind, styles=False)


def _pick(n_total: int, n: int, seed: int) -> Tensor:
    """n indices of 0..n_total-1 (all when n >= n_total) in an order drawn with seed. Never the stored order:
    a split's halves can differ (MNIST's first 5,000 test digits come from other writers than its last
    5,000: classifier FID 51 between them, 3.6 between random halves), and FID compares halves."""
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[: min(n, n_total)]


def _gather(images: Any, index: Tensor) -> Tensor:
    """The uint8 images at index of a dataset (decoding only those of a folder set)."""
    if hasattr(images, "item") and getattr(images, "_data", None) is None:
        return torch.stack([images.item(int(i)) for i in index])
    return images.tensor()[index]


def _unit(x: Tensor) -> Tensor:
    """[-1, 1] images to [0, 1]."""
    return (x.float().clamp(-1, 1) + 1) * 0.5


class TranslationEvaluator:
    """Callable(translator) -> {metric: value} on the test split; `floor` holds each metric's floor,
    `higher_is_better` each metric's direction, `details` the classifier's accuracy on real target images
    (label_acc_ceiling), `provenance` where every number comes from.

    metrics: "auto" (every metric that applies) or a list of names (see applicable_metrics).
    num_samples: test inputs translated (at most the test split); the first call picks them with `seed`.
    kind: the game, "pix2pix" or "cyclegan" (CycleGAN has the B -> A network the MNIST-M -> MNIST metrics use).
    styles: on edges2mnist with label_acc, also score the test digits outlined in other styles (see the module).
    """

    def __init__(self, dataset: Any, metrics: Sequence[str] | str = "auto", device: Any = "cpu", num_samples: int = 2000,
                 seed: int = 0, kind: str = "pix2pix", styles: bool = True):
        if getattr(dataset, "paired", None) is None:
            raise GantrainError(f"{getattr(dataset, 'name', dataset)} is not an image translation dataset; use "
                                f"edges2mnist, mnist2mnistm, paired_folder or unpaired_folder")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise GantrainError(f"num_samples={num_samples} must be a positive number of test images")
        usable = applicable_metrics(dataset, kind)
        names = _metric_list(metrics)
        if names == "auto":
            if not usable:
                raise GantrainError(f"no translation metric applies to {_what(dataset)}: l1, psnr and ssim need paired "
                                    f"data, label_acc and fid_classifier MNIST targets")
            names = usable
        if not names:
            raise GantrainError(f"no metric named; give metrics=[...] from {', '.join(usable) or 'none'}, or auto")
        unknown = [m for m in names if m not in ALL_METRICS]
        if unknown:
            raise GantrainError(f"unknown translation metric(s) {', '.join(unknown)}; for {_what(dataset)} use "
                                f"{', '.join(usable) if usable else 'none (no metric applies)'}")
        wrong = [m for m in names if m not in usable]
        if wrong:
            raise GantrainError(f"metric(s) {', '.join(wrong)} do not apply to {_what(dataset)} ({kind}); the metrics "
                                f"that apply: {', '.join(usable) if usable else 'none'}")
        self.dataset, self.names, self.kind = dataset, list(dict.fromkeys(names)), kind
        self.device, self.num_samples, self.seed = torch.device(device), num_samples, int(seed)
        self.higher_is_better = {**GAN_HIGHER_IS_BETTER, **HIGHER_IS_BETTER}
        self.floor: dict[str, float] = {}
        self.details: dict[str, Any] = {}
        self.provenance: dict[str, Any] = {}
        label = _target_classifier(dataset, kind)
        self.direction = label[0] if label and any(m in LABEL_METRICS for m in self.names) else "AtoB"
        self._ready = False
        self._half = 0  # images in each half of the FID comparison
        # set up on first use
        self.inputs: Optional[Tensor] = None  # uint8 test inputs (source domain)
        self.targets: Optional[Tensor] = None  # uint8 targets of the inputs (paired data)
        self.labels: Optional[Tensor] = None  # classes of the inputs (label metrics)
        self.indices: Optional[Tensor] = None  # positions of the inputs in the test split (domain)
        self._classifier: Any = None
        self._real_features: Optional[Tensor] = None  # the reference half of the real target images
        self.styles = bool(styles)
        self.style_inputs: dict[str, Tensor] = {}  # uint8 outlines of the test digits in each other style
        self.style_floor: dict[str, float] = {}  # the classifier's accuracy on those raw outlines

    # ---- set-up --------------------------------------------------------------------------------

    def _forked(self) -> Any:
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        return torch.random.fork_rng(devices=devices)

    def prepare(self) -> None:
        """The test images, the classifier and the floors (once)."""
        if self._ready:
            return
        with self._forked():
            self._prepare()
        self._ready = True

    def _prepare(self) -> None:
        test = self.dataset.split(train=False)
        paired = any(m in PAIRED_METRICS for m in self.names)
        labelled = any(m in LABEL_METRICS for m in self.names)
        if getattr(test, "paired", False):
            index = _pick(len(test), self.num_samples, self.seed)
            pairs = _gather(test, index)
            ca = test.channels_a
            self.inputs, self.targets = pairs[:, :ca], pairs[:, ca:]
            self.labels = test.labels()[index] if labelled else None
            real, real_labels = self.targets, self.labels
        else:
            source, target = (test.domain_b(), test.domain_a()) if self.direction == "BtoA" else (test.domain_a(), test.domain_b())
            index = _pick(len(source), self.num_samples, self.seed)
            self.inputs = _gather(source, index)
            self.labels = source.labels()[index] if labelled else None
            real_index = _pick(len(target), self.num_samples, self.seed + 1)
            real = _gather(target, real_index)
            real_labels = target.labels()[real_index] if labelled else None
        self.indices = index
        n = len(self.inputs)
        if n == 0:
            raise GantrainError(f"the test split of {self.dataset.name} is empty; evaluation needs test images")
        self.provenance = {"test_images": n, "direction": self.direction, "seed": self.seed,
                           "split": "test (held out)", "floors": {}}
        if paired:
            inputs = (normalize(part) for part in self.inputs.split(CHUNK))  # doing nothing: the input as output
            floors = self._paired_scores_of(zip(inputs, self.targets.split(CHUNK)), self.targets.shape[1])
            self.floor.update({k: v for k, v in floors.items() if k in self.names})
            self.provenance["floors"].update({k: "the untranslated input against its target" for k in PAIRED_METRICS
                                              if k in self.names})
        if labelled:
            self._prepare_classifier(real, real_labels)

    def _prepare_classifier(self, real: Tensor, real_labels: Tensor) -> None:
        from gantrain import data
        from gantrain.eval.classifier import load_classifier

        size = self.inputs.shape[-1]
        mnist = data.MNIST(root=str(self.dataset.root), image_size=size, download=getattr(self.dataset, "download", True))
        model, meta = load_classifier(mnist, train_if_missing=True, device=str(self.device))
        if tuple(model.in_shape) != (1, size, size):
            raise GantrainError(f"the cached {meta['feature_extractor']} classifier takes {tuple(model.in_shape)} images, "
                                f"not (1, {size}, {size}); delete it from the classifier cache to train it again")
        self._classifier = model
        real_feats, real_pred = self._classify(normalize(real))
        _, input_pred = self._classify(normalize(self.inputs))
        num_classes = model.num_classes
        self.floor["label_acc"] = class_accuracy(input_pred, self.labels, num_classes)[0]
        self.details["label_acc_ceiling"] = class_accuracy(real_pred, real_labels, num_classes)[0]
        half = min(len(real), len(self.inputs)) // 2
        if "fid_classifier" in self.names:
            if half < 2:
                raise GantrainError(f"fid_classifier needs at least 4 test images; got {min(len(real), len(self.inputs))} "
                                    f"(num_samples={self.num_samples})")
            self._real_features = real_feats[:half]
            self.floor["fid_classifier"] = fid(real_feats[:half], real_feats[half:2 * half])
        self._half = half
        self.floor = {k: self.floor[k] for k in self.names if k in self.floor}
        self.provenance["classifier"] = {**meta, "images": "grey (RGB by luminance)"}
        floors = {"label_acc": "the classifier on the untranslated test inputs",
                  "fid_classifier": f"{half} vs {half} real target test images (two halves)"}
        self.provenance["floors"].update({k: v for k, v in floors.items() if k in self.names})
        self.provenance["label_acc_ceiling"] = "the classifier on real target test images"
        if self.styles and "label_acc" in self.names and self.targets is not None and _outline_styles(self.dataset):
            self._prepare_styles()

    def _prepare_styles(self) -> None:
        """The test digits outlined in each other style, and the classifier's reading of those raw outlines."""
        from gantrain.data.outlines import HELD_OUT_STYLES, SOBEL_STYLE, held_out_outlines

        assert self.targets is not None and self.labels is not None
        num_classes = self._classifier.num_classes
        described = {}
        for style, spec in {"sobel": SOBEL_STYLE, **HELD_OUT_STYLES}.items():
            outlines = held_out_outlines(self.targets, style, seed=self.seed)
            self.style_inputs[style] = outlines
            _, pred = self._classify(normalize(outlines))
            self.style_floor[style] = class_accuracy(pred, self.labels, num_classes)[0]
            operator, width, scale, jitter = spec
            described[style] = (f"{operator}, {width} px wide, drawn at {scale:g}x" + (f", jittered {jitter:g} px" if jitter else "")
                                + (" (0.7.0's outline)" if style == "sobel" else " (held out: never drawn in training)"))
        self.provenance["outline_styles"] = {
            "inputs": "the same test digits, outlined in each style; label_acc[STYLE]: labels preserved on their "
                      "translations, floor/label_acc[STYLE]: the classifier on the raw outlines",
            "training": getattr(self.dataset, "edge_styles", "sobel"), **described}

    @torch.no_grad()
    def _classify(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(features, predicted class) of [-1, 1] images under the domain classifier, in grey."""
        model = self._classifier
        feats, preds = [], []
        for part in images.split(CHUNK):
            f = model.features(to_channels(part.float().to(self.device).clamp(-1, 1), 1))
            feats.append(f.float().cpu())
            preds.append(model.head(f).argmax(1).cpu())
        return torch.cat(feats), torch.cat(preds)

    # ---- scoring -------------------------------------------------------------------------------

    @staticmethod
    def _paired_scores_of(chunks: Any, channels: int) -> dict[str, float]:
        """l1, psnr and ssim of (output in [-1, 1], uint8 target) chunks, both taken in `channels` channels."""
        from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

        l1_sum, count, psnr, ssim = 0.0, 0, [], []
        for out, target in chunks:
            out = to_channels(out.float().clamp(-1, 1), channels)
            target = to_channels(normalize(target).to(out.device), channels)
            l1_sum += float((out - target).abs().sum(dtype=torch.float64))
            count += out.numel()
            x, y = _unit(out), _unit(target)
            psnr.append(peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3)).double().cpu().view(-1))
            size = min(x.shape[-2:])
            kernel = min(11, size if size % 2 else size - 1)
            ssim.append(structural_similarity_index_measure(x, y, data_range=1.0, kernel_size=kernel,
                                                            reduction="none").double().cpu().view(-1))
        return {"l1": l1_sum / max(count, 1), "psnr": float(torch.cat(psnr).mean()), "ssim": float(torch.cat(ssim).mean())}

    def __call__(self, translator: Any) -> dict[str, float]:
        self.prepare()
        assert self.inputs is not None
        translator.check_direction(self.direction)
        size = getattr(translator, "image_size", self.inputs.shape[-1])
        if size != self.inputs.shape[-1]:
            raise GantrainError(f"the translator works on {size} px images but the test images are "
                                f"{self.inputs.shape[-1]} px; evaluate with dataset.image_size={size}")
        out: dict[str, float] = {}
        kept: list[Tensor] = []  # the translations, for the classifier (small MNIST images)

        def translated(targets: Any) -> Any:
            for part, target in zip(self.inputs.split(CHUNK), targets):
                result = translator.translate(normalize(part), self.direction).float()
                if self._classifier is not None:
                    kept.append(result.cpu())
                yield result, target

        with self._forked():
            if any(m in PAIRED_METRICS for m in self.names):
                assert self.targets is not None
                # scored in the target images' own channels (a grey target: the output's luminance), as the floor
                scores = self._paired_scores_of(translated(self.targets.split(CHUNK)), self.targets.shape[1])
                out.update({k: v for k, v in scores.items() if k in self.names})
            else:
                for _ in translated(repeat(None)):  # no targets: translate only
                    pass
            if self._classifier is not None:
                feats, preds = self._classify(torch.cat(kept))
                assert self.labels is not None
                if "label_acc" in self.names:
                    out["label_acc"] = class_accuracy(preds, self.labels, self._classifier.num_classes)[0]
                if "fid_classifier" in self.names:
                    assert self._real_features is not None
                    half = self._half
                    out["fid_classifier"] = fid(self._real_features, feats[half:2 * half])
            if self.style_inputs:
                self._score_styles(translator)
        return {k: out[k] for k in self.names if k in out}

    def _score_styles(self, translator: Any) -> None:
        """details["label_acc[STYLE]"] and details["floor/label_acc[STYLE]"] for every other outline style."""
        assert self.labels is not None
        num_classes = self._classifier.num_classes
        for style, outlines in self.style_inputs.items():
            translated = [translator.translate(normalize(part), self.direction).float().cpu() for part in outlines.split(CHUNK)]
            _, preds = self._classify(torch.cat(translated))
            self.details[f"label_acc[{style}]"] = class_accuracy(preds, self.labels, num_classes)[0]
            self.details[f"floor/label_acc[{style}]"] = self.style_floor[style]
