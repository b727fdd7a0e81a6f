"""`gantrain-translate RUN_OR_CHECKPOINT input=FILE_OR_FOLDER out=FOLDER [key=value ...]`: translate images
with a trained pix2pix or CycleGAN run.

RUN_OR_CHECKPOINT is a translation run folder (its newest good checkpoint) or a checkpoint file (.pt).

Options (key=value):
  input=PATH        one image file, or a folder: every image in it (not in subfolders) with the extension
                    .jpg, .jpeg, .png, .bmp or .webp
  out=FOLDER        where the translations go (made if missing), one PNG per input with the input's name:
                    photo.jpg -> FOLDER/photo.png. It may not be the folder the input is in.
  direction=AtoB    AtoB, or BtoA for a CycleGAN run (which trains both directions)
  ema=true          use the EMA translator when the run kept one (ema=false: the raw one)
  device=auto       auto (CUDA when present) | cpu | cuda | cuda:N
  overwrite=false   true: replace files of the same names already in out (never an input file)

Every image is turned into the channels the direction takes (grey, RGB; an alpha channel is dropped,
palette images are expanded), resized to the trained square size (bilinear), translated, and resized
back to its own width and height (bilinear); so a non-square image is squeezed into the square and
stretched back. Large images are not tiled: a picture much bigger than the trained size comes back with
the detail of the trained size.

A file that cannot be read is reported (one warning line for all of them) and the others are still
translated; the exit code is then 1. Mistakes on the command line exit with code 2.

Examples:
  gantrain-translate outputs/2026-11-27/10-00-00 input=sketches/ out=translated/
  gantrain-translate RUN input=digit.png out=result/ direction=BtoA
"""
from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from gantrain.errors import GantrainError
from gantrain.commands.sample import split_command_line

PROG = "gantrain-translate"
OPTIONS = ("input", "out", "direction", "ema", "device", "overwrite")
BATCH = 16  # images per forward pass


@dataclass
class Request:
    input: Path
    out: Path
    direction: str = "AtoB"
    ema: bool = True
    device: str = "auto"
    overwrite: bool = False


def _flag(key: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise GantrainError(f"{key}={text} must be true or false")


def parse_args(args: Sequence[str]) -> tuple[Path, Request]:
    """(run folder or checkpoint, request) of a command line; GantrainError for every mistake in it."""
    path, options = split_command_line(args, OPTIONS, PROG, "RUN_OR_CHECKPOINT input=FILE_OR_FOLDER out=FOLDER")
    for key in ("input", "out"):
        if not options.get(key):
            raise GantrainError(f"{key}= is missing: {PROG} RUN_OR_CHECKPOINT input=FILE_OR_FOLDER out=FOLDER; "
                                f"see {PROG} --help")
    request = Request(input=Path(options["input"]).expanduser(), out=Path(options["out"]).expanduser())
    if "direction" in options:
        request.direction = options["direction"]
    if "ema" in options:
        request.ema = _flag("ema", options["ema"])
    if "overwrite" in options:
        request.overwrite = _flag("overwrite", options["overwrite"])
    if "device" in options:
        request.device = options["device"]
    return path, request


def input_files(source: Path) -> list[Path]:
    """The image files of input=: the file itself, or a folder's images (sorted, not recursive)."""
    from gantrain.data.images import IMAGE_EXTENSIONS

    if not source.exists():
        raise GantrainError(f"input={source}: no such file or folder")
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                       and not p.name.startswith("."))  # hidden: no input (macOS ._ files, say)
        if not files:
            raise GantrainError(f"input={source}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder "
                                f"(subfolders are not searched)")
        return files
    if source.suffix.lower() not in IMAGE_EXTENSIONS:
        raise GantrainError(f"input={source} is not an image file ({', '.join(IMAGE_EXTENSIONS)})")
    return [source]


def plan_outputs(files: list[Path], source: Path, out: Path, overwrite: bool, what: str = "translations",
                 companions: Sequence[str] = ()) -> list[Path]:
    """The output file of every input (out/<stem>.png); refuses what would overwrite an input, two inputs
    that would write the same file, and (unless overwrite) files already in out. companions: the other files
    written per input, as suffixes of its stem (e.g. "_strip.png", ".npz"), checked the same way."""
    if out.exists() and not out.is_dir():
        raise GantrainError(f"out={out} is a file; give a folder for the {what}")
    folder = source if source.is_dir() else source.parent
    if out.resolve() == folder.resolve():
        raise GantrainError(f"out={out} is the input folder; give another folder so that no input is overwritten")
    targets = [out / f"{f.stem}.png" for f in files]
    written = [(f, out / f"{f.stem}{suffix}") for f in files for suffix in (".png", *companions)]
    inputs = {f.resolve() for f in files}
    clash = next((t for _, t in written if t.resolve() in inputs), None)
    if clash is not None:
        raise GantrainError(f"out={out} would overwrite the input {clash}; give another folder")
    verb = {"translations": "translate", "projections": "project"}.get(what, "write")
    seen: dict[Path, Path] = {}
    for f, t in written:
        if t in seen and seen[t] != f:
            raise GantrainError(f"{seen[t].name} and {f.name} would both be written as {t.name}; rename one of them "
                                f"or {verb} them into different folders")
        seen[t] = f
    if not overwrite:
        existing = [t for _, t in written if t.exists()]
        if existing:
            shown = ", ".join(t.name for t in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
            raise GantrainError(f"out={out} already holds {len(existing)} of the output file(s) ({shown}); choose "
                                f"another folder, or overwrite=true to replace them")
    return targets


def read_image(path: Path, channels: int) -> tuple[Any, tuple[int, int]]:
    """The picture at path as a PIL image of `channels` channels ('L' or 'RGB'), and its (width, height)."""
    from PIL import Image, ImageOps

    from gantrain.data.translation import _as_mode

    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)  # upright, as viewers show it: the output has no orientation tag
        size = img.size
        picture = _as_mode(img, channels)
        picture.load()
    if size[0] < 1 or size[1] < 1:
        raise ValueError("empty image")
    return picture, size


