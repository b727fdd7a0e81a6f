"""Scores of a text-conditioned generator on prompts in phrasings its training captions never used.

class agreement: the share of samples whose class, read by the domain classifier, is the one the prompt names
(prompts in the held-out phrasings of gantrain.data.captions, with random attribute words);
attribute agreement, per measured attribute (stroke thickness, slant, size / brightness, size): the Spearman
correlation between the requested level (-1: the low word, 0: no word, +1: the high word) and the attribute
measured on the samples, over prompts that differ only in that word (same class, phrasing and noise), averaged
over the classes. Next to each, what real data scores (a ceiling rather than a floor): the classifier's accuracy
on the test images, and the correlation between a test image's level and its measured value.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gantrain.data.base import to_uint8_image
from gantrain.errors import GantrainError


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their average rank); nan when either side is constant."""
    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=np.float64)
        values, inverse = np.unique(x, return_inverse=True)
        sums = np.bincount(inverse, weights=r)
        counts = np.bincount(inverse)
        return (sums / counts)[inverse]

    ra, rb = ranks(np.asarray(a, np.float64)), ranks(np.asarray(b, np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _native(images: Tensor) -> Tensor:
    """Generated images in [-1, 1] as uint8 at 28 px (where the attributes are defined)."""
    if images.shape[-1] != 28:
        images = F.interpolate(images.float(), size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    return to_uint8_image(images)


@torch.no_grad()
def text_scores(generator: Any, dataset: Any, classifier: Any, prompts_per_class: int = 20, samples: int = 10,
                seed: int = 0, device: Any = "cpu") -> tuple[dict[str, float], dict[str, Any]]:
    """(scores, details) of a text run's generator on a captioned offline set (mnist_captions, fashion_captions).

    prompts_per_class: held-out prompts per class for class agreement, `samples` samples each; the attribute
    correlations use prompts_per_class prompt triples (low, none, high) per class and attribute.
    """
    scheme = getattr(dataset, "scheme", None)
    if scheme is None:
        raise GantrainError(f"text scores need an offline captioned set (mnist_captions, fashion_captions); "
                            f"{dataset.name} has no held-out phrasings to score")
    rng = random.Random(seed)
    noise = torch.Generator().manual_seed(seed)
    classes = len(scheme.classes)

    def draw(texts: list[str]) -> Tensor:
        z = torch.randn(len(texts), generator.latent_dim, generator=noise)
        out = [generator(z[i:i + 500].to(device), generator.tokenize(texts[i:i + 500]).to(device)).float().cpu()
               for i in range(0, len(texts), 500)]
        return torch.cat(out)

    def classify(images: Tensor) -> Tensor:  # at the run's size, which the classifier was trained at
        x = images.float()
        return torch.cat([classifier(x[i:i + 1000].to(device)).argmax(1).cpu() for i in range(0, len(x), 1000)])

    # class agreement on held-out phrasings, with random attribute words
    texts, wanted = [], []
    for c in range(classes):
        for _ in range(prompts_per_class):
            levels = [rng.choice((-1, 0, 1)) for _ in scheme.attributes]
            words = [rng.choice(low if lv < 0 else high) for (_, _, low, high), lv in zip(scheme.attributes, levels)
                     if lv != 0]
            prompt = scheme.held_out_caption(c, words, rng)
            texts += [prompt] * samples
            wanted += [c] * samples
    predicted = classify(draw(texts))
    wanted_t = torch.tensor(wanted)
    agree = (predicted == wanted_t).float()
    scores = {"text_class_agreement": float(agree.mean())}
    details: dict[str, Any] = {"text_class_agreement_per_class":
                               [float(agree[wanted_t == c].mean()) for c in range(classes)],
                               "example_prompts": sorted(set(texts))[:10]}

    # attribute agreement: triples of prompts differing only in one attribute's word, the same noise
    for a, (name, measure, low, high) in enumerate(scheme.attributes):
        per_class = []
        for c in range(classes):
            texts = []
            for _ in range(prompts_per_class):
                kind = rng.randrange(2)  # one adjective: the reversed-order phrasing would be the training one
                for level in (-1, 0, 1):
                    words = [] if level == 0 else [rng.choice(low if level < 0 else high)]
                    texts.append(scheme.held_out_phrase(kind, c, words))
            z = torch.randn(prompts_per_class, generator.latent_dim, generator=noise).repeat_interleave(3, 0)
            images = torch.cat([generator(z[i:i + 510].to(device), generator.tokenize(texts[i:i + 510]).to(device))
                                .float().cpu() for i in range(0, len(texts), 510)])
            measured = measure(_native(images))
            requested = np.tile([-1, 0, 1], prompts_per_class)
            per_class.append(spearman(requested, measured))
        defined = [r for r in per_class if np.isfinite(r)]  # NaN: the measure did not vary within a class
        scores[f"text_{name}_spearman"] = float(np.mean(defined)) if defined else float("nan")
        details[f"text_{name}_spearman_per_class"] = per_class
    return scores, details


def text_floor(dataset: Any, classifier: Any, device: Any = "cpu") -> dict[str, float]:
    """What the test images score: the classifier's accuracy on them (at the dataset's image size, which the
    classifier reads), and per attribute the Spearman correlation between their level (-1/0/+1, from the training
    thirds) and their measured value (at 28 px), averaged over the classes."""
    test = type(dataset)(root=dataset.root, image_size=dataset.image_size, download=dataset.download,
                         captions_per_image=dataset.captions_per_image, seed=dataset.seed, train=False)
    images, labels = test._native(), test.labels()  # 28 px, where the attributes are measured
    levels = test.attribute_levels().numpy()
    x = test.tensor().float().div(127.5).sub(1.0)  # the run's size, which the classifier reads
    with torch.no_grad():
        predicted = torch.cat([classifier(x[i:i + 1000].to(device)).argmax(1).cpu() for i in range(0, len(x), 1000)])
    floor = {"text_class_agreement": float((predicted == labels).float().mean())}
    classes = labels.numpy()
    for a, (name, measure, _, _) in enumerate(dataset.scheme.attributes):
        values = measure(images)
        floor[f"text_{name}_spearman"] = float(np.nanmean([spearman(levels[classes == c, a], values[classes == c])
                                                           for c in range(len(dataset.scheme.classes))]))
    return floor
