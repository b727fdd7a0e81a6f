"""`gantrain-project RUN_OR_CHECKPOINT input=FILE_OR_FOLDER out=FOLDER [key=value ...]`: find the latent point
from which a trained generator reproduces each of your images (GAN inversion).

RUN_OR_CHECKPOINT is a run folder (its newest good checkpoint) or a checkpoint file (.pt). Each image is
converted to the generator's channels and size (as gantrain-translate does).

Options (key=value):
  input=PATH        an image file, or a folder of images (not recursive)
  out=FOLDER        receives, per image NAME: NAME.png (the projection), NAME.npz (`latent`, `space`, `label`,
                    `distance`, `psnr`; style-based runs also `noise_K` per layer), NAME_strip.png
                    (target | start | projection)
  space=w|w_plus|z  w (one w for every layer), w_plus (one per layer) or z; w and w_plus need a style-based run
                    (generator=stylegan2); default: w for a style-based run, z for the others
  steps=1000        optimisation steps
  labels=K          a conditional run's class for every image (default: the run's domain classifier reads it)
  perceptual=auto   the distance besides the pixel error: lpips (needs the lpips package and its weights),
                    classifier (the run's domain classifier's features), none; auto: lpips when it loads, else
                    the classifier when the run has one, else none (the command says which)
  seed=0            the start's draws
  ema=true          project with the EMA generator when the run kept one
  device=auto       auto | cpu | cuda | cuda:N
  overwrite=false   true: replace outputs of the same names in out

Images that cannot be read are reported and skipped; the rest are projected.

Examples:
  gantrain-project RUN input=my_digits/ out=projected/ steps=500
  gantrain-project RUN input=face.png out=proj/ space=w_plus
"""
from __future__ import annotations

import io
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from gantrain.errors import GantrainError

PROG = "gantrain-project"
OPTIONS = ("input", "out", "space", "steps", "labels", "perceptual", "seed", "ema", "device", "overwrite")
PERCEPTUAL = ("auto", "lpips", "classifier", "none")
BATCH = 16
log = logging.getLogger("gantrain")


@dataclass
class Request:
    input: Path
    out: Path
    space: Optional[str] = None  # None: w for a style-based run, z for the others
    steps: int = 1000
    labels: Optional[int] = None
    perceptual: str = "auto"
    seed: int = 0
    ema: bool = True
    device: str = "auto"
    overwrite: bool = False


def parse_args(args: Sequence[str]) -> tuple[Path, Request]:
    from gantrain.commands.sample import _flag, _whole, split_command_line
    from gantrain.eval.projection import SPACES

    path, options = split_command_line(args, OPTIONS, PROG, "RUN_OR_CHECKPOINT input=FILE_OR_FOLDER out=FOLDER")
    for key in ("input", "out"):
        if not options.get(key):
            raise GantrainError(f"{key}= is missing: {PROG} RUN_OR_CHECKPOINT input=FILE_OR_FOLDER out=FOLDER; "
                                f"see {PROG} --help")
    request = Request(input=Path(options["input"]).expanduser(), out=Path(options["out"]).expanduser())
    if "space" in options:
        if options["space"] not in SPACES:
            raise GantrainError(f"space={options['space']} is not one of {', '.join(SPACES)}")
        request.space = options["space"]
    if "steps" in options:
        request.steps = _whole("steps", options["steps"], 1, "the optimisation steps, e.g. steps=1000")
    if "labels" in options:
        request.labels = _whole("labels", options["labels"], 0, "one class for every image, e.g. labels=3")
    if "perceptual" in options:
        if options["perceptual"] not in PERCEPTUAL:
            raise GantrainError(f"perceptual={options['perceptual']} is not one of {', '.join(PERCEPTUAL)}")
        request.perceptual = options["perceptual"]
    if "seed" in options:
        request.seed = _whole("seed", options["seed"], 0, "e.g. seed=0")
    if "ema" in options:
        request.ema = _flag("ema", options["ema"])
    if "overwrite" in options:
        request.overwrite = _flag("overwrite", options["overwrite"])
    if "device" in options:
        request.device = options["device"]
    return path, request


