"""`gantrain-sample RUN_OR_CHECKPOINT [key=value ...]`: draw samples from a trained generator.

RUN_OR_CHECKPOINT is a run folder (its newest good checkpoint) or a checkpoint file (.pt).

Options (key=value):
  n=64              samples to draw (per_class: columns per class, default 8; interpolate: rows, default 8)
  seed=0            the noise seed: the same seed gives the identical output
  out=samples.png   where to write:
                      *.png   one picture: a grid of images (2D points: a scatter plot over the data)
                      *.npz   an array file: `samples` (float32, data space), `z` (the latent points),
                              `labels` (conditional runs), `prompts` (text runs: each sample's)
                      other   a folder (made if missing) receiving one PNG per image, 000000.png, ...
                              (for external FID tools such as torch-fidelity or clean-fid)
  labels=3 | labels=[3,3,5]
                    classes to draw (conditional runs only): one value is used for every sample, a list
                    gives one per sample (n is then taken from it)
  per_class=true    one row per class, n samples in each (conditional runs only)
  text="a thick 3"  text runs (condition.text_encoder): n samples of one prompt (words the run never saw are named
                    in a warning; an empty prompt is refused)
  text_file=FILE    text runs: one row per line of FILE (a prompt each), n samples in each (default 8), the same
                    noise down each column; a text run sampled without text= shows its own prompts this way
  interpolate=K     n rows of K steps each, every row a spherical interpolation (slerp) from one random
                    latent point to another
  truncation=PSI    the truncation trick, smaller trading variety for quality: a style-based run (generator=
                    stylegan2) moves w toward the average w_avg (w_avg + PSI (w - w_avg); PSI=0 gives the
                    average image, 1 none); other runs redraw every component of z beyond +-PSI (PSI > 0);
                    at most 10
  truncation=A:B:K  a truncation strip (style-based runs): n rows (default 8), one column per PSI of K from A to B
  style_mix=true    the style-mixing figure (style-based runs): `rows` row sources down the left, `cols` column
                    sources along the top, each cell the row's styles with the column's on `layers`
  rows=5 cols=5     its size;  layers=0-3  the layers taken from the column source (a range, a list 0,2,5,
                    all); coarse layers carry pose and shape, fine ones texture and colour
  direction=FILE:K  an edit: n rows (default 8), each a sample moved along direction K of a gantrain-directions
                    file, one column per strength (in units of the latents' spread along it)
  strength=-3:3:7   the edit's strengths: from, to, how many (each from -1000 to 1000)
  latent=FILE.npz   the edit (or plain sampling) starts from the latent of a gantrain-project file instead
  ema=true          use the EMA generator when the run kept one (ema=false: the raw generator)
  device=auto       auto (CUDA when present) | cpu | cuda | cuda:N
  overwrite=false   true: replace an existing out=NAME.png / NAME.npz (a folder of samples must be new or
                    empty: two sample sets are never mixed in one folder)

Examples:
  gantrain-sample outputs/2026-11-27/10-00-00 n=100 out=grid.png
  gantrain-sample RUN n=10000 out=fid_samples/           # a folder of 10,000 PNGs
  gantrain-sample RUN interpolate=10 n=6 out=walk.png
  gantrain-sample RUN per_class=true out=classes.png     # conditional runs
  gantrain-sample RUN text="a thick 3" n=16 out=threes.png  # text runs
  gantrain-sample RUN truncation=0:1:6 n=4 out=strip.png  # style-based runs
  gantrain-sample RUN style_mix=true rows=5 cols=5 layers=0-3 out=mix.png
  gantrain-sample RUN direction=pca.npz:0 strength=-3:3:7 n=4 out=edit.png
"""
from __future__ import annotations

import difflib
import io
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from gantrain.data.base import grid_columns
from gantrain.errors import GantrainError
from gantrain.nets.base import MAX_PSI

PROG = "gantrain-sample"
OPTIONS = ("n", "seed", "out", "labels", "per_class", "text", "text_file", "interpolate", "truncation", "style_mix", "rows", "cols",
           "layers", "direction", "strength", "latent", "ema", "device", "overwrite")
# suffixes that name a file, not a folder: out=x.jpg is refused rather than made into a folder called x.jpg
FILE_SUFFIXES = {".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".npy", ".pt", ".pth", ".json",
                 ".txt", ".csv", ".pdf", ".svg", ".zip"}
CHUNK = 512  # samples per forward pass


# ---- option values ---------------------------------------------------------------------------------


def _whole(key: str, text: str, minimum: int, hint: str) -> int:
    try:
        value = int(text.strip(), 10)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise GantrainError(f"{key}={text} must be a whole number >= {minimum}; {hint}")
    return value


