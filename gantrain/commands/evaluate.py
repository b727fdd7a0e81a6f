"""`gantrain-eval RUN [key=value ...]`: score a run's generator (or translator) and write eval.json."""
from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from gantrain.errors import GantrainError
from gantrain.nets.base import fixed_noise

# ---- gantrain-eval ---------------------------------------------------------------------------------


def _yaml_value(text: str) -> Any:
    return OmegaConf.create(f"v: {text}").v


def eval_main(argv: Optional[list[str]] = None) -> None:
    """`gantrain-eval RUN_FOLDER_OR_CHECKPOINT [metrics=[fid_classifier,precision]] [num_samples=N] [device=cpu]
    [dataset.root=DIR] [ema=true] [seed=0] [text_prompts=20]`: print a table of scores with their real-vs-real floor, write eval.json.

    Image translation runs (pix2pix, CycleGAN) are scored on their dataset's test split (metrics l1, psnr, ssim,
    label_acc, fid_classifier, as they apply; num_samples: test images translated, 2000 by default), each
    score next to its floor (the untranslated input; for fid_classifier, real vs real). Text runs on mnist_captions
    or fashion_captions also get text_class_agreement and text_<attribute>_spearman on held-out phrasings, next to
    what the test images score (text_prompts: held-out prompts per class, 10 samples each, and prompt triples per
    class and attribute; 20 by default)."""
    from gantrain.api import load_generator, load_translator
    from gantrain.checkpoint import game_meta, open_run_or_checkpoint, run_folder_of
    from gantrain.config import with_added_keys
    from gantrain.eval.evaluator import Evaluator
    from gantrain.commands.sample import resolve_device
    from gantrain.training.components import build_dataset

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or any(a in ("-h", "--help") for a in args):
        print(eval_main.__doc__)
        sys.exit(0 if args else 2)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from gantrain.commands.sample import check_no_spaced_option

        check_no_spaced_option(args)
        paths = [a for a in args if "=" not in a]
        if len(paths) != 1 or not paths[0].strip():
            raise GantrainError("give exactly one run folder or checkpoint file")
        path = Path(paths[0])
        options = dict(a.split("=", 1) for a in args if "=" in a)
        own = {k: options.pop(k) for k in ("metrics", "num_samples", "device", "ema", "seed", "text_prompts")
               if k in options}
        bad = [k for k in options if not k.startswith("dataset.")]
        if bad:
            raise GantrainError(f"unknown option(s) {', '.join(bad)}; use metrics=, num_samples=, device=, ema=, seed=, "
                                f"text_prompts=, dataset.KEY=")
        numbers = {}
        for key in ("num_samples", "seed", "text_prompts"):
            if key in own:
                value = _yaml_value(own[key])
                if not isinstance(value, int) or isinstance(value, bool):
                    raise GantrainError(f"{key}={own[key]} must be a whole number")
                numbers[key] = value
        if numbers.get("text_prompts", 1) < 1:
            raise GantrainError(f"text_prompts={numbers['text_prompts']} must be at least 1 (prompts per class)")
        if not 0 <= numbers.get("seed", 0) < 2 ** 63:
            raise GantrainError(f"seed={numbers['seed']} must be a whole number from 0 to 2**63 - 1")
        ema_value = _yaml_value(own.get("ema", "true"))
        if not isinstance(ema_value, bool):
            raise GantrainError(f"ema={own['ema']} must be true (the EMA generator, when the run keeps one) or false")
        checkpoint, state = open_run_or_checkpoint(path)
        out_dir = run_folder_of(Path(checkpoint))  # a checkpoints/ folder or file given: eval.json beside the run's
        dataset_cfg = OmegaConf.create(with_added_keys(state["config"])["dataset"])  # as the run trained it
        for key, value in options.items():
            OmegaConf.update(dataset_cfg, key[len("dataset."):], _yaml_value(value))
        dataset = build_dataset(dataset_cfg)  # the full dataset, also for a run trained on dataset.subset
        device = resolve_device(own.get("device", "auto"))
        metrics: Any = own.get("metrics", "auto")
        if metrics != "auto":
            metrics = [m.strip() for m in metrics.strip("[]").split(",") if m.strip()]
        translation = game_meta(state).get("translation")
        use_ema = ema_value
        if translation:
            from gantrain.eval.translation import TranslationEvaluator

            evaluator: Any = TranslationEvaluator(dataset, metrics, device, numbers.get("num_samples", 2000),
                                                  numbers.get("seed", 0), translation["kind"])
            network: Any = load_translator(checkpoint, device=device, ema=use_ema)
        else:
            text = game_meta(state).get("text")
            evaluator = Evaluator(dataset, metrics, numbers.get("num_samples"), device, numbers.get("seed", 0),
                                  conditional=bool(state["config"].get("conditional", False)) and not text)
            # fresh noise inputs, as the evaluations during training draw (StyleGAN2's metrics do the same)
            network = fixed_noise(load_generator(checkpoint, device=device, ema=use_ema), fixed=False)
        scored_text = not translation and text and getattr(dataset, "scheme", None) is not None
        if "text_prompts" in numbers and not scored_text:
            raise GantrainError("text_prompts= sets the text scores of a text run on mnist_captions or fashion_captions; "
                                "this run has none: leave it out")
        made = tuple(network.out_shape) if hasattr(network, "out_shape") else None
        if made is not None and tuple(getattr(dataset, "shape", made)) != made:
            raise GantrainError(f"the run's generator makes samples of shape {made}, the data given is {tuple(dataset.shape)}: "
                                f"leave dataset.image_size and dataset.channels as the run trained them")
        results = evaluator(network)
        if scored_text:
            # a text run on an offline captioned set: agreement with held-out prompts, next to the test images' own
            from gantrain.eval.classifier import load_classifier
            from gantrain.eval.text import text_floor, text_scores

            classifier, _ = load_classifier(dataset, device=str(device))
            scores, text_details = text_scores(network, dataset, classifier, numbers.get("text_prompts", 20),
                                                seed=numbers.get("seed", 0), device=device)
            results.update(scores)
            evaluator.floor.update(text_floor(dataset, classifier, device))
            evaluator.details.update(text_details)
        from gantrain.commands.start import interrupted

        if interrupted():  # a Ctrl-C that a library's handler lost on the way: nothing is written
            raise KeyboardInterrupt
    except GantrainError as exc:
        print(f"gantrain-eval: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("gantrain-eval: interrupted; nothing was written", file=sys.stderr)
        sys.exit(130)
    report = {
        "checkpoint": str(Path(checkpoint).resolve()),
        "step": state["step"],
        "generator": "ema" if use_ema and "generator" in state.get("ema", {}) else "generator",
        "metrics": results,
        "real_vs_real_floor": {k: v for k, v in evaluator.floor.items() if k in results},
        "provenance": evaluator.provenance,
    }
    width = max([18, *(len(name) for name in results)])
    print(f"{'metric':{width}s} {'value':>12s} {'floor' if translation else 'real-vs-real':>14s}")
    for name, value in results.items():
        floor = evaluator.floor.get(name)
        print(f"{name:{width}s} {value:12.4f} {floor if floor is None else format(floor, '14.4f'):>14}")
    for name, value in results.items():  # a correlation with no variation to rank: say why it has no value
        if name.startswith("text_") and name.endswith("_spearman") and not math.isfinite(value):
            attribute = name[len("text_"):-len("_spearman")]
            print(f"{name} nan: the measured {attribute} of the samples did not change with the {attribute} words "
                  f"within any class (a rank correlation is undefined there): the generator ignores those words")
    if translation:
        report["translation"] = {"kind": translation["kind"], "direction": evaluator.direction, **evaluator.details}
        for name, value in evaluator.details.items():
            print(f"{name}: {value:.4f}")
    elif evaluator.details:  # per-class values of the conditional metrics (None: a class without samples)
        report["per_class"] = evaluator.details
        for name, values in evaluator.details.items():
            if name == "example_prompts":
                print(f"{name}: {'; '.join(values)}")
                continue
            print(f"{name}: " + ", ".join(f"{c}: {'-' if v is None else format(v, '.4g')}" for c, v in enumerate(values)))
    target = out_dir / "eval.json"
    report["settings"] = {"num_samples": evaluator.num_samples, "seed": numbers.get("seed", 0)}
    if scored_text:  # held-out prompts per class of the text scores
        report["settings"]["text_prompts"] = numbers.get("text_prompts", 20)
    report = _merge_eval(target, report)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_strict(report), indent=2, allow_nan=False, default=str) + "\n")
    tmp.replace(target)
    print(f"wrote {target}")


