"""`gantrain-directions RUN_OR_CHECKPOINT method=pca|labels out=dirs.npz [key=value ...]`: find directions in a
trained generator's latent space (w for a style-based run, z for the others) that change one thing about its
samples; edit along them with `gantrain-sample RUN direction=dirs.npz:K strength=-3:3:7`.

Options (key=value):
  method=pca        pca: the principal components of sampled latents (GANSpace); labels: the normal of a linear
                    classifier separating sampled latents by the class the run's domain classifier reads in their
                    images (InterFaceGAN; a labelled dataset: trains the classifier once if it is not cached)
  out=dirs.npz      the direction file: directions (K, D) of unit length, std (K,) (strengths are in these
                    units), mean, space, method, names
  n=10000           latents sampled (labels: 5000 is plenty)
  k=10              pca: the number of components kept
  classes=A,B       labels: one direction from class A toward class B; omitted: one per class, from the rest
                    toward it
  seed=0  ema=true  device=auto  overwrite=false

Examples:
  gantrain-directions RUN method=pca k=8 out=pca.npz
  gantrain-directions RUN method=labels classes=3,8 out=3to8.npz
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from gantrain.errors import GantrainError

PROG = "gantrain-directions"
OPTIONS = ("method", "out", "n", "k", "classes", "seed", "ema", "device", "overwrite")


def directions(path: Path, options: dict) -> tuple[Path, list[str], str]:
    from omegaconf import OmegaConf

    from gantrain.api import load_generator
    from gantrain.checkpoint import open_run_or_checkpoint
    from gantrain.commands.sample import _flag, _whole, check_new, resolve_device
    from gantrain.config import with_added_keys
    from gantrain.eval.directions import METHODS, label_directions, pca_directions, sample_latents, save_directions

    method = options.get("method", "pca")
    if method not in METHODS:
        raise GantrainError(f"method={method} is not one of {', '.join(METHODS)}")
    out = Path(options.get("out", "directions.npz")).expanduser()
    if out.suffix != ".npz":
        raise GantrainError(f"out={out} must end in .npz (a direction file)")
    overwrite = _flag("overwrite", options.get("overwrite", "false"))
    check_new(out, "npz", overwrite)
    if method != "pca" and "k" in options:
        raise GantrainError(f"k= is the number of components of method=pca; method={method} finds one direction "
                            f"per class (or one from A toward B with classes=A,B): leave k out")
    n = _whole("n", options.get("n", "10000" if method == "pca" else "5000"), 100, "latents to sample, e.g. n=10000")
    k = _whole("k", options.get("k", "10"), 1, "components to keep, e.g. k=10")
    seed = _whole("seed", options.get("seed", "0"), 0, "e.g. seed=0")
    if not path.exists():
        raise GantrainError(f"{path}: no such run folder or checkpoint file")
    device = resolve_device(options.get("device", "auto"))
    generator = load_generator(path, device=device, ema=_flag("ema", options.get("ema", "true")))
    if hasattr(generator, "tokenize"):  # G(z, caption): no latent space of its own to search
        raise GantrainError(f"{path} is a text-conditioned run: latent directions work on runs without captions; draw "
                            f"from it with gantrain-sample RUN text=...")
    if method == "pca":
        if "classes" in options:
            raise GantrainError("classes= is for method=labels")
        latents, _, space = sample_latents(generator, n, seed, device)
        found, std, mean = pca_directions(latents, k)
        names = [f"pc{i}" for i in range(len(found))]
        if len(found) < k:  # a space of fewer dimensions (or samples) than asked for
            print(f"k={k}: {space} has {len(found)} principal directions here (its size {latents.shape[1]}, "
                  f"{len(latents)} samples); all {len(found)} are written", file=sys.stderr)
    else:
        from gantrain.eval.classifier import load_classifier
        from gantrain.training.components import build_dataset_quietly

        dataset = build_dataset_quietly(OmegaConf.create(with_added_keys(open_run_or_checkpoint(path)[1]["config"])["dataset"]))
        if not getattr(dataset, "num_classes", None) or getattr(dataset, "kind", "image") != "image" \
                or not hasattr(dataset, "split"):  # a labelled folder has classes, but no domain classifier
            raise GantrainError(f"method=labels reads the samples with a domain classifier, which gantrain trains for "
                                f"mnist, fashion_mnist and digits runs; this run's {dataset.name} has none: use method=pca")
        classes = None
        if "classes" in options:
            try:
                classes = [int(v) for v in options["classes"].split(",")]
                ok = len(classes) == 2 and classes[0] != classes[1] and all(0 <= c < dataset.num_classes for c in classes)
            except ValueError:
                ok = False
            if not ok:
                raise GantrainError(f"classes={options['classes']} must be two different classes of 0..{dataset.num_classes - 1}, "
                                    f"e.g. classes=3,8")
        classifier, _ = load_classifier(dataset, train_if_missing=True, device=str(device))
        found, std, mean, names = label_directions(generator, classifier, n, classes, seed, device)
        space = "w" if getattr(generator, "style_based", False) else "z"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_directions(out, found, std, mean, space, method, names)
    return out, names, space


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of the `gantrain-directions` command."""
    from gantrain.commands.sample import split_command_line

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        sys.exit(0)
    try:
        if not args:
            raise GantrainError(f"give a run folder or checkpoint file: {PROG} RUN_OR_CHECKPOINT method=pca out=dirs.npz; "
                                f"see {PROG} --help")
        path, options = split_command_line(args, OPTIONS, PROG, "RUN_OR_CHECKPOINT method=pca|labels out=dirs.npz")
        out, names, space = directions(path, options)
    except GantrainError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
    print(f"wrote {len(names)} direction(s) in {space} ({', '.join(names)}) to {out}")


if __name__ == "__main__":
    main()