def to_tensor(picture: Any, channels: int, size: int) -> torch.Tensor:
    """A PIL image resized (bilinear) to size x size, as float (channels, size, size) in [-1, 1]."""
    from PIL import Image

    if picture.size != (size, size):
        picture = picture.resize((size, size), Image.BILINEAR)
    array = np.asarray(picture, dtype=np.uint8).reshape(size, size, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def to_picture(image: torch.Tensor, size: tuple[int, int]) -> Any:
    """A translated (C, S, S) image in [-1, 1] as a PIL image of the given (width, height)."""
    from PIL import Image

    from gantrain.data.base import to_uint8_image

    array = to_uint8_image(image).permute(1, 2, 0).cpu().numpy()
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    return picture if picture.size == size else picture.resize(size, Image.BILINEAR)


def _write_png(picture: Any, path: Path, overwrite: bool) -> None:
    """Write a translated picture; unless overwrite, never over a file, also one another process makes meanwhile
    (the existence check before translating cannot see a concurrent writer)."""
    from gantrain.commands.sample import write_bytes

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    try:
        write_bytes(path, buffer.getvalue(), overwrite)
    except OSError as exc:
        raise GantrainError(f"out={path.parent}: could not write {path.name} ({exc.strerror or exc})") from None


def _reason(exc: BaseException, path: Path) -> str:
    message = " ".join(str(exc).split()).replace(f"'{path}'", "").replace(str(path), "").strip(" :")
    return f"{type(exc).__name__}: {message[:100]}" if message else type(exc).__name__


@dataclass
class Result:
    written: list[Path]
    failed: list[tuple[Path, str]]  # (file, why)
    direction: str
    out: Path


def translate_files(path: Path, request: Request) -> Result:
    """Load the run's translator and translate every image of request.input into request.out."""
    from gantrain.api import load_translator
    from gantrain.commands.sample import check_writable, resolve_device

    if not path.exists():
        raise GantrainError(f"{path}: no such run folder or checkpoint file; give a translation run folder "
                            f"(outputs/DATE/TIME) or one of its checkpoints/*.pt")
    files = input_files(request.input)
    targets = plan_outputs(files, request.input, request.out, request.overwrite)
    check_writable(request.out, "folder")
    device = resolve_device(request.device)
    translator = load_translator(path, device=device, ema=request.ema)
    translator.check_direction(request.direction)
    c_in, _ = translator.channels(request.direction)
    size = translator.image_size
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    for start in range(0, len(files), BATCH):
        batch, sizes, where = [], [], []
        for f, target in zip(files[start:start + BATCH], targets[start:start + BATCH]):
            try:
                picture, original = read_image(f, c_in)
                batch.append(to_tensor(picture, c_in, size))
            except Exception as exc:  # PIL raises many types for damaged or foreign files
                failed.append((f, _reason(exc, f)))
                continue
            sizes.append(original)
            where.append(target)
        if not batch:
            continue
        outputs = translator.translate(torch.stack(batch), request.direction).float().cpu()
        if not written:
            request.out.mkdir(parents=True, exist_ok=True)
        for image, original, target in zip(outputs, sizes, where):
            _write_png(to_picture(image, original), target, request.overwrite)
            written.append(target)
    return Result(written, failed, request.direction, request.out)


def warn_unreadable(prog: str, failed: list[tuple[Path, str]], done: int, verb: str) -> None:
    """One warning line on stderr naming the input files that could not be read (nothing when none)."""
    if failed:
        shown = ", ".join(f.name for f, _ in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        print(f"{prog}: warning: could not read {len(failed)} of {done + len(failed)} file(s): {shown}{more} "
              f"({failed[0][1]}); they were not {verb}", file=sys.stderr)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point of the `gantrain-translate` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        sys.exit(0)
    try:
        if not args:
            raise GantrainError(f"give a run folder or checkpoint file: {PROG} RUN_OR_CHECKPOINT input=FILE_OR_FOLDER "
                                f"out=FOLDER; see {PROG} --help")
        path, request = parse_args(args)
        result = translate_files(path, request)
    except GantrainError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
    warn_unreadable(PROG, result.failed, len(result.written), "translated")
    print(f"translated {len(result.written)} image{'s' if len(result.written) != 1 else ''} {result.direction} "
          f"into {result.out}")
    sys.exit(1 if result.failed else 0)


if __name__ == "__main__":
    main()
