"""gantrain: a config-driven trainer for generative adversarial networks."""
__version__ = "0.1.0"

from .api import load_generator  # noqa: E402

__all__ = ["load_generator", "__version__"]
