"""gantrain: a config-driven trainer for generative adversarial networks."""
from gantrain.moved import install_aliases

install_aliases()  # the module names of 0.8.0 and earlier keep importing (gantrain.moved)

from gantrain.version import __version__  # noqa: E402
from gantrain.api import compose, load_generator, load_translator, project, train  # noqa: E402

__all__ = ["compose", "load_generator", "load_translator", "project", "train", "__version__"]
