"""What scripts/projection_quality.py and scripts/directions_quality.py share: an unconditional MNIST run's
generator, its image size, MNIST's training split at that size and the domain classifier of that size (trained once
and cached when missing)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def open_mnist_run(run: str, root: str, script: str) -> tuple[Any, int, Any, Any]:
    """(the run's EMA generator, its image size, MNIST's training split at that size, the classifier of that size
    in eval mode); a conditional run stops the script in one line."""
    import gantrain
    from gantrain.checkpoint import open_run_or_checkpoint
    from gantrain.data.images import MNIST
    from gantrain.eval.classifier import load_classifier

    _, state = open_run_or_checkpoint(Path(run))
    size = int(state["config"]["dataset"].get("image_size", 28))
    generator = gantrain.load_generator(run)
    if getattr(generator, "num_classes", None):
        raise SystemExit(f"{run}: a conditional run; this script {script} unconditional MNIST runs")
    train = MNIST(root=root, image_size=size, download=False, train=True)
    classifier, _ = load_classifier(train)
    return generator, size, train, classifier.eval()
