"""`gantrain-export RUN_OR_CHECKPOINT format=safetensors|torchscript|onnx [out=PATH] [ema=true] [device=cpu]`:
write a trained generator in a form other programs load.

RUN_OR_CHECKPOINT is a run folder (its newest good checkpoint) or a checkpoint file (.pt).

Options (key=value):
  format=...        safetensors: the weights (OUT.safetensors) plus OUT.json beside it, with what rebuilds the
                                 generator (its config, data shape and kind, classes, gantrain version);
                                 gantrain.commands.export.load_exported(OUT) loads the pair back
                    torchscript: torch.jit.trace of the generator (OUT.pt): torch.jit.load(OUT)(z) or (z, labels)
                                 (a style-based generator is traced with each layer's fixed noise input)
                    onnx:        ONNX graph (OUT.onnx), inputs `z` (B, latent_dim) float32 and, for conditional
                                 generators, `labels` (B,) int64 (text runs: `tokens` (B, length) int64, the
                                 caption's token ids, with the encoder inside); output `samples`; B is free
                    (a text run's TorchScript and ONNX programs take token ids: OUT.vocab.json beside them holds
                    the words, token id = position, and how captions are split)
  out=PATH          the file to write (default generator.safetensors / generator.pt / generator.onnx); its
                    suffix must fit the format
  ema=true          export the EMA generator when the run kept one (ema=false: the raw generator)
  device=cpu        where to trace it (cpu | cuda | cuda:N | auto); a traced program keeps that device
  overwrite=false   true: replace files of the same names (out, and for safetensors the .json beside it)

The generator is exported in eval mode. safetensors and onnx need `pip install 'gantrain[export]'`.

Examples:
  gantrain-export outputs/2026-11-27/10-00-00 format=onnx out=generator.onnx
  gantrain-export RUN format=safetensors out=weights/g.safetensors     # + weights/g.json
"""
from __future__ import annotations

import copy
import difflib
import inspect
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from gantrain.errors import GantrainError
from gantrain.nets.base import fixed_noise
from gantrain.commands.sample import check_no_spaced_option, check_writable, resolve_device

PROG = "gantrain-export"
OPTIONS = ("format", "out", "ema", "device", "overwrite")
FORMATS = {"safetensors": (".safetensors",), "torchscript": (".pt", ".pth", ".ts", ".torchscript"), "onnx": (".onnx",)}
DEFAULT_OUT = {"safetensors": "generator.safetensors", "torchscript": "generator.pt", "onnx": "generator.onnx"}
SIDECAR_FORMAT = "gantrain-generator"
INSTALL = "pip install 'gantrain[export]'"


