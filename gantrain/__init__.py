"""gantrain: a config-driven trainer for generative adversarial networks."""
from .version import __version__
from .api import compose, load_generator, load_translator, train

__all__ = ["compose", "load_generator", "load_translator", "train", "__version__"]
