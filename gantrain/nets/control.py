"""Control of what a trained generator draws: truncation (in W toward w_avg for a style-based generator, in z
for the others) and style mixing (a style-based generator's layers taken from two latents)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from gantrain.errors import GantrainError


def is_style_based(generator: nn.Module) -> bool:
    """Whether a generator has a W space and layers of styles (StyleGAN2Generator)."""
    return bool(getattr(generator, "style_based", False))


def synthesize(generator: nn.Module, z: Tensor, labels: Optional[Tensor] = None, psi: Optional[float] = None) -> Tensor:
    """Images of z (and labels) from a style-based generator with W truncation psi (None or 1: none; 0: the
    image of w_avg), each layer's fixed noise input: the same z gives the same image."""
    w = generator.mapping(z, labels)
    return generator.synthesis(generator.truncate_w(w, 1.0 if psi is None else float(psi)), noise_mode="const")


def parse_layers(text: str, num_ws: int) -> list[int]:
    """Layers of a style-based generator from `a-b` (inclusive), a comma list (`0,2,5`), `all` or `none`."""
    value = text.strip().lower()
    if value == "all":
        return list(range(num_ws))
    if value in ("none", ""):
        return []
    layers: list[int] = []
    try:
        for part in value.split(","):
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                if b < a:
                    raise GantrainError(f"layers={text}: the range {part} runs backwards; give it from the lower "
                                        f"layer to the higher, e.g. layers={b}-{a}")
                layers.extend(range(a, b + 1))
            else:
                layers.append(int(part))
    except ValueError:
        raise GantrainError(f"layers={text} is not a range (layers=0-3), a list (layers=0,2,5), all or none") from None
    bad = [k for k in layers if not 0 <= k < num_ws]
    if bad or not layers:
        raise GantrainError(f"layers={text}: this generator has layers 0..{num_ws - 1} of styles; give a range within "
                            f"them, e.g. layers=0-3 (coarse: pose and shape) or layers={num_ws // 2}-{num_ws - 1} (fine)")
    return sorted(set(layers))


def style_mix(generator: nn.Module, row_z: Tensor, col_z: Tensor, layers: Sequence[int], psi: Optional[float] = None,
              row_labels: Optional[Tensor] = None, col_labels: Optional[Tensor] = None) -> Tensor:
    """The style-mixing figure's cells, (rows, cols, C, H, W): cell (r, c) has row r's styles with column c's on
    `layers` (no layers: row r's image; every layer: column c's image)."""
    if not is_style_based(generator):
        raise GantrainError("style mixing needs a style-based generator (generator=stylegan2); this run's generator "
                            "has no layers of styles")
    rows = generator.truncate_w(generator.mapping(row_z, row_labels), 1.0 if psi is None else float(psi))
    cols = generator.truncate_w(generator.mapping(col_z, col_labels), 1.0 if psi is None else float(psi))
    chosen = torch.zeros(generator.num_ws, dtype=torch.bool, device=rows.device)
    chosen[list(layers)] = True
    mixed = torch.where(chosen.view(1, 1, -1, 1), cols.unsqueeze(0), rows.unsqueeze(1))  # (R, C, num_ws, w_dim)
    r, c = len(row_z), len(col_z)
    images = generator.synthesis(mixed.reshape(r * c, generator.num_ws, -1), noise_mode="const")
    return images.view(r, c, *images.shape[1:])
