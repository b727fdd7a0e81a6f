"""Outlines of digits drawn in several ways: the operators, widths and drawing sizes edges2mnist trains
on (mixed per image), and the held-out styles it is scored on."""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from gantrain.errors import GantrainError

#: the share of a digit's strongest gradient below which a pixel is no edge
EDGE_THRESHOLD = 0.2


# ---------------------------------------------------------------------------------------------
# Edges of digits


def sobel_edges(images: Tensor, threshold: float = EDGE_THRESHOLD, chunk: int = 8192) -> Tensor:
    """Line drawings of the outlines in a uint8 (N, 1, H, W) batch: 255 on an edge, 0 elsewhere.

    The Sobel gradient of each image (torch conv2d, zero padding) is thresholded at `threshold` times
    the image's strongest gradient, then thinned to one pixel by keeping only the pixels whose gradient
    magnitude is a maximum across the edge (compared with the two neighbours along the gradient
    direction, taken in 4 sectors). On 8-bit images the gradients are exact integers and the sectors
    are decided by integer comparisons, so the result does not depend on the machine.
    """
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)  # d/dx (along a row), d/dy (down a column)
    if len(images) == 0:
        return torch.zeros(images.shape, dtype=torch.uint8)
    out = []
    for part in images.split(chunk):
        n, _, h, w = part.shape
        # one group per image: the same result as a plain (n, 1) convolution, a few times faster on CPUs
        grad = F.conv2d(part.float().view(1, n, h, w), kernels.repeat(n, 1, 1, 1), padding=1, groups=n)
        gx, gy = grad.view(n, 2, h, w).unbind(1)
        mag2 = gx * gx + gy * gy  # exact: |g| <= 4 * 255
        strongest = mag2.amax(dim=(1, 2), keepdim=True)
        strong = (mag2 > (threshold * threshold) * strongest) & (mag2 > 0)
        # thin only the strong pixels (a fraction of the image), addressing them in the zero-padded map
        at = strong.view(-1).nonzero().squeeze(1)
        wp = w + 2
        image, pixel = at // (h * w), at % (h * w)
        padded_at = image * ((h + 2) * wp) + (pixel // w + 1) * wp + (pixel % w + 1)
        padded = F.pad(mag2, (1, 1, 1, 1)).reshape(-1)
        sx, sy, m = gx.reshape(-1)[at], gy.reshape(-1)[at], mag2.reshape(-1)[at]
        ax, ay = sx.abs(), sy.abs()
        # tan(22.5 deg) ~ 70/169: the gradient points along a row, down a column, or along a diagonal
        step = torch.where(169 * ay < 70 * ax, 1,
                           torch.where(169 * ax < 70 * ay, wp, torch.where(sx * sy > 0, wp + 1, wp - 1)))
        # a ridge two pixels wide (a sharp step) keeps one of its two pixels: strictly above the next one
        peak = (m > padded[padded_at + step]) & (m >= padded[padded_at - step])
        edges = torch.zeros(n * h * w, dtype=torch.uint8)
        edges[at[peak]] = 255
        out.append(edges.view(n, 1, h, w))
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Outlines drawn in other ways: the styles edges2mnist trains on, and the held-out ones it is scored on

#: dataset.edge_styles: "mixed" draws each outline with an operator, line width and drawing size chosen at
#: random per image (TRAIN_OPERATORS x TRAIN_WIDTHS x TRAIN_SCALES); "sobel" is the set of 0.7.0 and earlier,
#: every outline the one-pixel Sobel maxima of sobel_edges
EDGE_STYLES = ("mixed", "sobel")


#: the operators, line widths (pixels, at the drawing size) and drawing sizes (times image_size) of "mixed"
TRAIN_OPERATORS = ("sobel", "band", "contour")


TRAIN_WIDTHS = (1, 2)


TRAIN_SCALES = (0.75, 1.0, 1.5)


#: drawing styles never produced in training, each (operator, width, scale, jitter): the evaluation reads them
HELD_OUT_STYLES: dict[str, tuple[str, int, float, float]] = {
    "canny": ("canny", 1, 1.0, 0.0),  # another operator: Gaussian-smoothed gradient, thinned, hysteresis
    "morph_gradient": ("morph_gradient", 1, 1.0, 0.0),  # another operator: dilation minus erosion of the digit
    "thick": ("sobel", 3, 1.0, 0.0),  # the training outline drawn 3 px wide (training: 1-2)
    "sketch64": ("contour", 3, 2.0, 1.5),  # a wobbly hand-drawn-like stroke at 64 px (2x), shrunk to 32
}


#: the style of 0.7.0's set, scored next to the held-out ones
SOBEL_STYLE = ("sobel", 1, 1.0, 0.0)


#: the share of the strongest gradient above which "band" draws a pixel (a band about 2 pixels wide)
BAND_THRESHOLD = 0.5


def _binary(images: Tensor) -> Tensor:
    """Digit pixels (> 127) of a uint8 batch as a float 0/1 map."""
    return (images > 127).float()


def _dilate(x: Tensor, width: int) -> Tensor:
    """Lines of a float (N, 1, H, W) map drawn `width` pixels wide (a width x width max filter)."""
    if width <= 1:
        return x
    before = (width - 1) // 2
    padded = F.pad(x, (before, width - 1 - before, before, width - 1 - before))
    return F.max_pool2d(padded, width, stride=1)


def _erode(x: Tensor) -> Tensor:
    """3 x 3 erosion of a 0/1 map (outside the image counts as background)."""
    return -F.max_pool2d(F.pad(-x, (1, 1, 1, 1), value=-0.0), 3, stride=1)


def band_edges(images: Tensor, threshold: float = BAND_THRESHOLD) -> Tensor:
    """The Sobel gradient thresholded at `threshold` times each image's strongest, not thinned: 255 / 0, uint8."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)
    grad = F.conv2d(images.float(), kernels, padding=1)
    mag2 = (grad * grad).sum(1, keepdim=True)
    strongest = mag2.amax(dim=(2, 3), keepdim=True)
    return ((mag2 > threshold * threshold * strongest) & (mag2 > 0)).to(torch.uint8) * 255


def contour_edges(images: Tensor) -> Tensor:
    """The inner contour of the binarised digit (its pixels with a background 8-neighbour): 255 / 0, uint8."""
    digit = _binary(images)
    return ((digit - _erode(digit)) > 0).to(torch.uint8) * 255


def morph_gradient_edges(images: Tensor) -> Tensor:
    """Morphological gradient of the binarised digit (3 x 3 dilation minus erosion): a band across the digit's
    boundary, 255 / 0, uint8."""
    digit = _binary(images)
    return ((F.max_pool2d(digit, 3, stride=1, padding=1) - _erode(digit)) > 0).to(torch.uint8) * 255


def canny_edges(images: Tensor, low: float = 0.1, high: float = 0.3) -> Tensor:
    """Canny's outline (float64): binomial smoothing (5 x 5, sigma ~1), Sobel gradient, non-maximum suppression
    across the edge, then hysteresis: pixels above `high` times the image's strongest gradient, and those above
    `low` connected to them. 255 / 0, uint8."""
    x = images.double()
    b = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16
    x = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), (b[:, None] * b[None, :])[None, None])
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)
    grad = F.conv2d(x, torch.stack([kx, kx.t()]).unsqueeze(1), padding=1)
    gx, gy = grad[:, 0:1], grad[:, 1:2]
    mag = (gx * gx + gy * gy).sqrt()
    ax, ay = gx.abs(), gy.abs()
    p = F.pad(mag, (1, 1, 1, 1))
    h, w = mag.shape[-2:]

    def at(dy: int, dx: int) -> Tensor:
        return p[..., 1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]

    horizontal, vertical = 169 * ay < 70 * ax, 169 * ax < 70 * ay
    same = gx * gy > 0
    ahead = torch.where(horizontal, at(0, 1), torch.where(vertical, at(1, 0), torch.where(same, at(1, 1), at(1, -1))))
    behind = torch.where(horizontal, at(0, -1), torch.where(vertical, at(-1, 0), torch.where(same, at(-1, -1), at(-1, 1))))
    thin = (mag > ahead) & (mag >= behind)
    strongest = mag.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    weak = thin & (mag > low * strongest)
    edges = (thin & (mag > high * strongest)).double()
    weak_f = weak.double()
    for _ in range(h * w):  # grow the strong edges along connected weak pixels until nothing changes
        grown = F.max_pool2d(edges, 3, stride=1, padding=1) * weak_f
        grown = torch.maximum(grown, edges)
        if torch.equal(grown, edges):
            break
        edges = grown
    return (edges > 0).to(torch.uint8) * 255


OPERATORS: dict[str, Callable[[Tensor], Tensor]] = {
    "sobel": sobel_edges, "band": band_edges, "contour": contour_edges,
    "canny": canny_edges, "morph_gradient": morph_gradient_edges,
}


def _resize(x: Tensor, size: int) -> Tensor:
    """A float (N, C, H, W) batch resized to size x size (bilinear, antialiased when shrinking)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1])


