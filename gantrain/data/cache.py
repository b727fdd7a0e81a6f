"""Built datasets cached under $GANTRAIN_CACHE/datasets (else ~/.cache/gantrain/datasets): read whole
or rebuilt, written atomically."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor

log = logging.getLogger("gantrain")


#: bumped whenever the content of a cached set changes for the same file name
CACHE_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# The cache of built sets


def datasets_cache_dir() -> Path:
    """Where built datasets live: $GANTRAIN_CACHE/datasets, else ~/.cache/gantrain/datasets."""
    return Path(os.environ.get("GANTRAIN_CACHE") or Path.home() / ".cache" / "gantrain") / "datasets"


def _read_cache(path: Path, check: Callable[[dict], bool]) -> Optional[dict]:
    """The cached dict at path when it is whole and passes check; None (with a warning when damaged) otherwise."""
    if not path.is_file():
        return None
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(content, dict) or content.get("format") != CACHE_FORMAT or not check(content):
            raise ValueError("unexpected content")
        return content
    except Exception as exc:  # a torn or foreign file: unpickling raises many types
        detail = " ".join(str(exc).split())[:100]
        log.warning("cached dataset %s is damaged or out of date (%s: %s); building it again",
                    path, type(exc).__name__, detail)
        return None


def _write_cache(path: Path, content: dict) -> None:
    """Save content at path atomically (temporary file, then rename); a cache that cannot be written is skipped."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save({"format": CACHE_FORMAT, **content}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # a read-only or full disk
        log.warning("could not cache the dataset at %s (%s); it will be built again next time", path, exc)
        try:
            tmp.unlink()
        except OSError:
            pass


def _is_images(x: Any, channels: int, size: int) -> bool:
    return isinstance(x, Tensor) and x.dtype == torch.uint8 and x.dim() == 4 \
        and tuple(x.shape[1:]) == (channels, size, size)


def _is_labels(y: Any, n: int) -> bool:
    return isinstance(y, Tensor) and y.dtype == torch.int64 and tuple(y.shape) == (n,) \
        and (n == 0 or (int(y.min()) >= 0 and int(y.max()) < 10))