def _same_checkpoint(old: Any, new: str) -> bool:
    """Whether eval.json's recorded checkpoint is `new` (absolute): versions before 0.13.1 recorded the path as
    typed, often relative to a folder not known now; such a path is the same when it is new's trailing part."""
    if not isinstance(old, str) or not old:
        return False
    if old == new:
        return True
    import os

    normal = os.path.normpath(old)
    return not os.path.isabs(normal) and not normal.startswith("..") and Path(new).match(normal)


def _strict(value: Any) -> Any:
    """value with every non-finite float written as the string "nan", "inf" or "-inf" (as metrics.jsonl has them):
    eval.json stays strict JSON, which has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _merge_eval(target: Path, report: dict) -> dict:
    """The report to write as eval.json: merged with the one there when both score the same samples (same
    checkpoint, generator, sample count and seed); otherwise the old file is kept as eval.<step>.<n>.json."""
    if not target.is_file():
        return report
    try:
        old = json.loads(target.read_text())
    except (OSError, ValueError):
        old = None
    same = isinstance(old, dict) and all(old.get(k) == report[k] for k in ("step", "generator", "settings")) and \
        _same_checkpoint(old.get("checkpoint"), report["checkpoint"])
    if same:
        assert isinstance(old, dict)
        for key in ("metrics", "real_vs_real_floor", "provenance"):
            report[key] = {**old.get(key, {}), **report[key]}
        return report
    n = 0
    while (kept := target.with_name(f"eval.{(old or {}).get('step', 'old')}.{n}.json")).exists():
        n += 1
    target.rename(kept)
    print(f"kept the previous evaluation as {kept}")
    return report