def _require(module: str, purpose: str) -> Any:
    """Import an optional dependency of the export extra, or say in one line how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise GantrainError(f"{purpose} needs the {module.split('.')[0]} package, which is not installed; "
                            f"run: {INSTALL}") from None


def _flag(key: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise GantrainError(f"{key}={text} must be true or false")


def _writable_parent(out: Path) -> None:
    """Refuse an out whose folder cannot be made or written, before anything is loaded."""
    check_writable(out, "file")
    if out.is_dir():
        raise GantrainError(f"out={out} is a folder; give a file name, e.g. out={out / 'generator'}{out.suffix}")


def vocabulary_of(path: Union[str, Path]) -> Path:
    """The vocabulary file written beside a TorchScript or ONNX export of a text run: OUT plus .vocab.json (its own
    name per export, so that exports of one run in several formats side by side keep theirs and the safetensors
    export its OUT.json)."""
    path = Path(path)
    return path.with_name(path.name + ".vocab.json")


def sidecar_of(path: Union[str, Path]) -> Path:
    """The JSON file beside an exported .safetensors file."""
    return Path(path).with_suffix(".json")


def _atomic(path: Path, write: Callable[[str], None], overwrite: bool = True) -> None:
    """write(tmp_name) in path's folder, then rename over path (a failure leaves an existing file as it was).

    Unless overwrite, an existing file is never replaced, also one that another process makes meanwhile.
    Permissions follow the umask."""
    from gantrain.checkpoint import file_mode

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise GantrainError(f"{path} was written by another process meanwhile and is kept as it is; choose "
                                    f"another out=..., or overwrite=true to replace it") from None
            os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _num_classes(generator: nn.Module) -> Optional[int]:
    classes = getattr(generator, "num_classes", None)
    return int(classes) if classes else None


def example_inputs(generator: nn.Module, batch: int = 2, device: Union[str, torch.device] = "cpu") -> tuple:
    """(z,) or (z, labels) of a batch, as the exported programs take them."""
    rng = torch.Generator().manual_seed(0)
    z = torch.randn(batch, int(generator.latent_dim), generator=rng).to(device)
    if hasattr(generator, "tokenize"):  # a text run's generator: (z, caption token ids (B, length))
        prompts = (list(generator.prompts) or ["a"]) * batch
        return z, generator.tokenize(prompts[:batch]).to(device)
    classes = _num_classes(generator)
    if classes is None:
        return (z,)
    return z, torch.randint(classes, (batch,), generator=rng, dtype=torch.int64).to(device)


def export_generator(generator: nn.Module, fmt: str, out: Union[str, Path], meta: Optional[dict] = None,
                     device: Union[str, torch.device] = "cpu", overwrite: bool = True) -> list[Path]:
    """Write `generator` (put in eval mode, on `device`) as fmt to out; returns the files written.

    overwrite=False never replaces an existing file (GantrainError instead).

    meta (safetensors): what goes into the JSON beside the weights: `generator` (its config node),
    `data_shape`, `data_kind` and any provenance; `num_classes` and the gantrain version are added here.
    """
    if fmt not in FORMATS:
        raise GantrainError(f"format={fmt} is not one of {', '.join(FORMATS)}")
    out = Path(out)
    generator = generator.to(device).eval()
    if fmt == "safetensors":
        return _export_safetensors(generator, out, meta or {}, overwrite)
    if any(getattr(m, "noise_mode", None) == "random" for m in generator.modules()):  # a style-based generator
        generator = fixed_noise(copy.deepcopy(generator))  # traced with its fixed noise inputs: deterministic
    inputs = example_inputs(generator, device=device)
    vocabulary: list[Path] = []
    if hasattr(generator, "tokenize"):  # a text generator: its modules without the vocabulary (not a tensor),
        from gantrain.nets.text import TextProgram  # which goes into OUT.vocab.json: what maps words to token ids

        vocabulary = [_write_vocabulary(generator, out, overwrite)]
        generator = TextProgram(generator).eval()
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notices (torch 2.10+)
            traced = torch.jit.trace(generator, inputs)
            _atomic(out, lambda tmp: torch.jit.save(traced, tmp), overwrite)
        return [out, *vocabulary]
    return _export_onnx(generator, out, inputs, overwrite) + vocabulary


def _write_vocabulary(generator: nn.Module, out: Path, overwrite: bool) -> Path:
    """OUT.vocab.json beside a traced text generator: its words (token id = position), caption length and tokeniser."""
    words = list(generator.words) + list(getattr(generator, "extra_words", []))  # (rows a CLIP run embedded since)
    info = {"format": "gantrain-vocabulary", "words": words, "length": int(generator.length),
            "precomputed": bool(generator.precomputed),
            "tokenizer": "lower-case the caption, split it into runs of letters and digits (regex \\w+), map each "
                         "word to its position in words (1 when absent: unknown), cut at length, pad with 0"
                         if not generator.precomputed else "a caption's token is its position in words + 1"}
    path = vocabulary_of(out)
    _atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=1) + "\n"), overwrite)
    return path


def _export_safetensors(generator: nn.Module, out: Path, meta: dict, overwrite: bool) -> list[Path]:
    from gantrain.version import __version__

    st = _require("safetensors.torch", "format=safetensors")
    # tensors only: a text generator's vocabulary (its extra state) goes into the JSON (meta["text"])
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in generator.state_dict().items()
               if isinstance(tensor, torch.Tensor)}
    info = {"format": SIDECAR_FORMAT, "gantrain_version": __version__, "weights": out.name,
            "num_classes": _num_classes(generator), "latent_dim": int(generator.latent_dim),
            "out_shape": [int(s) for s in getattr(generator, "out_shape", ())], **meta}
    info["num_classes"] = _num_classes(generator)  # the model's own count wins over a stale meta entry
    for key in ("generator", "data_shape", "data_kind"):
        if key not in info:
            raise GantrainError(f"cannot export safetensors without `{key}` in the metadata (what rebuilds the generator)")
    text = json.dumps(info, indent=2, default=str) + "\n"
    sidecar = sidecar_of(out)
    if not overwrite and sidecar.exists():
        raise GantrainError(f"{sidecar} exists; choose another out=..., or overwrite=true to replace it")
    _atomic(out, lambda tmp: st.save_file(weights, tmp, metadata={"format": SIDECAR_FORMAT, "gantrain_version": __version__}),
            overwrite)
    _atomic(sidecar, lambda tmp: Path(tmp).write_text(text), overwrite)
    return [out, sidecar]


def _export_onnx(generator: nn.Module, out: Path, inputs: tuple, overwrite: bool) -> list[Path]:
    onnx = _require("onnx", "format=onnx")
    names = (["z", "tokens"] if inputs[-1].dim() == 2 and len(inputs) == 2 else ["z", "labels"])[: len(inputs)]
    axes = {name: {0: "batch"} for name in names + ["samples"]}
    options: dict[str, Any] = {"input_names": names, "output_names": ["samples"], "dynamic_axes": axes,
                               "opset_version": 17, "do_constant_folding": True}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        options["dynamo"] = False  # the TorchScript-based exporter: dynamic_axes, and no onnxscript needed

    def write(tmp: str) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
            torch.onnx.export(generator, inputs, tmp, **options)
        onnx.checker.check_model(tmp)

    try:
        _atomic(out, write, overwrite)
    except GantrainError:
        raise
    except Exception as exc:  # an operator the exporter cannot translate, say
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GantrainError(f"ONNX export failed ({type(exc).__name__}: {first[:200]}); "
                            f"try format=torchscript or format=safetensors") from None
    return [out]


def load_exported(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> nn.Module:
    """The generator of an exported .safetensors file (and the .json beside it), in eval mode on `device`; a
    style-based one uses its fixed noise inputs, so that it draws what the TorchScript and ONNX exports draw."""
    from gantrain.training.components import build_generator

    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    sidecar = sidecar_of(path)
    other = {".pt": ("TorchScript", "torch.jit.load(path)"), ".onnx": ("ONNX", "onnxruntime.InferenceSession(path)")}
    if path.suffix in other and path.is_file():
        kind, loader = other[path.suffix]
        raise GantrainError(f"{path} is a {kind} export; load_exported reads the .safetensors exports (load this one "
                            f"with {loader})")
    if not path.is_file():
        what = ("is a folder" if path.is_dir() else "does not exist")
        hint = " (a run folder loads with gantrain.load_generator)" if (path / "checkpoints").is_dir() else ""
        raise GantrainError(f"{path} {what}; give the .safetensors file written by gantrain-export{hint}")
    if not sidecar.is_file():
        raise GantrainError(f"{sidecar} is missing: gantrain-export writes it beside {path.name} and the generator "
                            f"cannot be rebuilt without it; export again")
    st = _require("safetensors.torch", "loading a .safetensors export")
    try:
        info = json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise GantrainError(f"{sidecar} is unreadable ({exc}); export again") from None
    if not isinstance(info, dict) or info.get("format") != SIDECAR_FORMAT:
        raise GantrainError(f"{sidecar} was not written by gantrain-export; export again")
    extra = {}
    classes = info.get("num_classes")
    if classes is not None:
        if "num_classes" not in inspect.signature(build_generator).parameters:
            node = dict(info["generator"])
            node.setdefault("num_classes", classes)  # this gantrain takes it only as a config key
            info["generator"] = node
        else:
            extra["num_classes"] = classes
    text = info.get("text")
    if text:  # a text run's generator, its vocabulary from the JSON
        from gantrain.training.games.text import text_networks

        generator, _ = text_networks(info["generator"], None, tuple(info["data_shape"]), text)
    else:
        generator = build_generator(info["generator"], tuple(info["data_shape"]), info["data_kind"], **extra)
    try:
        weights = st.load_file(str(path))
    except Exception as exc:
        raise GantrainError(f"{path} is not a readable safetensors file ({exc}); export again") from None
    if text:
        weights["_extra_state"] = {"words": text["words"], "length": text["length"], "prompts": text["prompts"],
                                   "pool": text.get("pool", [])}
    try:
        generator.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise GantrainError(f"{path} does not fit the generator described in {sidecar.name} ({first[:200]})") from None
    return fixed_noise(generator.to(device).eval())  # a style-based generator: its fixed noise inputs, as the
                                                     # TorchScript and ONNX exports draw with


def parse_args(args: Sequence[str]) -> tuple[Path, str, Path, bool, str, bool]:
    """(run or checkpoint, format, out, ema, device, overwrite) of a command line; GantrainError for every mistake."""
    check_no_spaced_option(args)
    paths = [a for a in args if "=" not in a]
    options = {}
    for arg in args:
        if "=" in arg:
            key, value = arg.split("=", 1)
            options[key.strip()] = value.strip().strip("'\"")
    unknown = [k for k in options if k not in OPTIONS] + [p for p in paths if p.startswith("-")]
    if unknown:
        near = difflib.get_close_matches(unknown[0].lstrip("-"), OPTIONS, n=1)
        hint = f"did you mean {near[0]}=? " if near else ""
        raise GantrainError(f"unknown option {unknown[0]}; {hint}valid options: {'=, '.join(OPTIONS)}= (see {PROG} --help)")
    if len(paths) != 1:
        raise GantrainError(f"give exactly one run folder or checkpoint file (got {len(paths)}): "
                            f"{PROG} RUN_OR_CHECKPOINT format=... out=PATH")
    if "out" in options and not options["out"]:
        raise GantrainError("out= is empty; give the file to write, e.g. out=generator.onnx (or leave out= out for "
                            "generator.<format> in the current folder)")
    fmt = options.get("format", "").lower()
    if fmt not in FORMATS:
        shown = f"format={options['format']} is not a format" if "format" in options else "no format= given"
        raise GantrainError(f"{shown}; give format=safetensors, format=torchscript or format=onnx")
    out = Path(options.get("out") or DEFAULT_OUT[fmt]).expanduser()
    if out.is_dir():
        raise GantrainError(f"out={out} is a folder; give a file name, e.g. out={out / DEFAULT_OUT[fmt]}")
    if out.suffix.lower() not in FORMATS[fmt]:
        raise GantrainError(f"out={out} does not end in {' or '.join(FORMATS[fmt])} as format={fmt} files do; "
                            f"use out={out.with_suffix(FORMATS[fmt][0])}")
    ema = _flag("ema", options.get("ema", "true"))
    overwrite = _flag("overwrite", options.get("overwrite", "false"))
    return Path(paths[0]).expanduser(), fmt, out, ema, options.get("device", "cpu"), overwrite


def export(path: Union[str, Path], fmt: str, out: Union[str, Path], ema: bool = True,
           device: Union[str, torch.device] = "cpu", overwrite: bool = False) -> list[Path]:
    """Export the generator of a run folder or checkpoint; returns the files written (existing files are replaced
    only with overwrite)."""
    from gantrain.api import load_generator
    from gantrain.checkpoint import game_meta, open_run_or_checkpoint

    path, out = Path(path), Path(out)
    if not path.exists():
        raise GantrainError(f"{path}: no such run folder or checkpoint file; give a run folder (outputs/DATE/TIME) "
                            f"or one of its checkpoints/*.pt")
    _writable_parent(out)
    written = [out, sidecar_of(out)] if fmt == "safetensors" else [out]
    # (a text run's vocabulary file too: whether one is written is known after loading)
    folders = [f for f in written + ([] if fmt == "safetensors" else [vocabulary_of(out)]) if f.is_dir()]
    if folders:
        raise GantrainError(f"{folders[0]} is a folder, where the export would write a file; choose another out=...")
    existing = [f for f in written if f.exists()]
    if existing and not overwrite:
        raise GantrainError(f"{' and '.join(map(str, existing))} exist{'s' if len(existing) == 1 else ''}; choose another "
                            f"out=..., or overwrite=true to replace {'it' if len(existing) == 1 else 'them'}")
    if fmt in ("safetensors", "onnx"):  # say so before loading anything
        _require("safetensors.torch" if fmt == "safetensors" else "onnx", f"format={fmt}")
    device = resolve_device(str(device))
    checkpoint, state = open_run_or_checkpoint(path)
    generator = load_generator(checkpoint, device=device, ema=ema)
    if hasattr(generator, "tokenize") and fmt != "safetensors" and vocabulary_of(out).exists() and not overwrite:
        raise GantrainError(f"{vocabulary_of(out)} exists (a text run's vocabulary goes there); choose another out=..., or "
                            f"overwrite=true to replace it")
    meta = {"generator": state["config"]["generator"], "data_shape": list(state["data_shape"]),
            "data_kind": state["data_kind"], "checkpoint": str(Path(checkpoint).resolve()), "step": state.get("step"),
            "ema": bool(ema and "generator" in state.get("ema", {}))}
    if game_meta(state).get("text"):
        meta["text"] = game_meta(state)["text"]
    if game_meta(state).get("class_names"):  # label k is the run's k-th class folder
        meta["class_names"] = game_meta(state)["class_names"]
    return export_generator(generator, fmt, out, meta, device, overwrite)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point of the `gantrain-export` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        sys.exit(0)
    try:
        if not args:
            raise GantrainError(f"give a run folder or checkpoint file: {PROG} RUN_OR_CHECKPOINT format=... out=PATH; "
                                f"see {PROG} --help")
        path, fmt, out, ema, device, overwrite = parse_args(args)
        written = export(path, fmt, out, ema, device, overwrite)
    except GantrainError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
    for file in written:
        print(f"wrote {file}")


if __name__ == "__main__":
    main()
