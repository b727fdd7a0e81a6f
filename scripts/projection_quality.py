"""How well runs reproduce held-out digits they never saw: projection (GAN inversion) of MNIST test digits.

    OMP_NUM_THREADS=1 python scripts/projection_quality.py RUN [RUN ...] [--n 1000] [--steps 200] [--batch 100]
                                                             [--perceptual none|classifier] [--seed 0]

For each run (an MNIST run, any generator): the first `n` test digits of MNIST (a split no run trains on), at the
run's image size, projected with gantrain.project (space w for a style-based generator, else z; `steps`
optimiser steps per batch). Distance: pixel error alone (perceptual=none), or plus the run's domain classifier's
features (perceptual=classifier; then the label agreement below is read through the same features the
projection matched, so it flatters: report both). Printed per run, one Markdown row:

- label agreement: the domain classifier of the run's size reads the projected image as the digit's own label;
- PSNR (dB, images in [-1, 1]) and perceptual distance (squared distance of the classifier's features), mean
  over the digits;
- the floor: the same numbers for the mean training image put in place of every projection, and for the
  projection's start (the image of the mean latent).

Reads MNIST from $GANTRAIN_DATA, else from the run's own dataset.root; the classifier of the run's size is trained once
and cached (gantrain-classifier) when missing.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--perceptual", choices=("none", "classifier"), default="none")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for option in ("n", "steps", "batch"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} {getattr(args, option)}: give a whole number of at least 1")

    from _mnist_run import open_mnist_run

    import gantrain
    from gantrain.data.images import MNIST
    from gantrain.eval.projection import psnr
    from gantrain.nets.control import is_style_based

    given = os.environ.get("GANTRAIN_DATA")  # else each run's own dataset.root
    print("| run | space | steps | digits | label agreement | PSNR (dB) | perceptual distance | "
          "mean image: agreement / PSNR / distance | start: agreement / PSNR / distance | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        generator, size, train, classifier, root = open_mnist_run(run, given, "projects")
        space = "w" if is_style_based(generator) else "z"
        test = MNIST(root=root, image_size=size, download=False, train=False)
        images = test.tensor()[: args.n].float() / 127.5 - 1.0
        labels = test.labels()[: args.n]
        features = classifier.features if args.perceptual == "classifier" else None
        start_time = time.time()
        projected, starts = [], []
        for i in range(0, len(images), args.batch):
            result = gantrain.project(generator, images[i:i + args.batch], space=space, steps=args.steps,
                                      features=features, seed=args.seed + i)
            projected.append(result.images.detach())
            starts.append(result.start.detach())
        seconds = time.time() - start_time
        projected, starts = torch.cat(projected), torch.cat(starts)
        mean_image = (train.tensor().float() / 127.5 - 1.0).mean(0, keepdim=True).expand_as(images)

        def scores(x: torch.Tensor) -> tuple[float, float, float]:
            with torch.no_grad():
                agree = (classifier(x).argmax(1) == labels).float().mean().item()
                distance = (classifier.features(x) - classifier.features(images)).square().flatten(1).sum(1).mean().item()
            return agree, psnr(x, images).mean().item(), distance

        a, p, d = scores(projected)
        fa, fp, fd = scores(mean_image.contiguous())
        sa, sp, sd = scores(starts)
        print(f"| {run} | {space} | {args.steps} | {len(images)} | {a:.3f} | {p:.2f} | {d:.2f} | "
              f"{fa:.3f} / {fp:.2f} / {fd:.2f} | {sa:.3f} / {sp:.2f} / {sd:.2f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    from gantrain.errors import GantrainError

    try:
        main()
    except GantrainError as exc:  # what the run or the data cannot give, in one line
        raise SystemExit(f"{Path(__file__).name}: {exc}") from None
