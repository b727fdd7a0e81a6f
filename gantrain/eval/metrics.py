"""Sample-quality metrics: mode coverage on the 2D mixtures and on Stacked MNIST (VEEGAN, PacGAN), feature-space
scores and class-conditional scores (accuracy per requested class, intra-FID, share within 3 std of the requested
mode)."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def mixture_metrics(samples: Tensor, means: Tensor, std: float) -> dict[str, float]:
    """Mode coverage of 2D samples (n, 2) against a mixture with the given means (K, 2) and std.

    A sample is high quality when within 3 std of its nearest mode; a mode is captured when it is the
    nearest mode of some high-quality sample. reverse_kl: KL(p_gen || uniform) of the nearest-mode
    histogram of all samples (0 when every mode gets the same share).
    """
    samples, means = samples.detach().float().cpu(), means.float().cpu()
    finite = torch.isfinite(samples).all(1)
    dist = torch.cdist(samples[finite], means)
    nearest_dist, nearest = dist.min(1)
    hq = nearest_dist <= 3.0 * std
    k = len(means)
    captured = torch.bincount(nearest[hq], minlength=k) > 0
    counts = torch.bincount(nearest, minlength=k).double()
    p = counts / counts.sum().clamp_min(1)
    nz = p > 0
    reverse_kl = float((p[nz] * torch.log(p[nz] * k)).sum()) if bool(nz.any()) else math.inf
    return {
        "modes": float(captured.sum()),
        "high_quality_pct": 100.0 * float(hq.sum()) / max(len(samples), 1),
        "reverse_kl": reverse_kl,
    }


# ---------------------------------------------------------------------------------------------
# Discrete modes (Stacked MNIST): each sample has been assigned one of K modes (a classifier's prediction).


def mode_histogram(modes: Tensor, num_modes: int) -> Tensor:
    """How many samples fall in each mode: int64 (num_modes,) from the mode of every sample (ints in 0..K-1)."""
    modes = modes.detach().long().cpu().flatten()
    if len(modes) and (int(modes.min()) < 0 or int(modes.max()) >= num_modes):
        raise ValueError(f"modes must be in 0..{num_modes - 1}")
    return torch.bincount(modes, minlength=num_modes)


def modes_covered(histogram: Tensor, min_count: int = 1) -> float:
    """The number of modes with at least min_count samples (VEEGAN / PacGAN count a mode with one sample)."""
    return float((histogram >= min_count).sum())


def kl_to_uniform(histogram: Tensor) -> float:
    """KL(p || uniform) in nats of the distribution p = histogram / its sum over its K modes: sum_k p_k log(K p_k),
    modes with p_k = 0 adding nothing. 0 when every mode has the same share, log K when one mode has them all;
    NaN for an empty histogram."""
    counts = histogram.detach().double().cpu().flatten()
    total = float(counts.sum())
    if total <= 0:
        return math.nan
    p = counts[counts > 0] / total
    return max(float((p * torch.log(p * len(counts))).sum()), 0.0)  # >= 0; the max drops round-off below it


def stacked_mnist_metrics(modes: Tensor, num_modes: int = 1000) -> dict[str, float]:
    """stacked_modes (modes covered by at least one sample) and stacked_kl (KL(p_gen || uniform) of the mode
    histogram) of samples whose modes are given (int (n,) in 0..num_modes-1).

    As PacGAN's code scores Stacked MNIST (fjxmlzn/PacGAN, stacked_MNIST_experiments/VEEGAN_experiment/model.py,
    log_metrics): the modes covered are the distinct predicted digit triples among the 26,000 samples (one sample
    is enough), the KL is KL(p || q) with q = 1/1000 for every mode; VEEGAN's project page (akashgit/VEEGAN,
    index.md) likewise estimates the modes of 26,000 samples with a trained classifier.
    """
    histogram = mode_histogram(modes, num_modes)
    return {"stacked_modes": modes_covered(histogram), "stacked_kl": kl_to_uniform(histogram)}


# ---------------------------------------------------------------------------------------------
# Feature-space metrics (the formulas of the literature; features are (n, d) float tensors).


def feature_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (d,) and covariance (d, d) of features, in float64."""
    f = features.detach().double().cpu()
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / max(len(f) - 1, 1)


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Heusel et al. 2017).

    Tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of S1 S2, which are real and
    non-negative for covariance matrices (tiny negative or imaginary parts are round-off).
    """
    eig = torch.linalg.eigvals(sigma1 @ sigma2)
    tr_sqrt = eig.real.clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * tr_sqrt)


def fid(real: Tensor, fake: Tensor) -> float:
    """Frechet distance between two feature sets (n, d)."""
    return frechet_distance(*feature_stats(real), *feature_stats(fake))


def _kth_neighbour_radii(features: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    radii = []
    for part in features.split(chunk):
        d = torch.cdist(part, features)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the 1st is the point itself, at distance 0
    return torch.cat(radii)


def _inside_any(points: Tensor, centres: Tensor, radii: Tensor, chunk: int = 2048) -> Tensor:
    """For each point: is it inside the ball of some centre (radius radii[j])?"""
    out = []
    for part in points.split(chunk):
        out.append((torch.cdist(part, centres) <= radii.unsqueeze(0)).any(1))
    return torch.cat(out)


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls in feature space.

    precision: share of fake samples inside the k-NN ball of some real sample;
    recall: share of real samples inside the k-NN ball of some fake sample.
    """
    real, fake = real.detach().float().cpu(), fake.detach().float().cpu()
    precision = _inside_any(fake, real, _kth_neighbour_radii(real, k)).float().mean()
    recall = _inside_any(real, fake, _kth_neighbour_radii(fake, k)).float().mean()
    return float(precision), float(recall)


