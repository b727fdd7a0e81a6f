"""StyleGAN2's training game (Karras et al. 2020; the phases of the StyleGAN2-ADA code) on the shared loop.

One step, on one real batch:
  G main   G(z) with style mixing (probability `mixing_prob`: a second latent's w from a random layer on)
           judged by D (weights frozen), the loss's generator term, G's update;
  G reg    every `pl_interval` steps (0, 4, 8 ...): the path-length penalty on a batch of size
           batch // pl_batch_shrink: |J_w^T y| for y ~ N(0, I / pixels) against its running mean (decay
           pl_decay), weight pl_weight x pl_interval (lazy regularisation), its own G update;
  D main   D on the real batch and on a fresh G(z) (detached), the loss's discriminator term (and the loss's
           own penalty, if it has one), D's update;
  D reg    every `r1_interval` steps (0, 16, 32 ...): R1 = gamma / 2 E |grad_x D(x)|^2 on the real batch
           (through the augmentation when there is one), weight x r1_interval, its own D update;
  EMA      G's EMA copy, decayed per step from trainer.ema_decay or from ema_kimg (a half-life in thousands
           of images, at most ema_rampup x the images seen so far).

The mapping network keeps w_avg (the running mean of w) in training mode; the EMA copy receives it with the
other buffers. The step counter, the path-length mean and ADA's p are the game's own state in checkpoints, so a
run resumed across a lazy regularisation step repeats the straight run. A step's phases depend on the step
number, which a single captured CUDA graph cannot follow: the loop trains this game eagerly.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from gantrain.errors import GantrainError
from gantrain.training.games import Built, RunSetup
from gantrain.training.games.gan import GAN, ConditionalGAN


class StyleGAN2(GAN):
    """The StyleGAN2 game (module docstring) for a StyleGAN2Generator; unconditional."""

    name = "stylegan2"
    watched = GAN.watched + ("loss/r1", "loss/pl")
    #: why the loop does not capture the step as one CUDA graph
    graph_reason = "the stylegan2 game's lazy regularisation changes a step's phases with the step number"

    def __init__(self, *args: Any, r1_gamma: float, r1_interval: int = 16, pl_weight: float = 2.0,
                 pl_interval: int = 4, pl_decay: float = 0.01, pl_batch_shrink: int = 2, mixing_prob: float = 0.9,
                 ema_kimg: Optional[float] = None, ema_rampup: Optional[float] = 0.05, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.n_critic != 1:
            raise GantrainError(f"the stylegan2 game updates D once per step; set trainer.n_critic=1 (not {self.n_critic})")
        self.r1_gamma, self.r1_interval = float(r1_gamma), int(r1_interval)
        self.pl_weight, self.pl_interval, self.pl_decay = float(pl_weight), int(pl_interval), float(pl_decay)
        self.pl_batch = max(1, self.batch_size // int(pl_batch_shrink))
        self.mixing_prob = float(mixing_prob)
        self.ema_kimg, self.ema_rampup = ema_kimg, ema_rampup
        self.steps_done = 0  # steps of this game so far (the phases' schedule)
        self.pl_mean = torch.zeros((), device=self.device)

    @classmethod
    def build(cls, setup: RunSetup) -> Built:
        """GAN.build's networks, data and evaluation, for generator=stylegan2 (refused otherwise)."""
        target = str(setup.cfg.generator.get("_target_", ""))
        if not target.endswith("StyleGAN2Generator"):
            raise GantrainError(f"game=stylegan2 trains a style-based generator; add generator=stylegan2 "
                                f"discriminator=stylegan2 (the generator is {target or 'unset'})")
        return super().build(setup)

    @classmethod
    def variants(cls) -> tuple[type, type]:
        return StyleGAN2, ConditionalStyleGAN2

    @classmethod
    def keeps_ema(cls, setup: RunSetup) -> bool:
        from gantrain.config import stylegan2_settings

        return setup.settings.ema_decay > 0 or stylegan2_settings(setup.cfg).ema_kimg is not None

    @classmethod
    def own_arguments(cls, setup: RunSetup, generator: Any) -> dict:
        """The stylegan2 settings; r1_gamma null: 0.0002 x image_size^2 / batch_size (StyleGAN2-ADA's auto)."""
        from gantrain.config import stylegan2_settings

        s = stylegan2_settings(setup.cfg)
        size = int(setup.dataset.shape[-1])
        gamma = s.r1_gamma if s.r1_gamma is not None else 0.0002 * size**2 / setup.settings.batch_size
        return dict(r1_gamma=gamma, r1_interval=s.r1_interval, pl_weight=s.pl_weight, pl_interval=s.pl_interval,
                    pl_decay=s.pl_decay, pl_batch_shrink=s.pl_batch_shrink, mixing_prob=s.mixing_prob,
                    ema_kimg=s.ema_kimg, ema_rampup=s.ema_rampup)

    # ---- the phases ----------------------------------------------------------------------------

    def mapped(self, z: Tensor, labels: Optional[Tensor]) -> Tensor:
        """ws (N, num_ws, w_dim) of z, with style mixing: with probability mixing_prob (one draw per batch, on
        the device) the layers from a random cut-off in [1, num_ws) take a second latent's w."""
        G = self.G
        ws = G.truncate_w(G.mapping(z, labels))
        if self.mixing_prob > 0:
            cutoff = torch.randint(1, G.num_ws, (), device=z.device)
            cutoff = torch.where(torch.rand((), device=z.device) < self.mixing_prob, cutoff,
                                 torch.full_like(cutoff, G.num_ws))
            second = G.mapping(torch.randn_like(z), labels, skip_w_avg_update=True)  # w_avg: the first only
            layer = torch.arange(G.num_ws, device=z.device).view(1, -1, 1)
            ws = torch.where(layer < cutoff, ws, second.unsqueeze(1))
        return ws

    def generate(self, n: int, device: torch.device) -> tuple[Tensor, Optional[Tensor], Tensor]:
        """(images, their labels, their ws) of n fresh samples, style-mixed."""
        z = torch.randn(n, self.G.latent_dim, device=device)
        labels = self.fake_labels(device, n)
        ws = self.mapped(z, labels)
        return self.G.synthesis(ws), labels, ws

    def fake_labels(self, device: torch.device, n: Optional[int] = None) -> Optional[Tensor]:
        return None

    def step(self, batch: Any) -> None:
        k = self.steps_done
        real, real_labels = self.real(batch, 0)
        self.generator_main(real.device)
        if self.pl_weight > 0 and k % self.pl_interval == 0:
            self.path_length(real.device)
        self.discriminator_main(real, real_labels)
        if self.r1_gamma > 0 and k % self.r1_interval == 0:
            self.r1(real, real_labels)
        self.steps_done = k + 1
        self.ema_decay = self.ema_beta(self.steps_done)
        self.update_ema()

    def generator_main(self, device: torch.device) -> None:
        self.D.requires_grad_(False)
        with self.autocast:
            fake, labels, _ = self.generate(self.batch_size, device)
            logits, _ = self.judge(self.augmented(fake), labels)
            g_loss = self.loss.g_loss(logits.float())
        self.update("generator", g_loss)
        self.D.requires_grad_(True)
        self.stats.add("loss/g", g_loss)

    def path_length(self, device: torch.device) -> None:
        """The lazy path-length penalty and its own G update (D is not involved)."""
        with self.autocast:
            fake, _, ws = self.generate(self.pl_batch, device)
        fake = fake.float()
        noise = torch.randn_like(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
        (grad,) = torch.autograd.grad((fake * noise).sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(2).mean(1).sqrt()
        with torch.no_grad():
            self.pl_mean.copy_(self.pl_mean.lerp(lengths.mean(), self.pl_decay))
        penalty = (lengths - self.pl_mean).square().mean()
        self.update("generator", penalty * (self.pl_weight * self.pl_interval), stat="grad/g_reg")
        self.stats.add("loss/pl", penalty)
        self.stats.add("pl/mean", self.pl_mean)  # read into the sums at once: no copy needed

    def discriminator_main(self, real: Tensor, real_labels: Optional[Tensor]) -> None:
        with torch.no_grad(), self.autocast:
            fake, labels, _ = self.generate(self.batch_size, real.device)
        loss = self.loss
        with self.autocast:
            seen_real, seen_fake = self.augmented(real), self.augmented(fake)
            real_logits, _ = self.judge(seen_real, real_labels)
            fake_logits, _ = self.judge(seen_fake, labels)
            real_logits, fake_logits = real_logits.float(), fake_logits.float()
            d_loss = loss.d_loss(real_logits, fake_logits)
            penalty = loss.penalty(self.critic_for(real_labels), seen_real, seen_fake) if loss.has_penalty else None
        self.update("discriminator", d_loss if penalty is None else d_loss + penalty)
        self.clip_weights("discriminator", loss.clip)
        self.discriminator_statistics(d_loss, real_logits, fake_logits, penalty)
        if self.augment is not None:
            self.stats.add("augment/p", self.augment.p.sum())

    def r1(self, real: Tensor, real_labels: Optional[Tensor]) -> None:
        """Lazy R1 on the real batch (its gradient taken through the augmentation) and its own D update."""
        x = real.detach().requires_grad_(True)
        with self.autocast:
            logits, _ = self.judge(self.augmented(x), real_labels)
        (grad,) = torch.autograd.grad(logits.float().sum(), x, create_graph=True)
        penalty = grad.float().square().sum(dim=(1, 2, 3)).mean()
        self.update("discriminator", penalty * (self.r1_gamma / 2 * self.r1_interval), stat="grad/d_reg")
        self.stats.add("loss/r1", penalty)

    def ema_beta(self, steps_done: int) -> float:
        """The EMA decay of the step after `steps_done` steps: trainer.ema_decay, or from ema_kimg."""
        if self.ema_kimg is None:
            return self.ema_decay
        half_life = self.ema_kimg * 1000.0
        if self.ema_rampup is not None:
            half_life = min(half_life, steps_done * self.batch_size * self.ema_rampup)
        return 0.5 ** (self.batch_size / max(half_life, 1e-8))

    reported = GAN.reported + ("loss/r1", "loss/pl", "pl/mean")

    def grid(self, sampler: Any) -> Tensor:
        """The sample grid with each layer's fixed noise (noise_const): it draws nothing from the training RNG."""
        if self.fixed_labels is None:
            return sampler(self.fixed_z, noise_mode="const").float()
        return sampler(self.fixed_z, self.fixed_labels, noise_mode="const").float()

    # ---- checkpoint state ------------------------------------------------------------------------

    def own_state(self) -> dict:
        return {**super().own_state(), "steps_done": self.steps_done, "pl_mean": self.pl_mean.detach().cpu().clone()}

    def load_own_state(self, state: dict) -> None:
        super().load_own_state(state)
        if "steps_done" in state:
            self.steps_done = int(state["steps_done"])
            self.pl_mean.copy_(torch.as_tensor(state["pl_mean"]).to(self.pl_mean))
            self.ema_decay = self.ema_beta(self.steps_done)


class ConditionalStyleGAN2(StyleGAN2, ConditionalGAN):
    """The StyleGAN2 game with class labels: G(z, y) (the label's embedding joins z at the mapping network), D
    projects onto a mapped label embedding; real labels from the data, fake ones drawn on the device."""

    name = "stylegan2"

    def fake_labels(self, device: torch.device, n: Optional[int] = None) -> Optional[Tensor]:
        u = torch.rand(self.batch_size if n is None else n, device=device)
        return torch.searchsorted(self.label_cdf, u, right=True).clamp_(max=self.num_classes - 1)
