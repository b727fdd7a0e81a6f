"""Networks of image-to-image translation: pix2pix (Isola et al. 2017) and CycleGAN (Zhu et al. 2017).

Generators map an image batch (N, in_channels, H, W) in [-1, 1] to (N, out_channels, H, W) in [-1, 1]
(tanh output): the U-Net of pix2pix, whose skip connections carry the input's layout to the output,
and the residual network of CycleGAN. The PatchGAN discriminator scores every overlapping patch of its
input, giving a map of raw logits (N, 1, h, w) rather than one logit per image; for pix2pix it sees the
source and the (real or generated) target concatenated along the channels.

Defaults follow the papers: batch norm and dropout 0.5 for the U-Net (dropout is its only noise),
instance norm without affine parameters for the residual network, the 70x70 PatchGAN at 128 px and
above. Convolutions carry a bias only when no batch norm follows them; weights start at N(0, 0.02).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from gantrain.errors import GantrainError

NORMS = ("batch", "instance", "none")
POWERS = tuple(2**k for k in range(4, 11))  # the U-Net's image sizes, 16 to 1024


def _norm_layer(kind: str, who: str):
    """A maker of the norm layer for a channel count; refuses an unknown kind with one line."""
    if kind == "batch":
        return lambda channels: nn.BatchNorm2d(channels, affine=True)
    if kind == "instance":
        return lambda channels: nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return lambda channels: nn.Identity()
    raise GantrainError(f"{who}.norm={kind!r} is not one of {', '.join(NORMS)}")


def _whole(value: object, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise GantrainError(f"{name}={value!r} must be a whole number >= {least}")
    return value


def init_weights(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """Draw the starting weights of every layer in module, in place; returns module.

    Convolution and linear weights ~ N(0, gain), their biases 0; batch norm scales ~ N(1, gain), shifts 0.
    A spectrally normalised layer gets its unnormalised weight drawn (its power iteration catches up
    while training).
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            params = getattr(layer, "parametrizations", None)
            weight = params.weight.original if params is not None and hasattr(params, "weight") else layer.weight
            nn.init.normal_(weight, 0.0, gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d) and layer.weight is not None:
            nn.init.normal_(layer.weight, 1.0, gain)
            nn.init.zeros_(layer.bias)
    return module


def _count(module: nn.Module) -> str:
    n = sum(p.numel() for p in module.parameters())
    if n >= 1e6:
        return f"{n / 1e6:.1f} M params"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k params"
    return f"{n} params"


def _check_input(x: Tensor, channels: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise GantrainError(f"{who} takes images of shape (N, {channels}, H, W), got {tuple(x.shape)}")


class UNetGenerator(nn.Module):
    """The U-Net generator of pix2pix: an encoder down to 1x1, a mirrored decoder, skips between them.

    Encoder: 4x4 stride-2 convolutions of width, 2*width, 4*width, then 8*width down to 1x1 (depth =
    log2(image_size) levels), LeakyReLU(0.2), norm on all but the outermost and innermost. Decoder: ReLU
    and 4x4 stride-2 transposed convolutions, each result concatenated with the encoder feature of the
    same size; norm, and dropout 0.5 on the three innermost 8*width decoder levels (fewer when the net is
    shallower, none below 32 px); tanh output. Takes only image_size x image_size inputs.
    """

    def __init__(self, in_channels: int, out_channels: int, image_size: int, width: int = 64, norm: str = "batch",
                 dropout: bool = True):
        super().__init__()
        self.in_channels = _whole(in_channels, "in_channels", 1)
        self.out_channels = _whole(out_channels, "out_channels", 1)
        self.width = _whole(width, "generator.width", 1)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size not in POWERS:
            raise GantrainError(f"the U-Net generator needs image_size a power of two from 16 to 1024, "
                                f"got {image_size!r}; set e.g. dataset.image_size=32")
        self.image_size, self.norm, self.dropout = image_size, norm, bool(dropout)
        make_norm = _norm_layer(norm, "generator")
        bias = norm != "batch"
        depth = self.depth = image_size.bit_length() - 1
        widths = [min(width * 2**k, 8 * width) for k in range(depth)]  # the encoder's output at each level
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        self.dropout_levels: list[int] = []
        for k in range(depth):
            wide_in = in_channels if k == 0 else widths[k - 1]
            layers: list[nn.Module] = [nn.Conv2d(wide_in, widths[k], 4, 2, 1, bias=bias)]
            if 0 < k < depth - 1:
                layers.append(make_norm(widths[k]))
            if k < depth - 1:
                layers.append(nn.LeakyReLU(0.2, True))
            self.down.append(nn.Sequential(*layers))
        for k in range(depth):  # up[k] undoes down[k]
            wide_in = widths[k] if k == depth - 1 else 2 * widths[k]
            if k == 0:
                layers = [nn.ReLU(True), nn.ConvTranspose2d(wide_in, out_channels, 4, 2, 1), nn.Tanh()]
            else:
                layers = [nn.ReLU(True), nn.ConvTranspose2d(wide_in, widths[k - 1], 4, 2, 1, bias=bias),
                          make_norm(widths[k - 1])]
                if self.dropout and k >= depth - 3 and widths[k - 1] == 8 * width:
                    layers.append(nn.Dropout(0.5))
                    self.dropout_levels.append(k)
            self.up.append(nn.Sequential(*layers))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels, "the U-Net generator")
        if tuple(x.shape[2:]) != (self.image_size, self.image_size):
            raise GantrainError(f"the U-Net generator was built for {self.image_size}x{self.image_size} images, "
                                f"got {x.shape[2]}x{x.shape[3]}; resize the inputs or rebuild it for that size")
        skips = []
        h = x
        for down in self.down:
            h = down(h)
            skips.append(h)
        h = skips.pop()  # the 1x1 bottleneck has no mirror
        for k in reversed(range(self.depth)):
            h = self.up[k](h)
            if k > 0:
                h = torch.cat([skips[k - 1], h], 1)
        return h

    def describe(self) -> str:
        return (f"U-Net {self.image_size} px, {self.depth} levels, {self.in_channels}->{self.out_channels} channels, "
                f"{_count(self)}")


