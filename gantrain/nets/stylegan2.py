"""StyleGAN2's networks (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"; the
configuration of StyleGAN2-ADA: skip generator, residual discriminator).

Generator: z (normalised to unit second moment) -> mapping network (`mapping_layers` fully connected layers,
learning-rate multiplier 0.01) -> w; a learned 4x4 constant -> per resolution two modulated 3x3 convolutions
with weight demodulation (the first up-samples: zeros inserted, a [1,3,3,1] low-pass filter), per-pixel noise
with a learned strength and a bias before each leaky ReLU; each resolution's toRGB (a modulated 1x1 convolution,
not demodulated) is added to the up-sampled image of the resolutions below (skip outputs). Discriminator:
fromRGB at the image size, residual blocks (two 3x3 convolutions, the second down-sampling after the same
filter; a 1x1 shortcut, their sum times sqrt(1/2)), then at 4x4 the minibatch standard deviation, a 3x3
convolution and two fully connected layers. Every layer has the equalised learning rate: its weight is stored
N(0, 1 / lr_multiplier) and scaled by lr_multiplier / sqrt(fan_in) when used.

Widths: a resolution r gets min(channel_base // r, channel_max) channels (the paper's networks: channel_base
32768 at 1024 px, channel_max 512), so a tiny CPU network and the paper's one are the same code. Image sizes:
powers of two from 8 to 1024, 1 or 3 channels (and any other count). Class-conditional (num_classes > 0): a
label embedding joins z at the mapping network, and the discriminator projects its last features onto a
mapped label embedding (as StyleGAN2-ADA).

The generator's mapping keeps `w_avg`, the running mean of w (updated in training mode, decay w_avg_beta), for
truncation toward it: synthesis(w_avg + psi (w - w_avg)).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.errors import GantrainError
from gantrain.nets.base import Discriminator, Generator, _check_classes

#: sizes the networks build for (powers of two)
STYLEGAN2_SIZES = tuple(2**k for k in range(3, 11))
LRELU_GAIN = math.sqrt(2.0)
#: the [1,3,3,1] low-pass filter of up- and down-sampling (separable, normalised to sum 1)
FILTER = (1.0, 3.0, 3.0, 1.0)
#: the noise inputs of the synthesis layers: fresh per call, each layer's fixed map, or none
NOISE_MODES = ("random", "const", "none")


def _whole(value: Any, key: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GantrainError(f"{key}={value!r} must be a whole number >= {low}")
    return value


def _square_power_of_two(shape: Sequence[int], who: str) -> tuple[int, int]:
    """(channels, size) of an image shape (C, S, S) with S a power of two from 8 to 1024; one line otherwise."""
    if len(shape) != 3 or shape[1] != shape[2]:
        raise GantrainError(f"{who}=stylegan2 needs square images (C, H, W) but the dataset gives shape "
                            f"{tuple(shape)}; use {who}=mlp for 2D data")
    channels, size = int(shape[0]), int(shape[1])
    if size not in STYLEGAN2_SIZES:
        nearest = min(STYLEGAN2_SIZES, key=lambda s: (abs(s - size), s))
        raise GantrainError(f"{who}=stylegan2 works on images of 8, 16, 32 ... 1024 px, not {size}x{size}; set "
                            f"dataset.image_size={nearest} (MNIST's 28 px digits are resized to it)")
    return channels, size


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """The width of a resolution: min(channel_base // resolution, channel_max), at least 1."""
    return max(1, min(channel_base // resolution, channel_max))


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    """x divided by the root mean square of its features (dim 1)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def _filter(device: torch.device, dtype: torch.dtype) -> Tensor:
    k = torch.tensor(FILTER, device=device, dtype=dtype)
    k = torch.outer(k, k)
    return k / k.sum()


def blur(x: Tensor, pad: tuple[int, int], gain: float = 1.0) -> Tensor:
    """Each channel of x filtered by the 4x4 [1,3,3,1] kernel (normalised to sum 1, times gain), zero-padded by
    (before, after) on both axes."""
    c = x.shape[1]
    kernel = (_filter(x.device, x.dtype) * gain).expand(c, 1, 4, 4)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, kernel, groups=c)


def _upsample1d(x: Tensor, dim: int) -> Tensor:
    """Twice the length along dim: zeros inserted, then [1,3,3,1] / 4; computed per output phase, without the
    zeros: even outputs (x[i-1] + 3 x[i]) / 4, odd ones (3 x[i] + x[i+1]) / 4 (zero beyond the ends)."""
    n = x.shape[dim]
    padded = F.pad(x, [0, 0] * (x.dim() - 1 - dim) + [1, 1])
    even = (padded.narrow(dim, 0, n) + 3.0 * x) * 0.25
    odd = (3.0 * x + padded.narrow(dim, 2, n)) * 0.25
    shape = [2 * size if i == dim else size for i, size in enumerate(x.shape)]  # (no in-place op: traced cleanly)
    return torch.stack([even, odd], dim=dim + 1).reshape(shape)


def upsample2d(x: Tensor) -> Tensor:
    """Twice the size: zeros inserted between the pixels, then the [1,3,3,1] low-pass filter with gain 4 (which
    keeps the mean), i.e. blur(zero-stuffed x, (2, 1), gain=4), computed separably per output phase."""
    return _upsample1d(_upsample1d(x, 3), 2)


def downsample2d(x: Tensor) -> Tensor:
    """Half the size: the low-pass filter, then every second pixel."""
    return blur(x, (1, 1))[:, :, ::2, ::2]


class EqualLinear(nn.Module):
    """A fully connected layer with the equalised learning rate: weight N(0, 1/lr_multiplier) stored, scaled by
    lr_multiplier / sqrt(in_features) at run time; bias (initialised at bias_init) scaled by lr_multiplier.
    activation "lrelu": leaky ReLU (slope 0.2) times sqrt(2)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_multiplier: float = 1.0, activation: str = "linear"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.lr_multiplier, self.activation = lr_multiplier, activation

    def forward(self, x: Tensor) -> Tensor:
        b = self.bias * self.lr_multiplier if self.bias is not None else None
        x = F.linear(x, self.weight * self.weight_gain, b)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN if self.activation == "lrelu" else x


class EqualConv2d(nn.Module):
    """A convolution with the equalised learning rate (weight N(0, 1) stored, scaled by 1 / sqrt(fan_in) at run
    time); down=True filters and takes every second pixel after it (3x3) or before it (1x1, a shortcut)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bias: bool = True, activation: str = "linear",
                 down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(c_in * kernel * kernel)
        self.activation, self.down, self.kernel = activation, down, kernel

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.weight_gain
        if self.down:
            if self.kernel == 1:
                x = F.conv2d(downsample2d(x), w)
            else:  # filter (padded so that the stride-2 convolution keeps exactly half the size), then convolve
                x = F.conv2d(blur(x, (2, 2)), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.kernel // 2)
        if self.bias is not None:
            x = x + self.bias.view(1, -1, 1, 1)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN if self.activation == "lrelu" else x


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True, fused: bool = False,
                     eps: float = 1e-8) -> Tensor:
    """StyleGAN2's modulated convolution: sample i is convolved with weight * styles[i] (scaling each input
    channel), and with demodulate, each output channel's weights divided by their 2-norm (so that a unit-variance
    input gives a unit-variance output). x (N, I, H, W), weight (O, I, k, k), styles (N, I); 'same' padding.

    fused=False (the default, as StyleGAN2-ADA trains): the input scaled by the styles, one convolution with the
    shared weight for the whole batch, the output scaled by the demodulation coefficients; fused=True: the
    per-sample weights built explicitly and applied as one grouped convolution. The same function."""
    n, c_in, h, w_ = x.shape
    c_out, _, kh, kw = weight.shape
    if not fused:
        out = F.conv2d(x * styles.view(n, c_in, 1, 1), weight, padding=kh // 2)
        if demodulate:  # 1 / |weight[o] * styles[i]|, from the squared weights summed over the kernel
            coefficients = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + eps).rsqrt()  # (N, O)
            out = out * coefficients.view(n, c_out, 1, 1)
        return out
    w = weight.unsqueeze(0) * styles.view(n, 1, c_in, 1, 1)  # (N, O, I, k, k)
    if demodulate:
        w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + eps).rsqrt()
    out = F.conv2d(x.reshape(1, n * c_in, h, w_), w.reshape(n * c_out, c_in, kh, kw), padding=kh // 2, groups=n)
    return out.view(n, c_out, h, w_)


class ModulatedConv(nn.Module):
    """A style-modulated 3x3 convolution layer of the synthesis network: an affine map of w gives the styles
    (bias initialised at 1), [up-sampling], the demodulated convolution, per-pixel noise times a learned strength
    (initialised at 0), a bias, leaky ReLU times sqrt(2)."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))
        self.weight_gain = 1.0 / math.sqrt(c_in * 9)
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.up, self.resolution = up, resolution

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random", noise: Optional[Tensor] = None) -> Tensor:
        styles = self.affine(w)
        if self.up:
            x = upsample2d(x)
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, demodulate=True)
        if noise is not None:  # given per sample (N, 1, r, r): what a projection optimises
            x = x + noise.to(x.dtype) * self.noise_strength
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        x = x + self.bias.view(1, -1, 1, 1)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN


class ToRGB(nn.Module):
    """A modulated 1x1 convolution to the image channels, not demodulated, plus a bias."""

    def __init__(self, c_in: int, channels: int, w_dim: int):
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(channels, c_in, 1, 1))
        self.weight_gain = 1.0 / math.sqrt(c_in)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=False) + self.bias.view(1, -1, 1, 1)


class MappingNetwork(nn.Module):
    """z (and the label's embedding) -> w: normalise, `layers` fully connected layers with leaky ReLU at the
    learning-rate multiplier lr_multiplier; keeps w_avg, the running mean of w (updated in training mode)."""

    def __init__(self, z_dim: int, w_dim: int, num_classes: int, layers: int, lr_multiplier: float,
                 w_avg_beta: float, condition_dim: int = 0):
        super().__init__()
        self.z_dim, self.w_dim, self.num_classes, self.w_avg_beta = z_dim, w_dim, num_classes, float(w_avg_beta)
        self.embed = EqualLinear(num_classes, w_dim) if num_classes else None
        # a continuous condition (a caption's embedding) joins z the same way, through a linear embedding
        self.embed_condition = EqualLinear(condition_dim, w_dim) if condition_dim else None
        features = [z_dim + (w_dim if num_classes or condition_dim else 0)] + [w_dim] * layers
        self.layers = nn.Sequential(*(EqualLinear(a, b, lr_multiplier=lr_multiplier, activation="lrelu")
                                      for a, b in zip(features[:-1], features[1:])))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor, y: Optional[Tensor] = None, skip_w_avg_update: bool = False) -> Tensor:
        """w of z (and y); in training mode w_avg moves toward this batch's mean unless skip_w_avg_update
        (style mixing's second latent, as StyleGAN2-ADA's)."""
        x = normalize_2nd_moment(z.flatten(1).float())
        if self.embed is not None:
            if y is None:
                raise GantrainError("this generator is conditional: call it as G(z, labels)")
            one_hot = F.one_hot(y, self.num_classes).to(x.dtype)
            x = torch.cat([x, normalize_2nd_moment(self.embed(one_hot))], dim=1)
        elif self.embed_condition is not None:
            if y is None:
                raise GantrainError("this generator takes a condition: call it as G(z, condition)")
            x = torch.cat([x, normalize_2nd_moment(self.embed_condition(y.flatten(1).float()))], dim=1)
        w = self.layers(x)
        if self.training and self.w_avg_beta < 1 and not skip_w_avg_update:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return w


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> images: the 4x4 constant, two modulated convolutions per resolution above 4 (one
    at 4x4) and a toRGB per resolution, summed across resolutions (skip outputs). num_ws = 2 log2(size) - 2:
    layer i reads ws[:, i]; each toRGB reads the w of the next resolution's first convolution."""

    def __init__(self, size: int, channels: int, w_dim: int, channel_base: int, channel_max: int):
        super().__init__()
        self.size, self.channels = size, channels
        self.resolutions = [2**k for k in range(2, int(math.log2(size)) + 1)]
        width = {r: channels_at(r, channel_base, channel_max) for r in self.resolutions}
        self.const = nn.Parameter(torch.randn(width[4], 4, 4))
        self.convs = nn.ModuleList([ModulatedConv(width[4], width[4], w_dim, 4)])
        self.to_rgbs = nn.ModuleList([ToRGB(width[4], channels, w_dim)])
        for r in self.resolutions[1:]:
            self.convs.append(ModulatedConv(width[r // 2], width[r], w_dim, r, up=True))
            self.convs.append(ModulatedConv(width[r], width[r], w_dim, r))
            self.to_rgbs.append(ToRGB(width[r], channels, w_dim))
        self.num_ws = 2 * len(self.resolutions)  # = 2 log2(size) - 2

    def forward(self, ws: Tensor, noise_mode: str = "random", noises: Optional[Sequence[Tensor]] = None) -> Tensor:
        """noise_mode: random | const | none; noises: one (N, 1, r, r) noise map per convolution instead."""
        if ws.dim() != 3 or ws.shape[1] != self.num_ws:
            raise GantrainError(f"the synthesis network takes ws of shape (N, {self.num_ws}, w_dim), not {tuple(ws.shape)}")
        given = list(noises) if noises is not None else [None] * len(self.convs)
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        x = self.convs[0](x, ws[:, 0], noise_mode, given[0])
        image = self.to_rgbs[0](x, ws[:, 1])
        for k in range(1, len(self.resolutions)):
            x = self.convs[2 * k - 1](x, ws[:, 2 * k - 1], noise_mode, given[2 * k - 1])
            x = self.convs[2 * k](x, ws[:, 2 * k], noise_mode, given[2 * k])
            image = upsample2d(image) + self.to_rgbs[k](x, ws[:, 2 * k + 1])
        return image


class StyleGAN2Generator(Generator):
    """StyleGAN2's generator (module docstring) for square images of a power-of-two size from 8 to 1024.

    latent_dim: size of z (512 in the paper). w_dim: size of w (512). mapping_layers: 8. mapping_lr: the
    mapping network's learning-rate multiplier (0.01). channel_base, channel_max: the widths (above).
    w_avg_beta: decay of the running mean of w (0.995). num_classes (set by the trainer for conditional runs):
    the label's embedding joins z; then call it as G(z, labels).

    G(z[, labels], psi=1, cutoff=None, noise_mode=None); mapping(z[, labels]) -> w (N, w_dim);
    truncate_w(w, psi, cutoff) -> ws (N, num_ws, w_dim); synthesis(ws) -> images. The output is not squashed
    (data space is [-1, 1]; samples are clamped where they are saved).
    """

    style_based = True

    def __init__(self, out_shape: Sequence[int], latent_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8,
                 mapping_lr: float = 0.01, channel_base: int = 32768, channel_max: int = 512,
                 w_avg_beta: float = 0.995, num_classes: int = 0, bounded: bool = True, condition_dim: int = 0):
        super().__init__()
        del bounded  # the builder asks image generators for bounded output; StyleGAN2's is linear, as the paper's
        channels, size = _square_power_of_two(out_shape, "generator")
        latent_dim = _whole(latent_dim, "generator.latent_dim")
        w_dim = _whole(w_dim, "generator.w_dim")
        mapping_layers = _whole(mapping_layers, "generator.mapping_layers")
        channel_base = _whole(channel_base, "generator.channel_base")
        channel_max = _whole(channel_max, "generator.channel_max")
        if isinstance(mapping_lr, bool) or not isinstance(mapping_lr, (int, float)) or not 0 < mapping_lr <= 1:
            raise GantrainError(f"generator.mapping_lr={mapping_lr!r} must be a number in (0, 1] (the paper: 0.01)")
        if isinstance(w_avg_beta, bool) or not isinstance(w_avg_beta, (int, float)) or not 0 <= w_avg_beta <= 1:
            raise GantrainError(f"generator.w_avg_beta={w_avg_beta!r} must be a number in [0, 1] (the paper: 0.995)")
        classes = _check_classes(num_classes)
        self.latent_dim, self.w_dim, self.out_shape, self.num_classes = latent_dim, w_dim, (channels, size, size), classes or None
        self.condition_dim = _whole(condition_dim, "generator.condition_dim", 0) if condition_dim else 0
        if classes and self.condition_dim:
            raise GantrainError("a generator takes class labels or a text condition, not both")
        self.mapping = MappingNetwork(latent_dim, w_dim, classes, mapping_layers, float(mapping_lr), float(w_avg_beta),
                                      self.condition_dim)
        self.synthesis = SynthesisNetwork(size, channels, w_dim, channel_base, channel_max)
        self.num_ws = self.synthesis.num_ws

    def truncate_w(self, w: Tensor, psi: float = 1.0, cutoff: Optional[int] = None) -> Tensor:
        """w (N, w_dim) broadcast to the synthesis layers (N, num_ws, w_dim), or per-layer ws (N, num_ws, w_dim) as
        they are, moved toward w_avg by psi on the first `cutoff` layers (None: all): w_avg + psi (w - w_avg)."""
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1) if w.dim() == 2 else w.clone()
        if psi != 1:
            layers = self.num_ws if cutoff is None else int(cutoff)
            avg = self.mapping.w_avg.to(ws.dtype)
            ws[:, :layers] = avg.lerp(ws[:, :layers], psi)
        return ws

    truncation_in_w = True

    #: the noise inputs when forward is not told: "random" (fresh per call), "const" (each layer's fixed
    #: noise_const: what exported programs use, so that they are deterministic) or "none"
    _noise_mode = "random"

    @property
    def noise_mode(self) -> str:
        return self._noise_mode

    @noise_mode.setter
    def noise_mode(self, mode: str) -> None:
        if mode not in NOISE_MODES:
            raise GantrainError(f"noise_mode={mode!r} must be one of {', '.join(NOISE_MODES)}: fresh noise per call, "
                                f"each layer's fixed noise, or none")
        self._noise_mode = mode

    def forward(self, z: Tensor, y: Optional[Tensor] = None, psi: float = 1.0, cutoff: Optional[int] = None,
                noise_mode: Optional[str] = None) -> Tensor:
        if self.num_classes is None and not self.condition_dim:
            y = None
        w = self.mapping(z, y)
        return self.synthesis(self.truncate_w(w, psi, cutoff), noise_mode or self.noise_mode)


def minibatch_stddev(x: Tensor, group_size: int = 4) -> Tensor:
    """x with one more channel: the standard deviation of each feature over a group of samples (averaged over
    features and pixels), per group. The group is the largest divisor of the batch that is <= group_size."""
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.float().reshape(g, n // g, c, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()  # (n/g, c, h, w)
    y = y.mean(dim=(1, 2, 3)).to(x.dtype)  # (n/g,)
    y = y.view(1, n // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, y], dim=1)


class _DBlock(nn.Module):
    """A residual block of the discriminator: conv3x3, conv3x3 down-sampling; shortcut 1x1 down-sampling (no
    bias); (main + shortcut) * sqrt(1/2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv0 = EqualConv2d(c_in, c_in, 3, activation="lrelu")
        self.conv1 = EqualConv2d(c_in, c_out, 3, activation="lrelu", down=True)
        self.skip = EqualConv2d(c_in, c_out, 1, bias=False, down=True)

    def forward(self, x: Tensor) -> Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


class StyleGAN2Discriminator(Discriminator):
    """StyleGAN2's residual discriminator (module docstring) for power-of-two sizes from 8 to 1024.

    channel_base, channel_max: widths as the generator's. mbstd_group: the minibatch standard deviation's group
    (4). Conditional (num_classes > 0): the output of the last layer (cmap_dim features, default the width at 4x4)
    projected onto a mapped label embedding (embedding, normalised, `mapping_layers` fully connected layers at a
    learning-rate multiplier of 0.01, as StyleGAN2-ADA's), divided by sqrt(cmap_dim); only conditioning=projection.
    """

    def __init__(self, in_shape: Sequence[int], channel_base: int = 32768, channel_max: int = 512,
                 mbstd_group: int = 4, num_classes: int = 0, conditioning: str = "projection",
                 mapping_layers: int = 8, cmap_dim: Optional[int] = None):
        super().__init__()
        channels, size = _square_power_of_two(in_shape, "discriminator")
        channel_base = _whole(channel_base, "discriminator.channel_base")
        channel_max = _whole(channel_max, "discriminator.channel_max")
        self.mbstd_group = _whole(mbstd_group, "discriminator.mbstd_group")
        classes = _check_classes(num_classes)
        if classes and conditioning != "projection":
            raise GantrainError(f"discriminator=stylegan2 projects the label (as StyleGAN2-ADA); "
                                f"condition.discriminator={conditioning} is for dcgan/sngan/mlp: set "
                                f"condition.discriminator=projection")
        self.num_classes, self.conditioning = classes or None, "projection"
        resolutions = [2**k for k in range(int(math.log2(size)), 2, -1)]  # size ... 8
        width = {r: channels_at(r, channel_base, channel_max) for r in resolutions + [4]}
        self.from_rgb = EqualConv2d(channels, width[size], 1, activation="lrelu")
        self.blocks = nn.Sequential(*(_DBlock(width[r], width[r // 2]) for r in resolutions))
        c4 = width[4]
        self.conv = EqualConv2d(c4 + 1, c4, 3, activation="lrelu")
        self.fc = EqualLinear(c4 * 16, c4, activation="lrelu")
        self.cmap_dim = _whole(cmap_dim, "discriminator.cmap_dim") if cmap_dim is not None else c4
        self.out = EqualLinear(c4, self.cmap_dim if classes else 1)
        if classes:
            layers = _whole(mapping_layers, "discriminator.mapping_layers", 0)
            self.embed = EqualLinear(classes, self.cmap_dim)
            self.mapping = nn.Sequential(*(EqualLinear(self.cmap_dim, self.cmap_dim, lr_multiplier=0.01,
                                                       activation="lrelu") for _ in range(layers)))

    def _hidden(self, x: Tensor) -> Tensor:
        """The features before the last layer (N, feature_dim)."""
        h = self.blocks(self.from_rgb(x))
        h = self.conv(minibatch_stddev(h, self.mbstd_group))
        return self.fc(h.flatten(1))

    def features(self, x: Tensor) -> Tensor:
        """The output of the last layer, (N, 1) unconditional or (N, cmap_dim) conditional."""
        return self.out(self._hidden(x))

    @property
    def feature_dim(self) -> int:
        return int(self.fc.weight.shape[0])

    def text_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(the unconditional logit (N,), the features before the last layer (N, feature_dim)): what a
        text-conditioned D projects the caption's embedding onto."""
        h = self._hidden(x)
        return self.out(h)[:, 0], h

    def forward(self, x: Tensor, y: Optional[Tensor] = None, classes: bool = False) -> Any:
        h = self.features(x)
        if self.num_classes is None:
            return h.flatten()
        if y is None:
            raise GantrainError("this discriminator is conditional: call it as D(x, labels)")
        cmap = self.mapping(normalize_2nd_moment(self.embed(F.one_hot(y, self.num_classes).to(h.dtype))))
        logit = (h * cmap).sum(1) / math.sqrt(self.cmap_dim)
        return (logit, None) if classes else logit