def _flag(key: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise GantrainError(f"{key}={text} must be true or false")


def _labels(text: str) -> Union[int, list[int]]:
    """labels=3 -> 3; labels=[3,3,5] -> [3, 3, 5] (syntax only; the classes are checked against the model)."""
    raw = text.strip()
    listed = raw.startswith("[") or raw.endswith("]") or "," in raw
    inner = raw[1:] if raw.startswith("[") else raw  # one bracket is enough to mean a list: "[4", "7]"
    inner = inner[:-1] if inner.endswith("]") else inner
    if "[" in inner or "]" in inner:
        raise GantrainError(f"labels={text} is not a flat list of class numbers; give labels=3 or labels=[3,3,5]")
    items = [item.strip() for item in inner.split(",")] if listed else [raw]
    if listed and items == [""]:
        raise GantrainError("labels=[] names no class; give labels=3 or labels=[3,3,5]")
    values = []
    for item in items:
        try:
            values.append(int(item, 10))
        except ValueError:
            raise GantrainError(f"labels={text}: {item or '(empty)'!s} is not a class number; "
                                f"give labels=3 or labels=[3,3,5]") from None
    return values if listed else values[0]


#: the largest edit strength, in units of the latents' spread along the direction
MAX_STRENGTH = 1000.0


def _truncation(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= MAX_PSI):
        raise GantrainError(f"truncation={text} must be a number > 0 and at most {MAX_PSI:g} (e.g. truncation=0.7; 0 "
                            f"only for a style-based run, whose truncation is in W); smaller values trade variety for "
                            f"quality")
    return value


def _is_zero(text: str) -> bool:
    try:
        return float(text) == 0.0
    except ValueError:
        return False


def _strip(text: str) -> tuple[float, float, int]:
    """truncation=A:B:K -> (A, B, K): K values of psi from A to B (A, B >= 0, K >= 2)."""
    parts = text.split(":")
    try:
        a, b, k = float(parts[0]), float(parts[1]), int(parts[2])
        ok = len(parts) == 3 and 0 <= a <= MAX_PSI and 0 <= b <= MAX_PSI and k >= 2
    except (ValueError, IndexError):
        ok = False
    if not ok:
        raise GantrainError(f"truncation={text} is not a strip A:B:K (K >= 2 values of psi from A to B, both from 0 "
                            f"to {MAX_PSI:g}), e.g. truncation=0:1:6")
    return a, b, k


def resolve_device(name: str) -> torch.device:
    """auto | cpu | cuda | cuda:N to a device that exists here."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise GantrainError(f"device={name} is not one of auto, cpu, cuda, cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GantrainError(f"device={name} but no CUDA device is available here; use device=cpu or device=auto")
        if (device.index or 0) >= torch.cuda.device_count():
            raise GantrainError(f"device={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def output_kind(out: Path) -> str:
    """'png' (one picture), 'npz' (an array file) or 'folder' (one PNG per image)."""
    if out.is_dir():
        return "folder"
    suffix = out.suffix.lower()
    if suffix in (".png", ".npz"):
        return suffix[1:]
    if suffix in FILE_SUFFIXES:
        raise GantrainError(f"out={out}: {suffix} files are not written; use out=NAME.png (a picture), "
                            f"out=NAME.npz (arrays) or a folder name (one PNG per sample)")
    if out.exists():
        raise GantrainError(f"out={out} exists and is not a folder; use out=NAME.png, out=NAME.npz or a folder name")
    return "folder"


def check_writable(out: Path, kind: str) -> None:
    """Refuse, before any sampling, an `out` whose folder cannot be made or written."""
    target = out if kind == "folder" else out.parent
    target = Path(os.path.abspath(target))
    probe = target
    while not probe.exists():
        probe = probe.parent
    where = f"out={out}"
    if not probe.is_dir():
        raise GantrainError(f"{where}: {probe} is a file, not a folder; choose another out=...")
    try:  # os.access is not enough (root, read-only mounts): make and remove a file there
        fd, name = tempfile.mkstemp(prefix=".gantrain-probe-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise GantrainError(f"{where}: cannot write in {probe} ({exc.strerror or exc}); choose another out=...") from None


@dataclass
class Request:
    """What to draw; n_given: whether n came from the command line (else each mode's default)."""

    n: int = 64
    n_given: bool = False
    seed: int = 0
    out: Path = Path("samples.png")
    out_folder: bool = False  # out= ended in a slash: a folder, whatever its name
    labels: Union[None, int, list[int]] = None
    per_class: bool = False
    interpolate: Optional[int] = None
    truncation: Optional[float] = None
    strip: Optional[tuple[float, float, int]] = None  # truncation=A:B:K
    style_mix: bool = False
    rows: int = 5
    cols: int = 5
    layers: str = "0-3"
    direction: Optional[tuple[Path, int]] = None  # direction=FILE:K
    strength: tuple[float, float, int] = (-3.0, 3.0, 7)
    latent: Optional[Path] = None  # latent=FILE.npz of gantrain-project
    text: Optional[list[str]] = None  # prompts of a text run: text="..." (one) or text_file= (one row each)
    text_rows: bool = False  # one row per prompt (text_file=), else n samples of the one prompt
    ema: bool = True
    device: str = "auto"
    overwrite: bool = False


def check_no_spaced_option(args: Sequence[str]) -> None:
    """GantrainError where an option was typed with spaces around its '=' (`n = 4`, `n= 4`, `n =4`): the shell
    splits it into words that would read as paths and nameless options."""
    words = sum("=" not in a for a in args)  # one of them is the run; where there are more, a value was split off
    for i, arg in enumerate(args):
        if "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        after = args[i + 1] if i + 1 < len(args) else None
        if not key.strip() or (not value and words > 1 and after is not None and "=" not in after):
            typed = args[max(i - 1, 0) if not key.strip() else i: i + 2]
            name = (args[i - 1] if i and not key.strip() else key).strip() or "key"
            example = f"{name}={value or after or 'VALUE'}"
            raise GantrainError(f"{' '.join(typed)!r}: write an option as key=value with no spaces around '=' "
                                f"(e.g. {example})")


def split_command_line(args: Sequence[str], valid: Sequence[str], prog: str, usage: str) -> tuple[Path, dict[str, str]]:
    """(the one run folder or checkpoint, key=value options) of a command line; GantrainError for an unknown
    option (with the nearest valid one) or not exactly one path."""
    check_no_spaced_option(args)
    paths = [a for a in args if "=" not in a]
    options: dict[str, str] = {}
    for arg in args:
        if "=" in arg:
            key, value = arg.split("=", 1)
            key, value = key.strip(), value.strip().strip("'\"")
            if key in options and options[key] != value and key in valid:  # the last one would win unsaid
                raise GantrainError(f"{key}= is given twice ({options[key]!r} and {value!r}); give it once")
            options[key] = value
    unknown = [k for k in options if k not in valid]
    flags = [p for p in paths if p.startswith("-")]
    if unknown or flags:
        bad = (unknown or flags)[0]
        near = difflib.get_close_matches(bad.lstrip("-"), valid, n=1)
        hint = f"did you mean {near[0]}=? " if near else ""
        raise GantrainError(f"unknown option {bad}; {hint}valid options: {'=, '.join(valid)}= (see {prog} --help)")
    if len(paths) != 1:
        raise GantrainError(f"give exactly one run folder or checkpoint file (got {len(paths)}): {prog} {usage}; "
                            f"see {prog} --help")
    return Path(paths[0]).expanduser(), options


def parse_args(args: Sequence[str]) -> tuple[Path, Request]:
    """(run folder or checkpoint, request) of a command line; GantrainError for every mistake in it."""
    path, options = split_command_line(args, OPTIONS, PROG, "RUN_OR_CHECKPOINT [key=value ...]")
    request = Request()
    if "n" in options:
        request.n = _whole("n", options["n"], 1, "the number of samples to draw, e.g. n=64")
        request.n_given = True
    if "seed" in options:
        request.seed = _whole("seed", options["seed"], 0, "e.g. seed=0")
        if request.seed >= 2**63:
            raise GantrainError(f"seed={options['seed']} is too large; use a whole number below 2^63")
    if "out" in options:
        if not options["out"]:
            raise GantrainError("out= is empty; give out=NAME.png, out=NAME.npz or a folder name")
        request.out = Path(options["out"]).expanduser()
        request.out_folder = options["out"].endswith(("/", os.sep))
    if "labels" in options:
        request.labels = _labels(options["labels"])
    if "per_class" in options:
        request.per_class = _flag("per_class", options["per_class"])
    if "text" in options and "text_file" in options:
        raise GantrainError("text= and text_file= both give prompts; give one of them")
    if "text" in options:
        request.text = [options["text"]]
    if "text_file" in options:
        if not options["text_file"]:
            raise GantrainError("text_file= is empty; give the path of a text file with one prompt per line")
        from gantrain.tokens import tokenize

        file = Path(options["text_file"]).expanduser()
        try:
            numbered = [(k, line.strip()) for k, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1)
                        if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise GantrainError(f"text_file={file} cannot be read ({type(exc).__name__}); give a text file with one "
                                f"prompt per line") from None
        if not numbered:
            raise GantrainError(f"text_file={file} holds no prompt; write one prompt per line")
        wordless = [(k, line) for k, line in numbered if not tokenize(line)]
        if wordless:
            raise GantrainError(f"text_file={file}, line {wordless[0][0]}: {wordless[0][1]!r} has no word; give a "
                                f"prompt with at least one word on each line (empty lines are skipped)")
        lines = [line for _, line in numbered]
        request.text, request.text_rows = lines, True
    if "interpolate" in options:
        request.interpolate = _whole("interpolate", options["interpolate"], 2,
                                     "the steps from one latent point to the other, e.g. interpolate=8")
    if "truncation" in options:
        text = options["truncation"]
        if ":" in text:
            request.strip = _strip(text)
        elif _is_zero(text):  # psi 0: the average image, in W only (checked once the run is loaded)
            request.truncation = 0.0
        else:
            request.truncation = _truncation(text)
    if "style_mix" in options:
        request.style_mix = _flag("style_mix", options["style_mix"])
    for key in ("rows", "cols"):
        if key in options:
            setattr(request, key, _whole(key, options[key], 1, f"the style-mixing figure's {key}, e.g. {key}=5"))
    if "layers" in options:
        request.layers = options["layers"]
    if (("rows" in options or "cols" in options or "layers" in options) and not request.style_mix):
        raise GantrainError("rows=, cols= and layers= size the style-mixing figure; add style_mix=true")
    if "direction" in options:
        file, _, index = options["direction"].rpartition(":")
        if not file or not index.strip().isdigit():
            raise GantrainError(f"direction={options['direction']} must be FILE:K, a gantrain-directions file and the "
                                f"index of a direction in it, e.g. direction=pca.npz:0")
        request.direction = (Path(file).expanduser(), int(index))
    if "strength" in options:
        parts = options["strength"].split(":")
        try:
            a, b, k = float(parts[0]), float(parts[1]), int(parts[2])
            ok = len(parts) == 3 and k >= 1 and abs(a) <= MAX_STRENGTH and abs(b) <= MAX_STRENGTH
        except (ValueError, IndexError):
            ok = False
        if not ok:
            raise GantrainError(f"strength={options['strength']} must be FROM:TO:COUNT, each strength from "
                                f"-{MAX_STRENGTH:g} to {MAX_STRENGTH:g}, e.g. strength=-3:3:7")
        request.strength = (a, b, k)
        if request.direction is None:
            raise GantrainError("strength= sets an edit's strengths; add direction=FILE:K")
    if "latent" in options:
        request.latent = Path(options["latent"]).expanduser()
    if request.text is not None and (request.labels is not None or request.per_class or request.interpolate
                                     or request.strip or "style_mix" in options or "direction" in options):
        raise GantrainError("text= and text_file= choose what to draw by prompt; leave out labels, per_class, "
                            "interpolate, style_mix, direction and truncation strips")
    if (request.direction or request.latent) and (request.style_mix or request.strip or request.interpolate
                                                  or request.per_class):
        raise GantrainError("direction= and latent= draw their own rows; leave out style_mix, truncation strips, "
                            "interpolate and per_class")
    if request.style_mix and (request.interpolate or request.per_class or request.strip):
        raise GantrainError("style_mix=true draws its own figure; leave out interpolate, per_class and truncation strips")
    if request.style_mix and request.n_given:
        raise GantrainError("style_mix=true draws rows x cols sources and cells; set its size with rows= and cols=, "
                            "and leave n out")
    if request.latent and (request.n_given or isinstance(request.labels, list)):
        raise GantrainError("latent= draws the one image of a gantrain-project latent (a row along direction=); "
                            "leave n out, and give at most one label (labels=K)")
    if request.strip and (request.interpolate or request.per_class):
        raise GantrainError("a truncation strip draws its own rows; leave out interpolate and per_class")
    if "ema" in options:
        request.ema = _flag("ema", options["ema"])
    if "device" in options:
        request.device = options["device"]
    if "overwrite" in options:
        request.overwrite = _flag("overwrite", options["overwrite"])
    if request.per_class and request.labels is not None:
        raise GantrainError("per_class=true and labels=... both choose the classes; give one of them")
    if request.per_class and request.interpolate is not None:
        raise GantrainError("per_class=true and interpolate=K cannot be combined; "
                            "use interpolate=K labels=[...] to choose each row's class")
    if isinstance(request.labels, list) and request.n_given and request.n != len(request.labels):
        rows = " rows" if request.interpolate else ""
        raise GantrainError(f"labels has {len(request.labels)} values but n={request.n}{rows}; "
                            f"give one label per sample{rows}, one label for all, or leave n out")
    return path, request


# ---- drawing ---------------------------------------------------------------------------------------


#: rounds of redrawing the values of a truncated normal beyond +-psi before the rest are drawn by inverse CDF
REDRAWS = 100


def truncated_normal(shape: Sequence[int], psi: Optional[float], generator: torch.Generator) -> Tensor:
    """Standard normal values of `shape` (float32, CPU) kept within +-psi: each value beyond is redrawn, up to
    REDRAWS times (plenty for any usual psi), and any still beyond is then drawn from the same truncated
    distribution by the inverse normal CDF (in float64), so that a tiny psi cannot stall."""
    z = torch.randn(*shape, generator=generator)
    if psi is None:
        return z
    outside = z.abs() > psi
    for _ in range(REDRAWS):
        if not bool(outside.any()):
            return z
        z[outside] = torch.randn(int(outside.sum()), generator=generator)
        outside = z.abs() > psi
    if bool(outside.any()):
        low = float(torch.special.ndtr(torch.tensor(-float(psi), dtype=torch.float64)))
        u = low + (1.0 - 2.0 * low) * torch.rand(int(outside.sum()), generator=generator, dtype=torch.float64)
        z[outside] = torch.special.ndtri(u).float().clamp_(-psi, psi)
    return z


def slerp(a: Tensor, b: Tensor, steps: int) -> Tensor:
    """(n, steps, d): for each row, `steps` points on the great circle from a[i] to b[i] (magnitudes
    interpolated linearly along it); the first is a[i] and the last b[i] exactly."""
    a64, b64 = a.double(), b.double()
    t = torch.linspace(0, 1, steps, dtype=torch.float64).view(1, steps, 1)
    cos = ((a64 / a64.norm(dim=1, keepdim=True).clamp_min(1e-12)) *
           (b64 / b64.norm(dim=1, keepdim=True).clamp_min(1e-12))).sum(1).clamp(-1, 1)
    omega = torch.acos(cos).view(-1, 1, 1)
    sin = torch.sin(omega)
    near = sin.abs() < 1e-6  # (anti)parallel points: no unique great circle, interpolate linearly
    safe = torch.where(near, torch.ones_like(sin), sin)
    wa = torch.where(near, 1 - t, torch.sin((1 - t) * omega) / safe)
    wb = torch.where(near, t, torch.sin(t * omega) / safe)
    path = wa * a64[:, None, :] + wb * b64[:, None, :]
    path[:, 0], path[:, -1] = a64, b64
    return path.to(a.dtype)


@dataclass
class Batch:
    """Samples (data space, CPU), their latent points, labels (None: unconditional) and the grid's row width;
    texts: the prompt of each sample (a text run's)."""

    samples: Tensor
    z: Tensor
    labels: Optional[Tensor]
    nrow: int
    texts: Optional[list[str]] = None


def num_classes_of(generator: torch.nn.Module) -> Optional[int]:
    classes = getattr(generator, "num_classes", None)
    return int(classes) if classes else None


def plan_labels(request: Request, classes: Optional[int]) -> tuple[int, Optional[Tensor], int]:
    """(samples or rows to draw, their labels or None to draw them at random, grid row width)."""
    labels = request.labels
    if classes is None:
        if labels is not None:
            raise GantrainError("labels= given, but this run's generator is unconditional (it was trained without "
                                "classes); leave labels out")
        if request.per_class:
            raise GantrainError("per_class=true needs a conditional run, but this run's generator is unconditional; "
                                "leave per_class out")
    if request.per_class:
        columns = request.n if request.n_given else 8
        return classes * columns, torch.arange(classes).repeat_interleave(columns), columns  # type: ignore[operator]
    rows_default = 8 if request.interpolate else 64
    n = request.n if request.n_given else rows_default
    y = None
    if labels is not None:
        values = labels if isinstance(labels, list) else [labels] * n
        n = len(values)
        bad = [v for v in values if not 0 <= v < classes]  # type: ignore[operator]
        if bad:
            raise GantrainError(f"label {bad[0]} is outside this run's classes 0..{classes - 1}; "  # type: ignore[operator]
                                f"give labels between 0 and {classes - 1}")  # type: ignore[operator]
        y = torch.tensor(values, dtype=torch.int64)
    return n, y, request.interpolate or grid_columns(n)


@torch.no_grad()
def generate(generator: torch.nn.Module, request: Request, device: Optional[torch.device] = None) -> Batch:
    """Draw what `request` asks of a generator (in eval mode, on `device`); the noise comes from a CPU
    torch.Generator seeded with request.seed, so a seed gives the same samples on every device (a style-based
    generator uses each layer's fixed noise input)."""
    from gantrain.nets.control import is_style_based, synthesize

    style = is_style_based(generator)
    text_run = hasattr(generator, "tokenize")
    if request.text is not None and not text_run:
        raise GantrainError("text= needs a text-conditioned run (condition.text_encoder); this run's generator "
                            "takes no caption: leave text out (or use labels= on a class-conditional run)")
    if text_run:
        return _text_batch(generator, request, device)
    if request.strip and not style:
        raise GantrainError("a truncation strip needs a style-based run (generator=stylegan2): this run's generator has "
                            "no W space; use truncation=PSI (in z) instead")
    if request.style_mix and not style:
        raise GantrainError("style mixing needs a style-based run (generator=stylegan2): this run's generator has no "
                            "layers of styles to mix")
    if request.truncation == 0 and not style:
        _truncation("0")  # the one-line refusal: in z, truncation must be > 0
    classes = num_classes_of(generator)
    if device is None:
        device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(request.seed)
    latent_dim = int(generator.latent_dim)
    if request.style_mix:
        return _style_mix_figure(generator, request, classes, rng, device)
    if request.direction or request.latent:
        return _edit(generator, request, classes, rng, device, style)
    if request.strip:
        a, b, k = request.strip
        z, y = _row_latents(request, classes, latent_dim, rng)
        psis = torch.linspace(a, b, k).tolist()
        columns = [synthesize(generator, z.to(device), None if y is None else y.to(device), psi).float().cpu()
                   for psi in psis]
        samples = torch.stack(columns, dim=1).flatten(0, 1)  # row i: sample i at each psi
        labels = None if y is None else y.repeat_interleave(k)
        return Batch(samples, z.repeat_interleave(k, dim=0), labels, k)
    count, y, nrow = plan_labels(request, classes)
    z_truncation = None if style else request.truncation
    if request.interpolate:
        ends = truncated_normal((2, count, latent_dim), z_truncation, rng)
        z = slerp(ends[0], ends[1], request.interpolate).reshape(count * request.interpolate, latent_dim)
    else:
        z = truncated_normal((count, latent_dim), z_truncation, rng)
    if classes is not None and y is None:
        y = torch.randint(classes, (count,), generator=rng)
    if y is not None and request.interpolate:
        y = y.repeat_interleave(request.interpolate)  # one class per row
    outputs = []
    for start in range(0, len(z), CHUNK):
        zc = z[start:start + CHUNK].to(device)
        yc = None if y is None else y[start:start + CHUNK].to(device)
        if style:
            out = synthesize(generator, zc, yc, request.truncation)
        else:
            out = generator(zc) if yc is None else generator(zc, yc)
        outputs.append(out.float().cpu())
    return Batch(torch.cat(outputs), z, y, nrow)


def _text_batch(generator: torch.nn.Module, request: Request, device: Optional[torch.device]) -> Batch:
    """Samples of a text run: n of one prompt (text=), or one row per prompt with n columns (text_file=, or the
    run's own prompts), the same noise down each column."""
    if request.labels is not None or request.per_class or request.interpolate or request.strip \
            or request.style_mix or request.direction or request.latent:
        raise GantrainError("this run is conditioned on text: draw with text=\"a thick 3\" or text_file=FILE; "
                            "labels, per_class, interpolate, style mixing and edits are for other runs")
    if request.truncation == 0:
        _truncation("0")  # the one-line refusal: in z, truncation must be > 0
    device = device or next(generator.parameters()).device
    rng = torch.Generator().manual_seed(request.seed)
    rows = request.text_rows or request.text is None
    prompts = request.text if request.text is not None else list(generator.prompts)
    columns = request.n if request.n_given else (8 if rows else request.n)
    if rows:
        z = truncated_normal((columns, generator.latent_dim), request.truncation, rng).repeat(len(prompts), 1)
        texts = [p for p in prompts for _ in range(columns)]
    else:
        z = truncated_normal((columns, generator.latent_dim), request.truncation, rng)
        texts = prompts * columns
    tokens = generator.tokenize(texts)
    outputs = [generator(z[i:i + CHUNK].to(device), tokens[i:i + CHUNK].to(device)).float().cpu()
               for i in range(0, len(z), CHUNK)]
    return Batch(torch.cat(outputs), z, None, columns if rows else grid_columns(columns), texts)


def _row_latents(request: Request, classes: Optional[int], latent_dim: int, rng: torch.Generator) -> tuple[Tensor, Optional[Tensor]]:
    """z and labels of the rows of a truncation strip or an edit: n rows, 8 unless n or a label list says."""
    count, y, _ = plan_labels(request, classes)
    if not request.n_given and not isinstance(request.labels, list):
        count, y = 8, None if y is None else y[:8]
    z = torch.randn(count, latent_dim, generator=rng)
    if classes is not None and y is None:
        y = torch.randint(classes, (count,), generator=rng)
    return z, y


def _start_latents(generator: torch.nn.Module, request: Request, classes: Optional[int], rng: torch.Generator,
                   style: bool) -> tuple[Tensor, Optional[Tensor], str, Optional[list[Tensor]]]:
    """The latents an edit starts from (N, D) or (N, num_ws, D) for w_plus, their labels, their space, and the noise
    maps a projection in w or w_plus optimised with them (None: each layer's fixed noise)."""
    if request.latent is not None:
        try:
            with np.load(request.latent, allow_pickle=False) as data:
                latent, space = torch.from_numpy(np.asarray(data["latent"])).float(), str(data["space"])
                label = int(data["label"]) if "label" in data.files else -1
                noises = [torch.from_numpy(np.asarray(data[f"noise_{k}"])).float()
                          for k in range(sum(f.startswith("noise_") for f in data.files))]
        except Exception:
            raise GantrainError(f"latent={request.latent} is not a gantrain-project .npz; "
                                f"give one of the .npz files gantrain-project wrote") from None
        if space != "z" and not style:
            raise GantrainError(f"latent={request.latent} is in {space}, which this run's generator does not have")
        expected = {"z": (int(generator.latent_dim),), "w": (int(getattr(generator, "w_dim", 0)),),
                    "w_plus": (int(getattr(generator, "num_ws", 0)), int(getattr(generator, "w_dim", 0)))}.get(space)
        if expected is None or tuple(latent.shape) != expected:
            raise GantrainError(f"latent={request.latent} holds a latent of shape {tuple(latent.shape)} in {space}; "
                                f"this run's are {expected}: project the image again with this run")
        if request.labels is not None and not classes:
            raise GantrainError("labels= given, but this run's generator is unconditional (it was trained without "
                                "classes); leave labels out")
        if request.labels is not None and space != "z":
            raise GantrainError(f"latent={request.latent} is in {space}, which already holds the class it was projected "
                                f"with; leave labels out, or project again with labels=K (or in space=z)")
        if request.labels is not None:
            plan_labels(request, classes)  # the range check
            label = int(request.labels)  # type: ignore[arg-type]
        elif classes and label < 0 and space == "z":  # in w the class is part of the latent already
            raise GantrainError(f"latent={request.latent} was projected without a class and this run is "
                                f"class-conditional; give labels=K")
        if classes and space == "z" and label >= classes:
            raise GantrainError(f"latent={request.latent} was projected with class {label}, outside this run's classes "
                                f"0..{classes - 1}; give labels=K")
        y = torch.tensor([label]) if classes and label >= 0 else None
        if request.truncation is not None and space == "z" and not style:
            raise GantrainError(f"truncation= draws noise nearer the mean; latent={request.latent} is a given z, "
                                f"drawn as it is: leave truncation out")
        # the noise maps the projection optimised with the latent (w, w_plus): the image it reproduced
        maps = [n.unsqueeze(0) for n in noises] if space != "z" and noises else None
        if maps is not None:
            wanted = [(1, 1, conv.resolution, conv.resolution) for conv in generator.synthesis.convs]
            if [tuple(m.shape) for m in maps] != wanted:
                raise GantrainError(f"latent={request.latent} holds the noise maps of another generator (of other "
                                    f"sizes than this run's {wanted[-1][-1]} px layers): project the image again with "
                                    f"this run")
        return latent.unsqueeze(0), y, "w" if space == "w_plus" else space, maps
    z, y = _row_latents(request, classes, int(generator.latent_dim), rng)
    if not style:
        return z, y, "z", None
    with torch.no_grad():
        device = next(generator.parameters()).device
        w = generator.mapping(z.to(device), None if y is None else y.to(device)).cpu()
    return w, y, "w", None


def _edit(generator: torch.nn.Module, request: Request, classes: Optional[int], rng: torch.Generator,
          device: torch.device, style: bool) -> Batch:
    """Rows of samples (or one projected latent) moved along a direction, one column per strength; without a
    direction, the latents' own images."""
    from gantrain.eval.directions import load_directions

    from gantrain.nets.control import synthesize

    latents, y, space, noises = _start_latents(generator, request, classes, rng, style)
    strengths = [0.0]
    step = None
    if request.direction is not None:
        file, index = request.direction
        found = load_directions(file)
        if index >= len(found["directions"]):
            raise GantrainError(f"direction={file}:{index}: the file holds directions 0..{len(found['directions']) - 1}")
        if found["space"] != space and request.latent is not None and found["directions"].shape[1] == latents.shape[-1]:
            raise GantrainError(f"direction={file}:{index} is a direction in {found['space']}; latent={request.latent} "
                                f"is in {space}: project the image again with space={found['space']}")
        if found["space"] != space or found["directions"].shape[1] != latents.shape[-1]:
            raise GantrainError(f"direction={file}:{index} is a direction in {found['space']} of size "
                                f"{found['directions'].shape[1]}; this run's latents are {space} of size "
                                f"{latents.shape[-1]}: make the file from this run with gantrain-directions")
        step = found["directions"][index] * found["std"][index]
        a, b, k = request.strength
        strengths = torch.linspace(a, b, k).tolist()
    columns = []
    for s in strengths:
        moved = latents if step is None else latents + s * step
        moved, labels = moved.to(device), None if y is None else y.to(device)
        psi = 1.0 if request.truncation is None else request.truncation
        with torch.no_grad():
            if space == "z" and not style:
                out = generator(moved) if labels is None else generator(moved, labels)
            elif space == "z":  # a style-based run's projection in z: mapped, and truncated in w
                out = synthesize(generator, moved, labels, psi)
            else:
                ws = generator.truncate_w(moved, psi)  # (w_plus: each layer's w toward w_avg)
                out = generator.synthesis(ws, noise_mode="const") if noises is None else \
                    generator.synthesis(ws, noises=[n.to(device).expand(len(ws), -1, -1, -1) for n in noises])
        columns.append(out.float().cpu())
    samples = torch.stack(columns, dim=1).flatten(0, 1)
    return Batch(samples, latents.flatten(1).repeat_interleave(len(strengths), dim=0),
                 None if y is None else y.repeat_interleave(len(strengths)), len(strengths))


def _style_mix_figure(generator: torch.nn.Module, request: Request, classes: Optional[int], rng: torch.Generator,
                      device: torch.device) -> Batch:
    """The style-mixing figure as one grid: a blank corner, the column sources along the top, the row sources
    down the left, and each cell the row's styles with the column's on the chosen layers."""
    from gantrain.nets.control import parse_layers, style_mix, synthesize

    layers = parse_layers(request.layers, int(generator.num_ws))
    latent_dim = int(generator.latent_dim)
    row_z = torch.randn(request.rows, latent_dim, generator=rng)
    col_z = torch.randn(request.cols, latent_dim, generator=rng)
    row_y = col_y = None
    if classes is not None:
        if isinstance(request.labels, list):
            raise GantrainError("style_mix=true takes one label for every source (labels=3), or none for random ones")
        if request.labels is not None and not 0 <= request.labels < classes:
            raise GantrainError(f"label {request.labels} is outside this run's classes 0..{classes - 1}; "
                                f"give labels between 0 and {classes - 1}")
        if request.labels is None:
            row_y = torch.randint(classes, (request.rows,), generator=rng)
            col_y = torch.randint(classes, (request.cols,), generator=rng)
        else:
            row_y = torch.full((request.rows,), request.labels, dtype=torch.int64)
            col_y = torch.full((request.cols,), request.labels, dtype=torch.int64)
    elif request.labels is not None:
        plan_labels(request, classes)  # the one-line refusal of labels for an unconditional run
    to = (lambda t: None if t is None else t.to(device))  # noqa: E731
    cells = style_mix(generator, row_z.to(device), col_z.to(device), layers, request.truncation, to(row_y),
                      to(col_y)).float().cpu()
    rows = synthesize(generator, row_z.to(device), to(row_y), request.truncation).float().cpu()
    cols = synthesize(generator, col_z.to(device), to(col_y), request.truncation).float().cpu()
    blank = torch.ones_like(rows[:1])  # white
    grid = [blank, cols]
    for r in range(request.rows):
        grid += [rows[r:r + 1], cells[r]]
    return Batch(torch.cat(grid), torch.cat([row_z, col_z]), None, request.cols + 1)


# ---- writing ---------------------------------------------------------------------------------------


def check_new(out: Path, kind: str, overwrite: bool) -> None:
    """Refuse, before any sampling, an out that would replace a file (unless overwrite) or mix into a folder."""
    if kind != "folder" and out.is_dir():
        raise GantrainError(f"out={out} is a folder; give the name of a .{kind} file")
    if kind == "folder":
        if out.is_dir() and any(out.iterdir()):
            count = sum(1 for _ in out.iterdir())
            raise GantrainError(f"out={out} already holds {count} file(s); a folder of samples must be new or empty "
                                f"(two sample sets are never mixed): give another folder or empty this one")
    elif out.exists() and not overwrite:
        raise GantrainError(f"out={out} exists; choose another name, or overwrite=true to replace it")


def write_bytes(path: Path, data: bytes, overwrite: bool) -> None:
    """Write a file atomically; unless overwrite, never over an existing file, also one that another process
    makes meanwhile (GantrainError)."""
    from gantrain.checkpoint import atomic_write

    try:
        atomic_write(path, lambda f: f.write(data), exclusive=not overwrite)
    except FileExistsError:
        raise GantrainError(f"{path} was written by another process meanwhile and is kept as it is; choose another "
                            f"out=..., or overwrite=true to replace it") from None


def write(batch: Batch, out: Path, kind: Optional[str] = None, reference: Optional[Tensor] = None,
          overwrite: bool = False) -> Path:
    """Write a batch as a picture (.png), an array file (.npz) or a folder of PNGs; returns what was written.

    Unless overwrite, no existing file is replaced (see check_new)."""
    from gantrain.training.logger import png_bytes, scatter_image

    kind = kind or output_kind(out)
    points = batch.samples.dim() == 2
    try:
        if kind == "npz":
            out.parent.mkdir(parents=True, exist_ok=True)
            arrays: dict[str, Any] = {"samples": batch.samples.numpy().astype(np.float32), "z": batch.z.numpy()}
            if batch.labels is not None:
                arrays["labels"] = batch.labels.numpy().astype(np.int64)
            if batch.texts is not None:  # unicode strings: np.load reads them without pickling
                arrays["prompts"] = np.array(batch.texts, dtype=str)
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            write_bytes(out, buffer.getvalue(), overwrite)
        elif kind == "png":
            out.parent.mkdir(parents=True, exist_ok=True)
            if points:
                picture = scatter_image(batch.samples, reference if reference is not None else batch.samples[:0])
            else:
                import torchvision

                picture = torchvision.utils.make_grid(to_uint8(batch.samples), nrow=batch.nrow, padding=2)
            write_bytes(out, png_bytes(picture), overwrite)
        else:
            if points:
                raise GantrainError(f"out={out}: a folder of PNGs needs image samples, but this run's data are 2D "
                                    f"points; use out=NAME.png (a scatter plot) or out=NAME.npz")
            _write_folder(out, to_uint8(batch.samples), png_bytes)
    except OSError as exc:
        raise GantrainError(f"out={out}: could not write ({exc.strerror or exc}); choose another out=...") from None
    return out


def _write_folder(out: Path, images: Tensor, png_bytes: Any) -> None:
    """One PNG per image, written into a hidden folder first: an interrupted or failed write leaves no partial set
    (which FID tools would read as a whole one). A new out is that folder, made beside it, renamed (with the
    permissions the umask gives, and the group bit its parent passes on); an existing empty one (or a link to
    one) stays the folder it is: the hidden folder is made inside it, and the finished files are moved out of it."""
    import shutil
    import stat

    existing = out.is_dir()
    target = out.resolve() if existing else out  # a link's folder: the files go where it points
    if not existing:
        target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target if existing else target.parent))
    moved: list[Path] = []
    try:
        names = []
        for i, image in enumerate(images):
            names.append(f"{i:06d}.png")
            (partial / names[-1]).write_bytes(png_bytes(image))
        if not existing:
            umask = os.umask(0)
            os.umask(umask)
            inherited = partial.stat().st_mode & stat.S_ISGID  # a setgid parent's group, passed on
            partial.chmod((0o777 & ~umask) | inherited)  # mkdtemp's folder is the owner's alone
            os.replace(partial, target)
            return
        meanwhile = GantrainError(f"out={out} received files from elsewhere while the samples were drawn; it is kept "
                                  f"as it is: give another folder")
        if any(p != partial for p in target.iterdir()):  # check_new refused a folder holding files: these came meanwhile
            raise meanwhile
        for name in names:
            try:
                os.link(partial / name, target / name)  # never over a file of the same name that came meanwhile
            except FileExistsError:
                raise meanwhile from None
            except OSError:  # a file system without hard links
                if (target / name).exists():
                    raise meanwhile from None
                os.replace(partial / name, target / name)
            moved.append(target / name)
        shutil.rmtree(partial)
    except BaseException:
        for path in moved:  # all or nothing: the files already moved go again
            path.unlink(missing_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        raise


def to_uint8(samples: Tensor) -> Tensor:
    from gantrain.data.base import to_uint8_image

    return to_uint8_image(samples)


def reference_points(state: dict) -> Optional[Tensor]:
    """Up to 2,500 points of a 2D run's dataset (drawn from the mixture, which is cheap), else None."""
    try:
        from omegaconf import OmegaConf

        from gantrain.training.components import build_dataset
        from gantrain.config import with_added_keys

        dataset = build_dataset(OmegaConf.create(with_added_keys(state["config"])["dataset"]))
        if getattr(dataset, "kind", None) != "points" or getattr(dataset, "streamed", False):
            return None
        return dataset.tensor()[:2500].float().cpu()
    except Exception:  # a reference is a nicety: never fail the command for it
        return None


def _check_memory(generator: torch.nn.Module, request: Request, device: torch.device) -> None:
    """Refuse, before drawing, a count whose samples alone (held twice while they are gathered) exceed the memory
    free where they are gathered: the machine's own (every drawing path moves each chunk to the CPU)."""
    from gantrain.training.components import available_memory

    shape = tuple(getattr(generator, "out_shape", ()) or (2,))
    count = int(request.n) * (int(num_classes_of(generator) or 1) if request.per_class else 1) \
        * max(1, int(request.interpolate or 1))
    need = 2 * 4 * count * (math.prod(shape) + int(getattr(generator, "latent_dim", 0)))
    free = available_memory(torch.device("cpu"))
    if need > free:
        what = f"n={request.n} samples" if count == request.n else \
            f"{count} samples (n={request.n}, times the classes or interpolation steps)"
        raise GantrainError(f"{what} of shape {shape} need about {need / 2**30:.1f} GiB, more than the "
                            f"{free / 2**30:.1f} GiB of memory free; ask for fewer, or draw them in several commands "
                            f"with other seeds")


def sample(path: Union[str, Path], request: Request) -> Path:
    """Load a run's generator, draw what `request` asks and write it; returns the written path."""
    from gantrain.api import load_generator
    from gantrain.checkpoint import open_run_or_checkpoint

    path = Path(path)
    if not path.exists():
        raise GantrainError(f"{path}: no such run folder or checkpoint file; give a run folder (outputs/DATE/TIME) "
                            f"or one of its checkpoints/*.pt")
    kind = "folder" if request.out_folder else output_kind(request.out)
    if request.style_mix and kind != "png":  # the figure's cells mix two latents each, beside a blank corner
        raise GantrainError("style_mix=true draws one figure (sources along the top and down the left, their mixes "
                            "inside): give out=NAME.png")
    check_new(request.out, kind, request.overwrite)
    check_writable(request.out, kind)
    device = resolve_device(request.device)
    generator = load_generator(path, device=device, ema=request.ema)
    _check_memory(generator, request, device)
    try:
        batch = generate(generator, request, device)
    except (RuntimeError, MemoryError) as exc:  # what the estimate did not foresee (the other drawing modes)
        if isinstance(exc, MemoryError) or "allocate" in str(exc) or "out of memory" in str(exc):
            raise GantrainError(f"not enough memory on {device} to draw what was asked (n={request.n}); ask for fewer "
                                f"samples, or draw them in several commands with other seeds") from None
        raise
    if not bool(torch.isfinite(batch.samples).all()):
        raise GantrainError(f"the generator of {path} gave samples that are not finite (NaN or Inf), so none were "
                            f"written; a large truncation or strength can cause it (try values nearer 1), else the "
                            f"checkpoint itself is damaged: sample an earlier one")
    reference = None
    if batch.samples.dim() == 2 and kind == "png":  # 2D runs: small checkpoints, a cheap second read
        reference = reference_points(open_run_or_checkpoint(path)[1])
    try:
        return write(batch, request.out, kind, reference, request.overwrite)
    except MemoryError:  # the picture or array file of what was drawn (written atomically: nothing half-written)
        raise GantrainError(f"not enough memory to write {len(batch.samples)} samples to {request.out}; ask for fewer "
                            f"samples") from None


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point of the `gantrain-sample` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        sys.exit(0)
    try:
        if not args:
            raise GantrainError(f"give a run folder or checkpoint file: {PROG} RUN_OR_CHECKPOINT [key=value ...]; "
                                f"see {PROG} --help")
        path, request = parse_args(args)
        written = sample(path, request)
    except GantrainError as exc:
        message = " ".join(str(exc).split())
        print(f"{PROG}: error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