class ResidualBlock(nn.Module):
    """x + (reflection pad, 3x3 conv, norm, ReLU, [dropout 0.5], reflection pad, 3x3 conv, norm)(x)."""

    def __init__(self, channels: int, make_norm, bias: bool, dropout: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                                   make_norm(channels), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), make_norm(channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """The residual generator of CycleGAN: two downsamplings, n_blocks residual blocks, two upsamplings.

    Reflection pad and 7x7 conv (width), two 3x3 stride-2 convs (2*width, 4*width), n_blocks residual
    blocks at 4*width (default 6 below 256 px, 9 from 256 px), two 3x3 stride-2 transposed convs back to
    width, reflection pad and 7x7 conv to out_channels, tanh; norm and ReLU after every inner conv.
    Fully convolutional: takes any H, W divisible by 4 and at least 16.
    """

    def __init__(self, in_channels: int, out_channels: int, image_size: int, width: int = 64,
                 n_blocks: Optional[int] = None, norm: str = "instance", dropout: bool = False):
        super().__init__()
        self.in_channels = _whole(in_channels, "in_channels", 1)
        self.out_channels = _whole(out_channels, "out_channels", 1)
        self.width = _whole(width, "generator.width", 1)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16 or image_size % 4:
            raise GantrainError(f"the ResNet generator needs image_size divisible by 4 and >= 16, got {image_size!r}; "
                                f"set e.g. dataset.image_size=32")
        self.image_size, self.norm, self.dropout = image_size, norm, bool(dropout)
        self.n_blocks = _whole((6 if image_size < 256 else 9) if n_blocks is None else n_blocks, "generator.n_blocks", 1)
        make_norm = _norm_layer(norm, "generator")
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7, bias=bias),
                                   make_norm(width), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(width * mult, width * mult * 2, 3, 2, 1, bias=bias), make_norm(width * mult * 2),
                       nn.ReLU(True)]
        layers += [ResidualBlock(4 * width, make_norm, bias, self.dropout) for _ in range(self.n_blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(width * mult, width * mult // 2, 3, 2, 1, output_padding=1, bias=bias),
                       make_norm(width * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels, "the ResNet generator")
        height, wide = x.shape[2], x.shape[3]
        if height % 4 or wide % 4 or min(height, wide) < 16:
            raise GantrainError(f"the ResNet generator takes heights and widths divisible by 4 and >= 16, "
                                f"got {height}x{wide}")
        return self.net(x)

    def describe(self) -> str:
        return (f"ResNet generator {self.image_size} px, {self.n_blocks} blocks, "
                f"{self.in_channels}->{self.out_channels} channels, {_count(self)}")


def patch_map_size(size: int, n_layers: int) -> int:
    """Side of a PatchGAN's logit map for inputs of side size: n_layers halvings, then two 4x4 stride-1 convs."""
    for _ in range(n_layers):
        size = size // 2  # 4x4, stride 2, padding 1
    return size - 2  # each 4x4, stride 1, padding 1 conv takes one


class PatchDiscriminator(nn.Module):
    """The PatchGAN discriminator: one raw logit per overlapping patch, a map of shape (N, 1, h, w).

    A 4x4 stride-2 conv (width, LeakyReLU(0.2), no norm), n_layers - 1 more doubling the width (capped at
    8*width) with norm and LeakyReLU, a 4x4 stride-1 conv with norm and LeakyReLU, and a 4x4 stride-1 conv
    to one channel. n_layers defaults to 3 (the 70x70 PatchGAN) from 128 px, 2 from 64 px, 1 below; the
    logit map must stay at least 2x2. spectral_norm wraps every conv (norm="none" then usual).
    """

    def __init__(self, in_channels: int, image_size: int, width: int = 64, n_layers: Optional[int] = None,
                 norm: str = "batch", spectral_norm: bool = False):
        super().__init__()
        self.in_channels = _whole(in_channels, "in_channels", 1)
        self.width = _whole(width, "discriminator.width", 1)
        self.image_size = _whole(image_size, "image_size", 1)
        default = 3 if image_size >= 128 else 2 if image_size >= 64 else 1
        self.n_layers = _whole(default if n_layers is None else n_layers, "discriminator.n_layers", 1)
        self.norm, self.spectral_norm = norm, bool(spectral_norm)
        make_norm = _norm_layer(norm, "discriminator")
        side = patch_map_size(image_size, self.n_layers)
        if side < 2:
            most = max((n for n in range(1, 11) if patch_map_size(image_size, n) >= 2), default=0)
            hint = f"use discriminator.n_layers <= {most}" if most else "use larger images (dataset.image_size >= 16)"
            raise GantrainError(f"a PatchGAN of {self.n_layers} layers leaves a {max(side, 0)}x{max(side, 0)} logit map "
                                f"at {image_size} px; {hint}")
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        wide = width
        for n in range(1, self.n_layers):
            nxt = width * min(2**n, 8)
            layers += [nn.Conv2d(wide, nxt, 4, 2, 1, bias=bias), make_norm(nxt), nn.LeakyReLU(0.2, True)]
            wide = nxt
        nxt = width * min(2**self.n_layers, 8)
        layers += [nn.Conv2d(wide, nxt, 4, 1, 1, bias=bias), make_norm(nxt), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(nxt, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)
        init_weights(self)
        if self.spectral_norm:  # after the init, so the power iteration starts from the drawn weights
            for layer in self.net:
                if isinstance(layer, nn.Conv2d):
                    _spectral_norm(layer)
        self.receptive_field = 1
        for layer in reversed(self.net):
            if isinstance(layer, nn.Conv2d):
                self.receptive_field = (self.receptive_field - 1) * layer.stride[0] + layer.kernel_size[0]

    @property
    def patch_shape(self) -> tuple[int, int]:
        """(h, w) of the logit map for image_size x image_size inputs."""
        side = patch_map_size(self.image_size, self.n_layers)
        return side, side

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels, "the PatchGAN discriminator")
        if min(patch_map_size(x.shape[2], self.n_layers), patch_map_size(x.shape[3], self.n_layers)) < 1:
            raise GantrainError(f"the PatchGAN discriminator of {self.n_layers} layers cannot score "
                                f"{x.shape[2]}x{x.shape[3]} images; it was built for {self.image_size} px")
        return self.net(x)

    def describe(self) -> str:
        h, w = self.patch_shape
        layers = f"{self.n_layers} layer{'s' if self.n_layers > 1 else ''}"
        field = f"{self.receptive_field}x{self.receptive_field}"
        return (f"PatchGAN {self.image_size} px, {layers}, {field} patches, {h}x{w} logits, "
                f"{self.in_channels} channels, {_count(self)}")


DIRECTIONS = ("AtoB", "BtoA")


class Translator(nn.Module):
    """The translating networks of a run: `ab` (A -> B) and, when trained (CycleGAN), `ba` (B -> A)."""

    def __init__(self, ab: nn.Module, ba: Optional[nn.Module], channels_a: int, channels_b: int, image_size: int):
        super().__init__()
        self.ab = ab
        if ba is not None:
            self.ba = ba
        self.channels_a, self.channels_b, self.image_size = int(channels_a), int(channels_b), int(image_size)

    @property
    def directions(self) -> tuple[str, ...]:
        return DIRECTIONS if hasattr(self, "ba") else DIRECTIONS[:1]

    def channels(self, direction: str = "AtoB") -> tuple[int, int]:
        """(input, output) channels of a direction."""
        self.check_direction(direction)
        return (self.channels_a, self.channels_b) if direction == "AtoB" else (self.channels_b, self.channels_a)

    def check_direction(self, direction: str) -> None:
        if direction not in self.directions:
            if direction in DIRECTIONS:
                raise GantrainError(f"direction={direction}: this run trained only {self.directions[0]} (pix2pix); "
                                    f"use direction=AtoB, or train both directions with CycleGAN")
            raise GantrainError(f"direction={direction} is not one of {', '.join(DIRECTIONS)}")

    def forward(self, x: Tensor, direction: str = "AtoB") -> Tensor:
        return self.ab(x) if direction == "AtoB" else self.ba(x)

    @torch.no_grad()
    def translate(self, x: Tensor, direction: str = "AtoB") -> Tensor:
        """Translate a batch (N, C_in, S, S) in [-1, 1] at the trained size S; grey or colour input is
        converted to the direction's input channels."""
        c_in, _ = self.channels(direction)
        if x.dim() != 4 or x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise GantrainError(f"translate() takes (N, C, {self.image_size}, {self.image_size}) images, not "
                                f"{tuple(x.shape)}; resize or tile to the trained size first")
        first = next(self.parameters())
        return self(to_channels(x.to(first.device, first.dtype), c_in), direction)


def to_channels(x: Tensor, channels: int) -> Tensor:
    """Images (N, C, H, W) as `channels` channels: grey repeated to RGB, RGB to grey by luminance (ITU-R 601),
    an alpha channel dropped."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 4:
        return to_channels(x[:, :3], channels)
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]  # no host-made tensor: capturable
    raise GantrainError(f"cannot convert {c}-channel images to {channels} channels")
