"""Projection (GAN inversion): the latent point from which a trained generator reproduces a given image.

For a style-based generator (space w or w_plus) the method of the StyleGAN2 projector (Karras et al. 2020,
appendix D): start from the mean w, optimise w (one for every layer, or one per layer with w_plus) and the
noise inputs with Adam, the learning rate ramped up over the first 5% of the steps and down (cosine) over the
last 25%, Gaussian noise of 5% of w's spread added to w and decaying to zero at 75% of the steps, the noise maps
kept at zero mean and unit variance and regularised toward no spatial autocorrelation at every scale. space=z
(any generator): z itself, from z = 0, with the same schedule. The distance is the mean squared pixel error plus,
when given, `perceptual_weight` times the summed squared difference of feature vectors (LPIPS's weighted
features, whose summed squared difference is the LPIPS distance, or the run's domain classifier's features).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.errors import GantrainError

SPACES = ("w", "w_plus", "z")


@dataclass
class Projection:
    """What project() found: the reproduced images, their latents (w: (N, w_dim); w_plus: (N, num_ws, w_dim);
    z: (N, latent_dim)), the noise maps (style-based), the images at the start, and per image the final
    distance and PSNR (dB, images in [-1, 1])."""

    images: Tensor
    latents: Tensor
    space: str
    start: Tensor
    distance: Tensor
    psnr: Tensor
    noises: Optional[list[Tensor]] = None
    labels: Optional[Tensor] = None


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).square().flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(4.0 / mse)


def noise_regularization(noises: list[Tensor]) -> Tensor:
    """The projector's penalty on spatial autocorrelation of the noise maps, at every scale down to 8x8."""
    total = noises[0].new_zeros(())
    for noise in noises:
        n = noise
        while True:
            total = total + (n * torch.roll(n, 1, dims=3)).mean().square() + (n * torch.roll(n, 1, dims=2)).mean().square()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


def _schedule(t: float, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / rampup)


