"""Hydra configs of gantrain (config groups live in sub-folders)."""
