"""Where a run's numbers and pictures go: TensorBoard, metrics.jsonl, sample PNGs and the console."""
from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from gantrain.data.base import grid_columns, to_uint8_image

log = logging.getLogger("gantrain")


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop the lines of metrics.jsonl logged after `last_step` (they are about to be logged again)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                kept.append(line)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


class RunLogger:
    """Scalars to TensorBoard, metrics.jsonl and the console; images to TensorBoard and samples/*.png.

    start_step: the step a resumed run continues from (0 for a fresh run); later entries are purged.
    """

    def __init__(self, run_dir: Path, total_steps: int, start_step: int, progress: bool):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.run_dir / "metrics.jsonl"
        # entries after the start are purged: those of a checkpoint's later steps, or of a run that resume=auto
        # starts again from step 0 because it stopped before its first checkpoint
        logged = self.jsonl_path.exists()
        if logged:
            _truncate_jsonl(self.jsonl_path, start_step)
        earlier = logged or (self.run_dir / "tb").is_dir()
        self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step + 1 if earlier else None)
        self.jsonl = open(self.jsonl_path, "a", buffering=1)
        self.bar = None
        if progress:
            from tqdm import tqdm

            import shutil

            # a terminal that reports zero columns (some CI consoles) would get an empty bar: use 80
            width = None if shutil.get_terminal_size((80, 24)).columns > 0 else 80
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=width is None,
                            ncols=width, file=sys.stdout)

    def step_done(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Log one row of scalars at `step` (names like 'loss/d', 'lr/g')."""
        for name, value in values.items():
            self.tb.add_scalar(name, value, step)
        row = {"step": step, **{k: (v if math.isfinite(v) else str(v)) for k, v in values.items()}}
        self.jsonl.write(json.dumps(row) + "\n")
        short = {k.split("/")[-1] if k.startswith("loss/") else k: v for k, v in values.items()}
        shown = {k: short[k] for k in ("d", "g", "wasserstein", "steps_per_s") if k in short} or short
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
        else:
            log.info("step %d  %s", step, "  ".join(f"{k} {v:.4g}" for k, v in shown.items()))

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.tb.add_text(tag, text, step)

    def images(self, step: int, samples: Tensor, reference: Optional[Tensor] = None, columns: Optional[int] = None) -> Path:
        """Save a grid of image samples ((N, C, H, W) in [-1, 1], `columns` wide, else about square) or a
        scatter of 2D points over the data."""
        if samples.dim() == 2:
            picture = scatter_image(samples, reference if reference is not None else samples[:0])
        else:
            import torchvision

            picture = torchvision.utils.make_grid(to_uint8_image(samples.cpu()), nrow=columns or grid_columns(len(samples)),
                                                  padding=2)
        path = self.run_dir / "samples" / f"step_{step:08d}.png"
        save_png(picture, path)
        self.tb.add_image("samples", picture, step)
        return path

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.tb.close()
        self.jsonl.close()


def png_bytes(picture: Tensor) -> bytes:
    """A uint8 (C, H, W) picture encoded as PNG."""
    import io

    from PIL import Image

    array = picture.permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(picture: Tensor, path: Path) -> None:
    """Write a uint8 (C, H, W) picture as PNG (atomically)."""
    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(png_bytes(picture))
    os.replace(tmp, path)


def scatter_image(points: Tensor, reference: Tensor, size: int = 480) -> Tensor:
    """A uint8 (3, size, size) scatter plot: reference (data) points grey, samples red, framed to the data."""
    points, reference = points.detach().float().cpu(), reference.detach().float().cpu()
    frame = reference if len(reference) else points
    finite = frame[torch.isfinite(frame).all(1)]
    lo, hi = (finite.min(0).values, finite.max(0).values) if len(finite) else (torch.full((2,), -1.0), torch.ones(2))
    centre, half = (lo + hi) / 2, ((hi - lo).max() / 2 * 1.25).clamp_min(1e-3)
    canvas = torch.full((3, size, size), 255, dtype=torch.uint8)

    def draw(xy: Tensor, colour: tuple[int, int, int], radius: int) -> None:
        xy = xy[torch.isfinite(xy).all(1)]
        pix = ((xy - centre) / half * 0.5 + 0.5) * (size - 1)
        col, row = pix[:, 0].round().long(), (size - 1 - pix[:, 1]).round().long()
        for dr in range(-radius, radius + 1):
            for dc in range(-radius, radius + 1):
                r, c = row + dr, col + dc
                keep = (r >= 0) & (r < size) & (c >= 0) & (c < size)
                for channel, value in enumerate(colour):
                    canvas[channel, r[keep], c[keep]] = value

    draw(reference, (170, 170, 170), 1)
    draw(points, (220, 30, 30), 1)
    return canvas
