"""`gantrain-classifier DATASET`: train (or show) the cached domain classifier the metrics read."""
from __future__ import annotations

import logging
import sys
import time
from typing import Optional

from gantrain.commands.evaluate import _yaml_value
from gantrain.errors import GantrainError

# ---- gantrain-classifier ---------------------------------------------------------------------------


def classifier_main(argv: Optional[list[str]] = None) -> None:
    """`gantrain-classifier dataset=mnist [dataset.root=...] [steps=1000] [device=cpu] [overwrite=true]`: train
    and cache the domain classifier of a labelled dataset (the feature space of the classifier-space metrics);
    when one is cached already, show it (its accuracy and file) and keep it: overwrite=true trains a new one in
    its place, after which scores computed with the old one are no longer comparable with new ones."""
    from gantrain.api import compose
    from gantrain.eval.classifier import (TRAINING_STEPS, _training_lock, cache_dir, cache_key, load_classifier,
                                          save_classifier, train_classifier)
    from gantrain.commands.sample import resolve_device
    from gantrain.training.components import build_dataset

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(classifier_main.__doc__)
        return
    own = {k: v for k, v in (a.split("=", 1) for a in args if a.split("=", 1)[0] in ("steps", "device", "overwrite"))}
    overrides = [a for a in args if a.split("=", 1)[0] not in ("steps", "device", "overwrite")]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        bad = [a for a in overrides if not a.startswith("dataset")]
        if bad:
            raise GantrainError(f"unknown argument(s) {', '.join(bad)}; use dataset=..., dataset.KEY=..., steps=N, device=..., "
                                f"overwrite=true")
        overwrite = _yaml_value(own.get("overwrite", "false"))
        if not isinstance(overwrite, bool):
            raise GantrainError(f"overwrite={own.get('overwrite')} must be true or false")
        steps = _yaml_value(own.get("steps", str(TRAINING_STEPS)))
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise GantrainError(f"steps={own.get('steps')} must be a positive whole number")
        try:  # keys the dataset does not have: the nearest ones (Hydra would advise a +key that is then refused)
            chosen = compose([a for a in overrides if "." not in a.split("=", 1)[0]])
        except Exception:
            chosen = None
        for arg in overrides:
            key = arg.split("=", 1)[0]
            leaf = key.split(".", 1)[1] if "." in key else ""
            if chosen is not None and leaf and leaf.split(".")[0] not in [str(k) for k in chosen.dataset.keys()]:
                import difflib

                keys = [str(k) for k in chosen.dataset.keys()]
                near = difflib.get_close_matches(leaf, keys, n=2)
                hint = f"did you mean {' or '.join('dataset.' + n for n in near)}? " if near else ""
                raise GantrainError(f"unknown key {key}; {hint}this dataset's keys: {', '.join(k for k in keys if k != '_target_')}")
        try:
            cfg = compose(overrides)
        except Exception as exc:  # Hydra's own errors: an unknown option, a bad override
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GantrainError(first if " ".join(overrides) in first else f"{' '.join(overrides)}: {first}") from None
        dataset = build_dataset(cfg.dataset)
        if dataset.name == "stacked_mnist":
            raise GantrainError("stacked_mnist is scored with the MNIST classifier, channel by channel, not one of its "
                                "own 1000 classes: train that with gantrain-classifier dataset=mnist")
        device = resolve_device(own.get("device", "auto"))
        path = cache_dir() / f"{cache_key(dataset)}.pt"
        with _training_lock(path):  # not while an evaluation trains or reads it
            if path.is_file() and not overwrite:
                _, meta = load_classifier(dataset, train_if_missing=False)
                print(f"{cache_key(dataset)} classifier: test accuracy {100 * meta['test_accuracy']:.2f}%, cached in "
                      f"{path} (kept; overwrite=true trains a new one in its place, and scores made with this one are "
                      f"then not comparable with new ones)")
                return
            start = time.time()
            model, acc = train_classifier(dataset, steps=steps, device=str(device))
            path = save_classifier(model, dataset, acc)
    except GantrainError as exc:
        print(f"gantrain-classifier: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("gantrain-classifier: interrupted; the cache is as it was", file=sys.stderr)
        sys.exit(130)
    print(f"{cache_key(dataset)} classifier: test accuracy {100 * acc:.2f}% in {time.time() - start:.0f} s; saved {path}")
