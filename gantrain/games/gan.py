"""The unconditional GAN: n_critic discriminator updates on real and generated batches, then one generator update."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Optional

import torch
from torch import Tensor, nn

from ..data import normalize
from ..losses import GANLoss
from ..models import Generator
from . import Game


class GAN(Game):
    """G maps z ~ N(0, I) to data; D scores real against generated data under `loss`.

    Phases of one step, for each of the n_critic batches: the discriminator phase (D on real and on
    G(z).detach(), the loss and its penalties, D's update, weight clipping); then the generator phase
    on the last critic batch's G(z), with D's weights frozen; then the EMA of G.
    """

    name = "gan"
    sampled = "generator"
    watched = ("loss/d", "loss/g", "loss/penalty")

    def __init__(self, generator: Generator, discriminator: nn.Module, loss: GANLoss, n_critic: int,
                 batch_size: int, num_samples: int, seed: int, ema: Optional[Generator] = None, ema_decay: float = 0.0,
                 **base):
        super().__init__(**base)
        self.G, self.D, self.loss = generator, discriminator, loss
        self.networks = {"generator": generator, "discriminator": discriminator}
        if ema is not None:
            self.ema = {"generator": ema}
        self.ema_decay = float(ema_decay)
        self.n_critic, self.batch_size = int(n_critic), int(batch_size)
        # the fixed noise of every sample grid (its own generator: the training RNG is not touched)
        self.fixed_z = torch.randn(num_samples, generator.latent_dim,
                                   generator=torch.Generator().manual_seed(seed + 1)).to(self.device)

    def batches_per_step(self) -> int:
        return self.n_critic

    def step(self, batch: Tensor) -> None:
        fake = self.discriminator_phases(batch)
        self.generator_phase(fake)
        self.update_ema()

    def discriminator_phases(self, batch: Tensor) -> Tensor:
        """n_critic updates of D; returns the last G(z), whose graph the generator phase backpropagates."""
        G, D, loss = self.G, self.D, self.loss
        for i in range(self.n_critic):
            real = normalize(batch[i])
            z = torch.randn(self.batch_size, G.latent_dim, device=real.device)
            last = i == self.n_critic - 1
            with self.autocast, (nullcontext() if last else torch.no_grad()):
                fake = G(z)
            with self.autocast:
                real_logits = D(real).float()
                fake_logits = D(fake.detach()).float()
                d_loss = loss.d_loss(real_logits, fake_logits)
                penalty = loss.penalty(D, real, fake) if loss.has_penalty else None
            self.update("discriminator", d_loss if penalty is None else d_loss + penalty)
            if loss.clip is not None:
                with torch.no_grad():
                    params = list(D.parameters())
                    torch._foreach_clamp_min_(params, -loss.clip)
                    torch._foreach_clamp_max_(params, loss.clip)
            self.stats.add("loss/d", d_loss)
            self.stats.add("d/real", real_logits.detach().mean())
            self.stats.add("d/fake", fake_logits.detach().mean())
            if penalty is not None:
                self.stats.add("loss/penalty", penalty)
        return fake

    def generator_phase(self, fake: Tensor) -> None:
        """One update of G through D (D's weights frozen) on the generated batch `fake`."""
        self.D.requires_grad_(False)
        with self.autocast:
            g_loss = self.loss.g_loss(self.D(fake).float())
        self.update("generator", g_loss)
        self.D.requires_grad_(True)
        self.stats.add("loss/g", g_loss)

    @torch.no_grad()
    def sample_grid(self) -> Tensor:
        g = self.sampler()
        was_training = g.training
        g.eval()
        with self.autocast:
            samples = g(self.fixed_z).float()
        g.train(was_training)
        return samples

    def report(self, means: dict[str, float]) -> dict[str, float]:
        values = {k: means[k] for k in ("loss/d", "loss/g", "d/real", "d/fake") if k in means}
        if self.loss.has_penalty and "loss/penalty" in means:
            values["loss/penalty"] = means["loss/penalty"]
        if self.loss.estimates_distance and "d/real" in means:
            # the critic's estimate of the Wasserstein-1 distance: E D(x) - E D(G(z))
            values["loss/wasserstein"] = means["d/real"] - means["d/fake"]
        values.update(self.learning_rates())
        return values
