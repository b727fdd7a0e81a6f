"""gantrain: a config-driven trainer for generative adversarial networks."""
__version__ = "0.1.0"

from .api import compose, load_generator, train  # noqa: E402

__all__ = ["compose", "load_generator", "train", "__version__"]