def _to_uint8(x: Tensor) -> Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def _jitter(x: Tensor, amplitude: float, generator: torch.Generator) -> Tensor:
    """A float (N, 1, S, S) drawing warped by a smooth random field (displacements up to ~amplitude pixels),
    the wobble of a hand-drawn line."""
    n, _, s, _ = x.shape
    coarse = torch.randn((n, 2, 5, 5), generator=generator, dtype=torch.float32)
    field = F.interpolate(coarse, size=(s, s), mode="bicubic", align_corners=True) * (amplitude * 2 / s)
    steps = torch.linspace(-1, 1, s)
    grid = torch.stack(torch.meshgrid(steps, steps, indexing="xy"), dim=-1).expand(n, s, s, 2)
    return F.grid_sample(x, grid + field.permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros",
                         align_corners=True)


def draw_outlines(digits: Tensor, operator: str, width: int = 1, scale: float = 1.0, jitter: float = 0.0,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """Outlines of a uint8 (N, 1, S, S) batch of digits in one drawing style, uint8 (N, 1, S, S).

    The digit is resized to round(S * scale) px, outlined there by `operator` (OPERATORS), its lines drawn
    `width` px wide, wobbled by up to ~`jitter` px (draws from `generator`), and resized back to S px (grey
    where the lines fall between pixels). ("sobel", 1, 1.0, 0.0) is exactly sobel_edges(digits).
    """
    if operator not in OPERATORS:
        raise GantrainError(f"unknown outline operator {operator!r}; one of {', '.join(OPERATORS)}")
    if len(digits) == 0:
        return torch.zeros(digits.shape, dtype=torch.uint8)
    size = digits.shape[-1]
    drawn_size = max(8, round(size * scale))
    source = digits if drawn_size == size else _to_uint8(_resize(digits.float(), drawn_size))
    lines = OPERATORS[operator](source)
    if width == 1 and jitter == 0 and drawn_size == size:
        return lines
    out = _dilate(lines.float(), width)
    if jitter > 0:
        out = _jitter(out, jitter, generator if generator is not None else torch.Generator().manual_seed(0))
    return _to_uint8(_resize(out, size))


def sample_styles(n: int, generator: torch.Generator) -> Tensor:
    """The training style of n outlines: int64 (n, 3) rows of (operator, width, scale), each an index into
    TRAIN_OPERATORS, TRAIN_WIDTHS and TRAIN_SCALES, drawn uniformly and independently."""
    return torch.stack([torch.randint(len(TRAIN_OPERATORS), (n,), generator=generator),
                        torch.randint(len(TRAIN_WIDTHS), (n,), generator=generator),
                        torch.randint(len(TRAIN_SCALES), (n,), generator=generator)], dim=1)


def mixed_outlines(digits: Tensor, styles: Tensor) -> Tensor:
    """Outlines of digits, each in its own training style (a row of sample_styles), uint8 (N, 1, S, S)."""
    out = torch.zeros(digits.shape, dtype=torch.uint8)
    for op in range(len(TRAIN_OPERATORS)):
        for wi in range(len(TRAIN_WIDTHS)):
            for si in range(len(TRAIN_SCALES)):
                chosen = ((styles[:, 0] == op) & (styles[:, 1] == wi) & (styles[:, 2] == si)).nonzero().squeeze(1)
                if len(chosen):
                    out[chosen] = draw_outlines(digits[chosen], TRAIN_OPERATORS[op], TRAIN_WIDTHS[wi], TRAIN_SCALES[si])
    return out


def held_out_outlines(digits: Tensor, style: str, seed: int = 0) -> Tensor:
    """Outlines of digits in a held-out style (a name of HELD_OUT_STYLES, or "sobel": 0.7.0's outline), drawn
    with seed (only the jittered style draws), uint8 (N, 1, S, S)."""
    spec = SOBEL_STYLE if style == "sobel" else HELD_OUT_STYLES.get(style)
    if spec is None:
        raise GantrainError(f"unknown outline style {style!r}; one of sobel, {', '.join(HELD_OUT_STYLES)}")
    return draw_outlines(digits, *spec, generator=torch.Generator().manual_seed(seed))