def project(generator: nn.Module, targets: Tensor, space: Optional[str] = None, steps: int = 1000, lr: float = 0.1,
            labels: Optional[Tensor] = None, features: Optional[Callable[[Tensor], Tensor]] = None,
            perceptual_weight: float = 1.0, noise_weight: float = 1e5, seed: int = 0,
            on_step: Optional[Callable[[int, Tensor], None]] = None) -> Projection:
    """Project `targets` ((N, C, H, W) in [-1, 1], the generator's shape, on its device) into its latent space.

    space: w | w_plus (style-based generators) | z (any); None: w for a style-based generator, else z. labels: (N,) classes of a conditional generator.
    features: a perceptual feature map x -> (N, F) (None: pixels only). on_step(step, distance per image).
    """
    from gantrain.nets.control import is_style_based

    if not isinstance(generator, nn.Module):
        raise GantrainError(f"project takes a generator (gantrain.load_generator(RUN)), not {type(generator).__name__} "
                            f"{generator!r:.80}")
    if not isinstance(targets, Tensor):
        raise GantrainError(f"targets must be a torch tensor of images (N, C, H, W) in [-1, 1], not "
                            f"{type(targets).__name__} (torch.from_numpy(array).float() converts a NumPy array)")
    if targets.ndim != 4 or len(targets) == 0:
        raise GantrainError(f"targets of shape {tuple(targets.shape)}: give one image or more as (N, C, H, W)")
    style = is_style_based(generator)
    if space is None:
        space = "w" if style else "z"
    if space not in SPACES:
        raise GantrainError(f"space={space} is not one of {', '.join(SPACES)}")
    if space != "z" and not style:
        raise GantrainError(f"space={space} needs a style-based run (generator=stylegan2); this run's generator has "
                            f"only z: use space=z")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise GantrainError(f"steps={steps} must be a whole number >= 1")
    for key, value in (("lr", lr), ("perceptual_weight", perceptual_weight), ("noise_weight", noise_weight)):
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= float(value) < math.inf):
            raise GantrainError(f"{key}={value!r} must be a number >= 0 (0 turns it off)")
    shape = tuple(getattr(generator, "out_shape", ()))
    if tuple(targets.shape[1:]) != shape:
        raise GantrainError(f"images of shape {tuple(targets.shape[1:])} do not fit the generator's {shape}")
    classes = getattr(generator, "num_classes", None)
    if classes and labels is None:
        raise GantrainError("this generator is conditional: give the images' labels")
    if classes:
        labels = torch.as_tensor(labels)
        if labels.shape != (len(targets),) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise GantrainError(f"labels must be {len(targets)} whole numbers, one per image, not shape "
                                f"{tuple(labels.shape)} of {labels.dtype}")
        if bool(((labels < 0) | (labels >= classes)).any()):
            raise GantrainError(f"labels must be classes 0..{classes - 1} of this generator; got "
                                f"{sorted(set(labels.tolist()))[:10]}")
    generator.eval()
    generator.requires_grad_(False)
    device, n = targets.device, len(targets)
    rng = torch.Generator().manual_seed(seed)
    y = None if not classes else labels.to(device)
    noises: Optional[list[Tensor]] = None
    if space == "z":
        latent = torch.zeros(n, int(generator.latent_dim), device=device, requires_grad=True)
        w_std = 0.0
        params = [latent]
    else:
        with torch.no_grad():  # the mean and spread of w (per image: its label's w under conditioning)
            probe = torch.randn(n, 256, int(generator.latent_dim), generator=rng).to(device)
            ws = torch.stack([generator.mapping(probe[i], None if y is None else y[i].expand(256))
                              for i in range(n)])  # (N, 256, w_dim)
            w_mean = ws.mean(1)
            w_std = float((ws - w_mean[:, None]).square().sum(2).mean().sqrt())
        layers = generator.num_ws if space == "w_plus" else 1
        latent = w_mean[:, None, :].repeat(1, layers, 1).clone().requires_grad_(True)
        synthesis = generator.synthesis
        noises = [torch.randn((n, 1, conv.resolution, conv.resolution), generator=rng).to(device).requires_grad_(True)
                  for conv in synthesis.convs]
        params = [latent, *noises]
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    target_features = features(targets).detach() if features is not None else None

    def render(latent_now: Tensor) -> Tensor:
        if space == "z":
            return generator(latent_now) if y is None else generator(latent_now, y)
        ws_now = latent_now.expand(-1, generator.num_ws, -1) if latent_now.shape[1] == 1 else latent_now
        return generator.synthesis(ws_now, noises=noises)

    def distance_of(images: Tensor) -> Tensor:
        d = (images.float() - targets.float()).square().flatten(1).mean(1)
        if features is not None:
            d = d + perceptual_weight * (features(images) - target_features).square().flatten(1).sum(1)
        return d

    with torch.no_grad():
        start = render(latent).float()
    for step in range(steps):
        t = step / steps
        for group in optimizer.param_groups:
            group["lr"] = _schedule(t, lr)
        jitter = w_std * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
        noisy = latent + torch.randn(latent.shape, generator=rng).to(device) * jitter if jitter > 0 else latent
        images = render(noisy)
        distance = distance_of(images)
        loss = distance.sum()
        if noises is not None and noise_weight > 0:
            loss = loss + noise_weight * noise_regularization(noises) * n
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if noises is not None:
            with torch.no_grad():
                for noise in noises:  # zero mean, unit variance per map
                    noise -= noise.mean(dim=(1, 2, 3), keepdim=True)
                    noise /= noise.square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-8)
        if on_step is not None:
            on_step(step, distance.detach())
    with torch.no_grad():
        final = render(latent).float()
        result_distance = distance_of(final)
    latents = latent.detach()
    if space == "w":
        latents = latents[:, 0]
    return Projection(final, latents, space, start, result_distance, psnr(final, targets),
                      None if noises is None else [x.detach() for x in noises], None if y is None else y.detach())
