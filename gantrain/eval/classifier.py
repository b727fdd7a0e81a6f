"""A small classifier of a labelled dataset (MNIST, Fashion-MNIST, digits): the feature space of the
domain metrics. `gantrain-classifier dataset=mnist` trains it once and caches it by dataset and size.
"""
from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.data.base import Dataset, normalize
from gantrain.data.images import LabelledImages
from gantrain.errors import GantrainError

log = logging.getLogger("gantrain")
FORMAT = "gantrain-classifier"


class DomainClassifier(nn.Module):
    """Two conv blocks and a 128-unit hidden layer; `features` gives that layer, (N, 128)."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int = 10, width: int = 32):
        super().__init__()
        channels, size = in_shape[0], in_shape[-1]
        self.in_shape, self.num_classes = tuple(in_shape), num_classes
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * (size // 4) ** 2, 128), nn.ReLU(True),
        )
        self.head = nn.Linear(128, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


#: Adam steps of a domain classifier (what load_classifier trains and gantrain-classifier's default)
TRAINING_STEPS = 1000


def cache_dir() -> Path:
    """Where trained classifiers live: $GANTRAIN_CACHE, else ~/.cache/gantrain."""
    return Path(os.environ.get("GANTRAIN_CACHE") or Path.home() / ".cache" / "gantrain") / "classifiers"


def cache_key(dataset: Dataset) -> str:
    """The classifier's name: its images' dataset (`domain`: a captioned MNIST shares MNIST's) and size."""
    return f"{getattr(dataset, 'domain', None) or dataset.name}-{dataset.shape[-1]}px"


def weights_sha256(model: nn.Module) -> str:
    """A hash of the model's weights (provenance of every score computed with it)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def accuracy(model: nn.Module, split: LabelledImages, device: torch.device, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    for images, labels in zip(split.tensor().split(batch), split.labels().split(batch)):
        correct += int((model(normalize(images.to(device))).argmax(1).cpu() == labels).sum())
    return correct / len(split)


def train_classifier(dataset: Any, steps: int = TRAINING_STEPS, batch_size: int = 128, device: str = "cpu", seed: int = 0) -> tuple[DomainClassifier, float]:
    """Train on dataset.split(train=True) with Adam; returns the model and its test accuracy (0-1)."""
    if not hasattr(dataset, "split"):
        raise GantrainError(f"{dataset.name} has no class labels; the domain classifier needs mnist, fashion_mnist or digits")
    train, test = dataset.split(train=True), dataset.split(train=False)
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    # channels-last: the same network and steps, about 1.6x faster to train on a CPU (oneDNN's convolutions)
    model = DomainClassifier(tuple(train.shape), int(train.labels().max()) + 1).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    images, labels = train.tensor().to(dev), train.labels().to(dev)
    model.train()
    for step in range(steps):
        index = torch.randint(len(images), (batch_size,), generator=gen).to(dev)
        batch = normalize(images[index]).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(batch), labels[index])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval(), accuracy(model, test, dev)


def save_classifier(model: DomainClassifier, dataset: Dataset, test_accuracy: float) -> Path:
    from gantrain.checkpoint import atomic_save

    path = cache_dir() / f"{cache_key(dataset)}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"format": FORMAT, "in_shape": list(model.in_shape), "num_classes": model.num_classes,
                 "state": model.state_dict(), "test_accuracy": test_accuracy, "dataset": cache_key(dataset)}, path)
    return path


@contextmanager
def _training_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive OS lock on <path>.lock while the classifier at path is trained (none where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load_classifier(dataset: Dataset, train_if_missing: bool = True, device: str = "cpu") -> tuple[DomainClassifier, dict]:
    """The cached classifier of a dataset (trained and cached first when missing and allowed)."""
    path = cache_dir() / f"{cache_key(dataset)}.pt"
    if not path.is_file():
        if not train_if_missing:
            raise GantrainError(f"no classifier for {cache_key(dataset)} in {path.parent}; train it with "
                                f"gantrain-classifier dataset=<its option>")
        with _training_lock(path):  # processes evaluating at once (a parallel sweep) train it once between them
            if not path.is_file():
                log.info("training the %s classifier once (cached in %s)", cache_key(dataset), path)
                model, acc = train_classifier(dataset, device=device)
                save_classifier(model, dataset, acc)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        assert saved.get("format") == FORMAT
        model = DomainClassifier(tuple(saved["in_shape"]), saved["num_classes"])
        model.load_state_dict(saved["state"])
    except Exception:
        raise GantrainError(f"classifier cache {path} is damaged; delete it and run gantrain-classifier again") from None
    meta = {"feature_extractor": f"DomainClassifier({saved['dataset']})", "weights_sha256": weights_sha256(model),
            "test_accuracy": saved["test_accuracy"]}
    return model.to(device).eval(), meta
