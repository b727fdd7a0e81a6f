"""Where the modules of gantrain 0.8.0 and earlier went (0.9.0 put them into layer folders).

Two things keep old names working, so that nothing a user has breaks:
- `current_target`: the `_target_` of a config saved by an earlier version (`gantrain.models.DCGANGenerator`)
  as today's path (`gantrain.nets.dcgan.DCGANGenerator`); saved configs are mapped on load
  (config.with_added_keys).
- `install_aliases` (run by `import gantrain`): `import gantrain.models`, `from gantrain.losses import ...`,
  `python -m gantrain.cli` and the like give today's module, the same module object (not a copy), so a
  user's scripts and Hydra's `_target_` lookup keep working.
A leaf: imports nothing of gantrain.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any, Optional

#: old module -> the module that holds its names today
MOVED_MODULES: dict[str, str] = {
    "gantrain.cli": "gantrain.commands.train",
    "gantrain.sample": "gantrain.commands.sample",
    "gantrain.export": "gantrain.commands.export",
    "gantrain.translate": "gantrain.commands.translate",
    "gantrain.sweep": "gantrain.commands.sweep",
    "gantrain.build": "gantrain.training.build",
    "gantrain.components": "gantrain.training.components",
    "gantrain.loop": "gantrain.training.loop",
    "gantrain.periodic": "gantrain.training.periodic",
    "gantrain.run": "gantrain.training.run",
    "gantrain.losses": "gantrain.training.losses",
    "gantrain.optim": "gantrain.training.optim",
    "gantrain.augment": "gantrain.training.augment",
    "gantrain.stats": "gantrain.training.stats",
    "gantrain.logger": "gantrain.training.logger",
    "gantrain.distributed": "gantrain.training.distributed",
    "gantrain.diagnosis": "gantrain.training.diagnosis",
    "gantrain.games": "gantrain.training.games",
    "gantrain.games.gan": "gantrain.training.games.gan",
    "gantrain.games.translation": "gantrain.training.games.translation",
    "gantrain.models": "gantrain.nets",
    "gantrain.sngan_models": "gantrain.nets.sngan",
    "gantrain.translation_models": "gantrain.nets.translation",
    "gantrain.translation_data": "gantrain.data.translation",
    "gantrain.stacked_mnist": "gantrain.data.stacked_mnist",
    "gantrain.evaluate": "gantrain.eval.evaluator",
    "gantrain.translation_eval": "gantrain.eval.translation",
    "gantrain.metrics": "gantrain.eval.metrics",
    "gantrain.classifier": "gantrain.eval.classifier",
}

#: every `_target_` the configs of earlier versions wrote -> where the class lives today
MOVED_TARGETS: dict[str, str] = {
    "gantrain.data.CIFAR10": "gantrain.data.images.CIFAR10",
    "gantrain.data.Digits": "gantrain.data.images.Digits",
    "gantrain.data.FashionMNIST": "gantrain.data.images.FashionMNIST",
    "gantrain.data.ImageFolder": "gantrain.data.images.ImageFolder",
    "gantrain.data.MNIST": "gantrain.data.images.MNIST",
    "gantrain.data.Grid": "gantrain.data.mixtures.Grid",
    "gantrain.data.Ring": "gantrain.data.mixtures.Ring",
    "gantrain.models.DCGANGenerator": "gantrain.nets.dcgan.DCGANGenerator",
    "gantrain.models.DCGANDiscriminator": "gantrain.nets.dcgan.DCGANDiscriminator",
    "gantrain.models.MLPGenerator": "gantrain.nets.mlp.MLPGenerator",
    "gantrain.models.MLPDiscriminator": "gantrain.nets.mlp.MLPDiscriminator",
}


def current_target(target: Any) -> Any:
    """Today's path of a `_target_` written by any version (unchanged when it is today's, or not a string)."""
    if not isinstance(target, str):
        return target
    if target in MOVED_TARGETS:
        return MOVED_TARGETS[target]
    module, _, name = target.rpartition(".")
    return f"{MOVED_MODULES[module]}.{name}" if module in MOVED_MODULES else target


def current_targets(node: Any) -> Any:
    """A plain config (dicts and lists) with every `_target_` in it mapped by current_target."""
    if isinstance(node, dict):
        return {k: (current_target(v) if k == "_target_" else current_targets(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [current_targets(v) for v in node]
    return node


class _Alias(importlib.abc.Loader):
    """Loads an old module name as today's module object."""

    def __init__(self, today: str):
        self.today = today

    def create_module(self, spec: Any) -> Any:
        module = importlib.import_module(self.today)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:
        module.__spec__ = self._spec  # the import system set the alias's spec on it: today's name stays

    def get_code(self, fullname: str) -> Any:  # `python -m gantrain.cli` runs today's module
        spec = importlib.util.find_spec(self.today)
        return spec.loader.get_code(self.today)  # type: ignore[union-attr]


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Optional[Any]:
        today = MOVED_MODULES.get(fullname)
        if today is None:
            return None
        real = importlib.util.find_spec(today)
        return importlib.util.spec_from_loader(fullname, _Alias(today), origin=real.origin if real else None)


def install_aliases() -> None:
    """Let the module names of earlier versions import (idempotent)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
