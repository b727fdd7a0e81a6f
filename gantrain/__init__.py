"""gantrain: a config-driven trainer for generative adversarial networks."""
from gantrain.moved import install_aliases

install_aliases()  # the module names of 0.8.0 and earlier keep importing (gantrain.moved)

from gantrain.version import __version__  # noqa: E402

__all__ = ["compose", "load_generator", "load_translator", "project", "train", "__version__"]

_API = ("compose", "load_generator", "load_translator", "project", "train")


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """The Python API (gantrain.compose, gantrain.train, ...) and the subpackages (gantrain.data, ...), imported on
    first use: `import gantrain` itself, and so every console script's start, imports neither torch nor Hydra
    (seconds, in which a Ctrl-C is the script's to answer in one line)."""
    import importlib

    if name in _API:
        return getattr(importlib.import_module("gantrain.api"), name)
    if not name.startswith("__"):
        try:
            return importlib.import_module(f"gantrain.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gantrain.{name}":
                raise
    raise AttributeError(f"module 'gantrain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