def inception_score(probs: Tensor, splits: int = 10) -> float:
    """exp(E_x KL(p(y|x) || p(y))), averaged over `splits` equal parts (Salimans et al. 2016)."""
    probs = probs.detach().double().cpu().clamp_min(1e-12)
    scores = []
    for part in probs.chunk(splits):
        marginal = part.mean(0, keepdim=True)
        scores.append(torch.exp((part * (part.log() - marginal.log())).sum(1).mean()))
    return float(torch.stack(scores).mean())


def class_histogram(pred: Tensor, reference: Tensor, num_classes: int) -> dict[str, float]:
    """Classes covered by predicted labels and KL(generated || data) of their histograms.

    A class counts as covered when it gets at least a tenth of a uniform share of the samples.
    """
    p = torch.bincount(pred.cpu(), minlength=num_classes).double()
    p = p / p.sum()
    q = torch.bincount(reference.cpu(), minlength=num_classes).double()
    q = q / q.sum()
    nz = p > 0
    kl = float((p[nz] * (p[nz] / q[nz].clamp_min(1e-12)).log()).sum())
    return {"classes": float((p >= 0.1 / num_classes).sum()), "class_kl": kl}


# ---------------------------------------------------------------------------------------------
# Class-conditional metrics: each generated sample was asked for a class (its "requested label").


def class_accuracy(pred: Tensor, target: Tensor, num_classes: int) -> tuple[float, Tensor]:
    """Share (0-1) of predictions equal to their target, and the same per target class.

    Returns (overall, per_class) with per_class float64 (num_classes,): the accuracy over the samples
    whose target is that class, NaN for a class no sample targets.
    """
    pred, target = pred.detach().long().cpu(), target.detach().long().cpu()
    if pred.shape != target.shape:
        raise ValueError(f"{len(pred)} predictions for {len(target)} targets")
    if len(target) and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"targets must be classes 0..{num_classes - 1}")
    hit = (pred == target).double()
    count = torch.bincount(target, minlength=num_classes).double()
    correct = torch.bincount(target, weights=hit, minlength=num_classes)
    per_class = torch.where(count > 0, correct / count.clamp_min(1), torch.full_like(count, math.nan))
    overall = float(hit.mean()) if len(hit) else math.nan
    return overall, per_class


def worst_class(per_class: Tensor) -> float:
    """The smallest per-class value, NaN classes (with no samples) left out; NaN when none is left."""
    known = per_class[~torch.isnan(per_class)]
    return float(known.min()) if len(known) else math.nan


def intra_fid(real: Tensor, real_labels: Tensor, fake: Tensor, fake_labels: Tensor, num_classes: int) -> tuple[float, Tensor]:
    """Intra-FID (Miyato & Koyama 2018): the FID of each class (real features of class c vs fake features
    requested as c) averaged over the classes that both sets have.

    Returns (mean, per_class) with per_class float64 (num_classes,), NaN for a class missing from either set.
    """
    real_labels, fake_labels = real_labels.detach().long().cpu(), fake_labels.detach().long().cpu()
    per_class = torch.full((num_classes,), math.nan, dtype=torch.float64)
    for c in range(num_classes):
        r, f = real[real_labels == c], fake[fake_labels == c]
        if len(r) and len(f):
            per_class[c] = fid(r, f)
    known = per_class[~torch.isnan(per_class)]
    return (float(known.mean()) if len(known) else math.nan), per_class


def within_mode_pct(samples: Tensor, labels: Tensor, means: Tensor, std: float, radius: float = 3.0) -> float:
    """Percent (0-100) of 2D samples within radius * std of the mean of their requested mode, means[labels].

    The edge counts as inside; a non-finite sample is outside. For samples of the isotropic Gaussian itself
    the expected value is 100 * (1 - exp(-radius^2 / 2)), 98.89% at 3 std.
    """
    if len(samples) == 0:
        return math.nan
    inside = _inside_requested_mode(samples, labels, means, std, radius)
    return 100.0 * float(inside.sum()) / len(samples)


def within_mode_pct_per_class(samples: Tensor, labels: Tensor, means: Tensor, std: float,
                              radius: float = 3.0) -> Tensor:
    """within_mode_pct of each mode's requested samples, float64 (K,), NaN for a mode nobody asked for."""
    inside = _inside_requested_mode(samples, labels, means, std, radius).double()
    labels = labels.detach().long().cpu()
    count = torch.bincount(labels, minlength=len(means)).double()
    hits = torch.bincount(labels, weights=inside, minlength=len(means))
    return torch.where(count > 0, 100.0 * hits / count.clamp_min(1), torch.full_like(count, math.nan))


def _inside_requested_mode(samples: Tensor, labels: Tensor, means: Tensor, std: float, radius: float) -> Tensor:
    samples, means = samples.detach().float().cpu(), means.float().cpu()
    dist = (samples - means[labels.detach().long().cpu()]).norm(dim=1)
    return torch.isfinite(dist) & (dist <= radius * std)
