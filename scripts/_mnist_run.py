"""What scripts/projection_quality.py and scripts/directions_quality.py share: an unconditional MNIST run's
generator, its image size, MNIST's training split at that size and the domain classifier of that size (trained once
and cached when missing)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


def open_mnist_run(run: str, root: Optional[str], script: str) -> tuple[Any, int, Any, Any, str]:
    """(the run's EMA generator, its image size, MNIST's training split at that size, the classifier of that size
    in eval mode, the data folder used: root, else the run's dataset.root, else ./data); a run this script cannot
    measure (conditional, not 1-channel MNIST-shaped images, unreadable) stops it in one line."""
    import gantrain
    from gantrain.checkpoint import open_run_or_checkpoint
    from gantrain.data.images import MNIST
    from gantrain.errors import GantrainError
    from gantrain.eval.classifier import load_classifier

    try:
        _, state = open_run_or_checkpoint(Path(run))
        shape = tuple(state.get("data_shape") or ())
        if state.get("data_kind", "image") != "image" or len(shape) != 3 or shape[0] != 1:
            raise SystemExit(f"{run}: a run of {state.get('data_kind', 'image')} data of shape {shape}; this script "
                             f"{script} runs of grey MNIST-like images")
        size = int(state["config"]["dataset"].get("image_size", 28))
        generator = gantrain.load_generator(run)
        if getattr(generator, "num_classes", None):
            raise SystemExit(f"{run}: a conditional run; this script {script} unconditional MNIST runs")
        root = root or state["config"]["dataset"].get("root") or "data"
        train = MNIST(root=root, image_size=size, download=False, train=True)
        classifier, _ = load_classifier(train)
    except GantrainError as exc:
        raise SystemExit(f"{run}: {exc}") from None
    return generator, size, train, classifier.eval(), str(root)