def _lpips(device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """LPIPS (VGG) features, or GantrainError saying in one line why not."""
    try:
        import lpips  # noqa: F401
    except ImportError:
        raise GantrainError("perceptual=lpips needs the lpips package: pip install lpips (its weights are "
                            "downloaded on first use); or use perceptual=classifier or none") from None
    try:
        model = lpips.LPIPS(net="vgg", verbose=False).to(device).eval()
    except Exception as exc:
        raise GantrainError(f"perceptual=lpips: its weights could not be loaded ({type(exc).__name__}); they are "
                            f"downloaded on first use: run once with network access, or use perceptual=classifier "
                            f"or none") from None
    model.requires_grad_(False)

    weights = [lin.model[-1].weight.detach().clamp_min(0).sqrt() for lin in model.lins]  # (1, C, 1, 1) each

    def features(x: torch.Tensor) -> torch.Tensor:
        """LPIPS' unit-normalised VGG activations, weighted by the square roots of its learned channel weights and
        divided by sqrt(pixels): the sum of squared differences of two such vectors is the LPIPS distance."""
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        outs = model.net.forward(model.scaling_layer(x))
        return torch.cat([(lpips.normalize_tensor(f) * w).flatten(1) / (f.shape[2] * f.shape[3]) ** 0.5
                          for f, w in zip(outs, weights)], dim=1)

    return features


def _classifier(state: dict, device: torch.device) -> Optional[Any]:
    """The run's domain classifier (cached by gantrain-eval / gantrain-classifier), or None."""
    from omegaconf import OmegaConf

    from gantrain.config import with_added_keys
    from gantrain.eval.classifier import load_classifier
    from gantrain.training.components import build_dataset_quietly

    try:
        dataset = build_dataset_quietly(OmegaConf.create(with_added_keys(state["config"])["dataset"]))
        model, _ = load_classifier(dataset, train_if_missing=False, device=str(device))
    except Exception:  # no classifier for this run's data: the distance is the pixel error alone
        return None
    return model


def perceptual_features(choice: str, state: dict, device: torch.device, shape: tuple[int, ...]) -> tuple[Optional[Any], Optional[Any], str]:
    """(features for the distance, the domain classifier or None, what was chosen, in words)."""
    classifier = _classifier(state, device)
    if classifier is not None and tuple(classifier.in_shape) != tuple(shape):
        classifier = None
    if choice in ("auto", "lpips"):
        try:
            return _lpips(device), classifier, "LPIPS (VGG)"
        except GantrainError:
            if choice == "lpips":
                raise
    if choice in ("auto", "classifier"):
        if classifier is not None:
            return classifier.features, classifier, "the run's domain classifier's features"
        if choice == "classifier":
            raise GantrainError("perceptual=classifier: this run's data has no cached domain classifier; run "
                                "gantrain-eval on the run once (it trains one), or use perceptual=none")
    return None, classifier, "none (pixel error only)"


@dataclass
class Result:
    written: list[Path]
    failed: list[tuple[Path, str]]
    out: Path
    psnr: list[float]


def _png(image: torch.Tensor) -> bytes:
    from PIL import Image

    from gantrain.data.base import to_uint8_image

    array = to_uint8_image(image).permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()


def project_files(path: Path, request: Request) -> Result:
    from gantrain.api import load_generator
    from gantrain.checkpoint import open_run_or_checkpoint
    from gantrain.commands.sample import check_writable, resolve_device, write_bytes
    from gantrain.commands.translate import _reason, input_files, plan_outputs, read_image, to_tensor
    from gantrain.eval.projection import project
    from gantrain.nets.control import is_style_based

    if not path.exists():
        raise GantrainError(f"{path}: no such run folder or checkpoint file; give a run folder (outputs/DATE/TIME) "
                            f"or one of its checkpoints/*.pt")
    files = input_files(request.input)
    targets = plan_outputs(files, request.input, request.out, request.overwrite, what="projections",
                           companions=("_strip.png", ".npz"))
    check_writable(request.out, "folder")
    device = resolve_device(request.device)
    generator = load_generator(path, device=device, ema=request.ema)
    if hasattr(generator, "tokenize"):  # G(z, caption): no latent space of its own to search
        raise GantrainError(f"{path} is a text-conditioned run: projection work on runs without captions; draw "
                            f"from it with gantrain-sample RUN text=...")
    if request.space is None:
        request.space = "w" if is_style_based(generator) else "z"
    if request.space != "z" and not is_style_based(generator):
        raise GantrainError(f"space={request.space} needs a style-based run (generator=stylegan2); this run's "
                            f"generator has only z: use space=z")
    channels, size = int(generator.out_shape[0]), int(generator.out_shape[-1])
    classes = getattr(generator, "num_classes", None)
    if request.labels is not None and (not classes or request.labels >= classes):
        raise GantrainError(f"labels={request.labels}: this run's generator is unconditional; leave labels out" if not classes
                            else f"labels={request.labels} is outside this run's classes 0..{classes - 1}")
    state = open_run_or_checkpoint(path)[1]
    features, classifier, described = perceptual_features(request.perceptual, state, device, generator.out_shape)
    if classes and request.labels is None and classifier is None:
        raise GantrainError("this run is conditional and has no domain classifier to read each image's class: give "
                            "labels=K (one class for every image)")
    log.info("projecting %d image(s) in %s, %d steps; perceptual distance: %s", len(files), request.space,
             request.steps, described)
    print(f"{PROG}: {len(files)} image(s), space={request.space}, steps={request.steps}, perceptual distance: "
          f"{described}", flush=True)
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    scores: list[float] = []
    for begin in range(0, len(files), BATCH):
        batch, where = [], []
        for f, target in zip(files[begin:begin + BATCH], targets[begin:begin + BATCH]):
            try:
                picture, _ = read_image(f, channels)
                batch.append(to_tensor(picture, channels, size))
            except Exception as exc:  # PIL raises many types for damaged or foreign files
                failed.append((f, _reason(exc, f)))
                continue
            where.append(target)
        if not batch:
            continue
        images = torch.stack(batch).to(device)
        labels = None
        if classes:
            if request.labels is not None:
                labels = torch.full((len(images),), request.labels, dtype=torch.int64, device=device)
            else:
                with torch.no_grad():
                    labels = classifier(images).argmax(1)
        found = project(generator, images, space=request.space, steps=request.steps, labels=labels,
                        features=features, seed=request.seed + begin)
        request.out.mkdir(parents=True, exist_ok=True)
        for i, target in enumerate(where):
            write_bytes(target, _png(found.images[i]), request.overwrite)
            strip = torch.cat([images[i].float().cpu(), found.start[i].cpu(), found.images[i].cpu()], dim=2)
            write_bytes(target.with_name(f"{target.stem}_strip.png"), _png(strip), request.overwrite)
            arrays = {"latent": found.latents[i].cpu().numpy(), "space": np.array(request.space),
                      "label": np.array(-1 if labels is None else int(labels[i])),
                      "distance": np.array(float(found.distance[i])), "psnr": np.array(float(found.psnr[i]))}
            for k, noise in enumerate(found.noises or []):
                arrays[f"noise_{k}"] = noise[i].cpu().numpy()
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            write_bytes(target.with_suffix(".npz"), buffer.getvalue(), request.overwrite)
            written.append(target)
            scores.append(float(found.psnr[i]))
            print(f"{target.name}: PSNR {float(found.psnr[i]):.2f} dB, distance {float(found.distance[i]):.4g}"
                  + ("" if labels is None else f", label {int(labels[i])}"), flush=True)
    return Result(written, failed, request.out, scores)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point of the `gantrain-project` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        sys.exit(0)
    try:
        if not args:
            raise GantrainError(f"give a run folder or checkpoint file: {PROG} RUN_OR_CHECKPOINT input=FILE_OR_FOLDER "
                                f"out=FOLDER; see {PROG} --help")
        path, request = parse_args(args)
        result = project_files(path, request)
    except GantrainError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
    from gantrain.commands.translate import warn_unreadable

    warn_unreadable(PROG, result.failed, len(result.written), "projected")
    if result.written:
        mean = sum(result.psnr) / len(result.psnr)
        print(f"projected {len(result.written)} image{'s' if len(result.written) != 1 else ''} into {result.out} "
              f"(mean PSNR {mean:.2f} dB)")
    else:
        print(f"projected no image: none of the inputs could be read; {result.out} was not made")
    sys.exit(1 if result.failed else 0)


if __name__ == "__main__":
    main()
