"""What latent directions change in an MNIST run's samples: labels directions between two digits, PCA directions.

    OMP_NUM_THREADS=1 python scripts/directions_quality.py RUN [RUN ...] [--pairs 1:7,3:8,4:9] [--k 6]
                                                            [--n 5000] [--test 500] [--seed 0]

For each run (an unconditional MNIST run, any generator; w for a style-based generator, z for the others):

- labels: for each pair a:b, the direction gantrain-directions method=labels classes=a,b makes (a linear
  boundary between n sampled latents the domain classifier reads as a and as b, drawn with `seed`); then held-out
  latents, drawn with seed + 1, that the classifier reads as a, moved along it at strengths 0..5 (in units of the
  latents' spread along it, as gantrain-sample strength= is): the share read as b (and as a) per strength.
- pca: the first k principal directions of n sampled latents (gantrain-directions method=pca); `test` held-out
  latents moved along each at strengths -3..3; on every image the attributes the mnist_captions set measures
  (stroke thickness, slant, size: the ink's box area) and the domain classifier's digit. Printed per direction: the
  Spearman correlation (gantrain.eval.text.spearman) between the strength and each attribute over all (latent, strength) images, the attribute
  with the largest |correlation| (the direction's name), and the share of latents whose digit changes between
  strength -3 and +3.

Reads MNIST from $GANTRAIN_DATA, else from the run's own dataset.root; the classifier of the run's size is trained once
and cached (gantrain-classifier) when missing.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--pairs", default="1:7,3:8,4:9")
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from _mnist_run import open_mnist_run

    from gantrain.data.base import to_uint8_image
    from gantrain.data.captions import ink_box_area, slant, stroke_thickness
    from gantrain.eval.directions import images_of, label_directions, pca_directions, sample_latents
    from gantrain.eval.text import spearman

    given = os.environ.get("GANTRAIN_DATA")  # else each run's own dataset.root
    try:
        pairs = [tuple(int(v) for v in p.split(":")) for p in args.pairs.split(",") if p]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or not all(0 <= d <= 9 for d in p) or p[0] == p[1] for p in pairs):
        parser.error(f"--pairs {args.pairs}: give pairs of two different digits A:B, comma-separated, e.g. 1:7,3:8")
    for option in ("k", "n", "test"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} {getattr(args, option)}: give a whole number of at least 1")
    for run in args.runs:
        generator, _, _, classifier, _ = open_mnist_run(run, given, "measures")

        def render(latents: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([images_of(generator, part) for part in latents.split(250)]).float()

        def read(images: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([classifier(part).argmax(1) for part in images.split(500)])

        held, _, space = sample_latents(generator, max(4 * args.test, 4000), seed=args.seed + 1)
        held_digits = read(render(held))
        print(f"\n{run} ({space} space; directions from {args.n} latents of seed {args.seed}, held-out latents "
              f"of seed {args.seed + 1})")

        strengths = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        print("\n| labels direction | held-out samples read as a | " +
              " | ".join(f"s={s:g}: read as b / a" for s in strengths) + " |")
        print("|---|---|" + "---|" * len(strengths))
        for a, b in pairs:
            directions, std, _, _ = label_directions(generator, classifier, n=args.n, classes=(a, b),
                                                     seed=args.seed)
            step = directions[0] * std[0]
            start = held[held_digits == a][: args.test]
            cells = []
            for s in strengths:
                digits = read(render(start + s * step))
                cells.append(f"{(digits == b).float().mean().item():.2f} / {(digits == a).float().mean().item():.2f}")
            print(f"| {a} -> {b} | {len(start)} | " + " | ".join(cells) + " |", flush=True)

        latents, _, _ = sample_latents(generator, args.n, seed=args.seed)
        directions, std, _ = pca_directions(latents, args.k)
        start = held[: args.test]
        steps = np.linspace(-3.0, 3.0, 7)
        names = ("thickness", "slant", "size")
        print("\n| PCA direction | share of variance | Spearman(strength, thickness) | (strength, slant) | "
              "(strength, size) | named | digit changes between -3 and +3 |")
        print("|---|---|---|---|---|---|---|")
        total = (latents - latents.mean(0)).square().sum(1).mean().item()
        for k in range(len(directions)):
            measured = {name: [] for name in names}
            digits = []
            for s in steps:
                images = render(start + float(s) * directions[k] * std[k])
                if images.shape[-1] != 28:  # the attributes are defined on 28 px digits, as gantrain-eval measures them
                    images28 = torch.nn.functional.interpolate(images, size=(28, 28), mode="bilinear", antialias=True,
                                                               align_corners=False)
                else:
                    images28 = images
                ink = to_uint8_image(images28)
                measured["thickness"].append(stroke_thickness(ink))
                measured["slant"].append(slant(ink))
                measured["size"].append(ink_box_area(ink))
                digits.append(read(images))
            axis = np.repeat(steps, len(start))
            rho = {name: spearman(axis, np.concatenate(measured[name])) for name in names}
            best = max(names, key=lambda name: abs(rho[name]) if np.isfinite(rho[name]) else -1.0)
            changed = (digits[0] != digits[-1]).float().mean().item()
            print(f"| {k} | {std[k].item() ** 2 / total:.3f} | {rho['thickness']:+.2f} | {rho['slant']:+.2f} | "
                  f"{rho['size']:+.2f} | {best} ({'+' if rho[best] > 0 else '-'}) | {changed:.2f} |", flush=True)


if __name__ == "__main__":
    from gantrain.errors import GantrainError

    try:
        main()
    except GantrainError as exc:  # what the run or the data cannot give, in one line
        raise SystemExit(f"{Path(__file__).name}: {exc}") from None
