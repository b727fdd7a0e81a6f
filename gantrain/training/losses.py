"""Adversarial losses as pure functions of discriminator logits, plus gradient penalties.

Every loss takes raw, unbounded discriminator outputs ("logits", shape (N,) or (N, 1)) and returns a
0-dim mean. Sigmoid-based losses use softplus, so they stay finite for any logit:
    -log sigmoid(x) = softplus(-x),   -log(1 - sigmoid(x)) = softplus(x).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from gantrain.errors import GantrainError


def gradient_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP penalty E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = eps real + (1 - eps) fake, eps ~ U[0, 1].

    real, fake: (N, ...) batches of the same shape; the result is differentiable w.r.t. D's weights.
    """
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
    x_hat = torch.lerp(fake.detach().to(real.dtype), real.detach(), alpha).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x_hat).float().sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).float().norm(2, dim=1)
    return (norm - 1.0).square().mean()


def r1_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor) -> Tensor:
    """R1 penalty E[||grad_x D(x)||^2] on real data (Mescheder et al. 2018), without the gamma/2 factor."""
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x).float().sum(), x, create_graph=True)
    return grad.flatten(1).float().square().sum(1).mean()


def matching_gradient_penalty(judge: Callable[[Tensor, Tensor], Tensor], real: Tensor, embedding: Tensor,
                              power: float = 6.0) -> Tensor:
    """DF-GAN's matching-aware gradient penalty (Tao et al. 2022): E[||(grad_x D(x, e), grad_e D(x, e))||_2^power]
    at real images x with their own captions' embeddings e, without the weight."""
    x = real.detach().requires_grad_(True)
    e = embedding.detach().requires_grad_(True)
    gx, ge = torch.autograd.grad(judge(x, e).float().sum(), (x, e), create_graph=True)
    norm = torch.cat([gx.flatten(1).float(), ge.flatten(1).float()], 1).norm(2, dim=1)
    return norm.pow(power).mean()


class GANLoss:
    """An adversarial objective with its optional regularisers.

    clip: weight clipping of the critic to [-clip, clip] after each update (None: off).
    gradient_penalty: lambda of the WGAN-GP penalty (0: off). r1_gamma: gamma of R1 (0: off).
    """

    name = "gan"
    #: True when E D(x) - E D(G(z)) estimates a distance between the distributions (the Wasserstein critic);
    #: the trainer then logs it as loss/wasserstein.
    estimates_distance = False
    #: the logit above which D calls a sample real (its accuracy on real and generated batches is logged);
    #: None where the critic's values have no such threshold (the Wasserstein critic)
    threshold: Optional[float] = 0.0

    def __init__(self, clip: Optional[float] = None, gradient_penalty: float = 0.0, r1_gamma: float = 0.0,
                 matching_penalty: float = 0.0, matching_power: float = 6.0):
        if clip is not None and not 0 < clip < math.inf:
            raise GantrainError(f"loss.clip={clip} must be positive, or null to disable weight clipping")
        if not all(0 <= weight < math.inf for weight in (gradient_penalty, r1_gamma, matching_penalty)):
            raise GantrainError("loss.gradient_penalty, loss.r1_gamma and loss.matching_penalty must be 0 (off) or positive")
        if not 1 <= matching_power < math.inf:  # below 1 the penalty's gradient is infinite where the norm is 0
            raise GantrainError(f"loss.matching_power={matching_power} must be 1 or more (DF-GAN: 6)")
        self.clip = clip
        self.gp_weight = float(gradient_penalty)
        self.r1_gamma = float(r1_gamma)
        #: weight and power of the matching-aware gradient penalty (text runs only; 0: off)
        self.matching_weight, self.matching_power = float(matching_penalty), float(matching_power)

    @property
    def has_penalty(self) -> bool:
        """Whether D's loss has a penalty term (the matching-aware one is a text game's to add)."""
        return self.gp_weight > 0 or self.r1_gamma > 0 or self.matching_weight > 0

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def penalty(self, discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor:
        """The weighted sum of the enabled penalties (0-dim); call only when has_penalty."""
        total = real.new_zeros((), dtype=torch.float32)
        if self.gp_weight > 0:
            total = total + self.gp_weight * gradient_penalty(discriminator, real, fake)
        if self.r1_gamma > 0:
            total = total + 0.5 * self.r1_gamma * r1_penalty(discriminator, real)
        return total


class Minimax(GANLoss):
    """The saturating min-max game: D maximises log D(x) + log(1 - D(G(z))); G minimises log(1 - D(G(z)))."""

    name = "minimax"

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        # log(1 - sigmoid(x)) = -softplus(x)
        return -F.softplus(fake_logits).mean()


class NonSaturating(Minimax):
    """D as in minimax; G minimises -log D(G(z))."""

    name = "nonsaturating"

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits).mean()


class Wasserstein(GANLoss):
    """Wasserstein critic: D minimises D(G(z)) - D(x); G minimises -D(G(z))."""

    name = "wasserstein"
    estimates_distance = True
    threshold = None

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()


class Hinge(GANLoss):
    """Hinge loss: D minimises relu(1 - D(x)) + relu(1 + D(G(z))); G minimises -D(G(z))."""

    name = "hinge"

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return -fake_logits.mean()


class LeastSquares(GANLoss):
    """LSGAN with a=0, b=1, c=1: D minimises ((D(x)-1)^2 + D(G(z))^2)/2; G minimises (D(G(z))-1)^2/2."""

    name = "lsgan"
    threshold = 0.5  # halfway between the targets of generated (0) and real (1) samples

    def d_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return 0.5 * ((real_logits - 1.0).square().mean() + fake_logits.square().mean())

    def g_loss(self, fake_logits: Tensor) -> Tensor:
        return 0.5 * (fake_logits - 1.0).square().mean()
