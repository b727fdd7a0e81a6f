"""GANs: n_critic discriminator updates on real and generated batches, then one generator update.

`GAN` is unconditional; `ConditionalGAN` gives both networks the class labels (the batches are
(images, labels) pairs; generated samples get labels drawn on the device).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.data.base import normalize
from gantrain.errors import GantrainError
from gantrain.training.losses import GANLoss
from gantrain.nets.base import Generator
from gantrain.training.games import Built, Game, RunSetup, make_ema


def cuda_image_layout(device: torch.device, kind: str, *networks: nn.Module) -> None:
    """Networks of images on CUDA run channels-last, with cuDNN's autotuner on (faster convolutions); anywhere
    else (the CPU, points) nothing changes."""
    if device.type == "cuda" and kind == "image":
        for network in networks:
            network.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True


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
        self.set_networks({"generator": generator, "discriminator": discriminator}, ema, ema_decay)
        self.n_critic, self.batch_size = int(n_critic), int(batch_size)
        #: columns of the sample grid (None: as square as the count allows)
        self.grid_columns: Optional[int] = None
        self.grid_seed = seed + 1
        self.fixed_z = self.grid_noise(num_samples)
        self.fixed_labels: Optional[Tensor] = None
        #: differentiable augmentation of everything D sees (gantrain.training.augment.Augment), or None
        self.augment: Optional[Any] = None

    @classmethod
    def build(cls, setup: RunSetup) -> Built:
        """G and D of cfg.generator / cfg.discriminator for the dataset (conditional when setup.condition is set),
        the batch stream, augmentation, the evaluator of trainer.metrics and the diagnosis' real batch."""
        from gantrain.training import distributed
        from gantrain.training.components import check_combination, make_evaluator, reference_batch, seed_everything
        from gantrain.data.streaming import make_batches

        cfg, settings, dataset, device, dist = setup.cfg, setup.settings, setup.dataset, setup.device, setup.dist
        condition, augment = setup.condition, setup.augment
        if getattr(dataset, "paired", None) is not None:
            raise GantrainError(f"dataset {dataset.name} is for image-to-image translation: add model=pix2pix (paired) "
                                f"or model=cyclegan, or pick another dataset")
        generator, discriminator, num_classes, paired, meta = cls.make_networks(setup)
        names = getattr(getattr(dataset, "base", dataset), "classes", None)
        if num_classes and names:  # which label is which folder: kept with the run, checked on resume
            meta = {**meta, "class_names": [str(n) for n in names]}
        check_combination(setup.loss, cfg)
        batches = make_batches(dataset, settings.batch_size, setup.seed, device, settings.num_workers, dist.rank,
                               dist.world, labelled=num_classes is not None, labels=paired)
        generator.to(device)
        discriminator.to(device)
        cuda_image_layout(device, dataset.kind, generator, discriminator)
        if dist.enabled:
            distributed.broadcast_state(generator)
            distributed.broadcast_state(discriminator)
            seed_everything(setup.seed + 1_000_003 * dist.rank)  # the same weights everywhere, different noise per process
        common = dict(n_critic=settings.n_critic, batch_size=settings.batch_size, num_samples=settings.num_samples,
                      seed=setup.seed, ema=make_ema(generator) if cls.keeps_ema(setup) else None,
                      ema_decay=settings.ema_decay, **setup.base())
        common.update(cls.own_arguments(setup, generator))
        plain, conditional = cls.variants()
        if condition is None or paired is not None:  # unconditional, or paired with captions (a text run)
            game: GAN = plain(generator, discriminator, setup.loss, **common)
        else:
            frequencies = (torch.bincount(dataset.labels(), minlength=num_classes) if condition.fake_labels == "data"
                           else None)
            game = conditional(generator, discriminator, setup.loss, num_classes=num_classes,
                               conditioning=condition.discriminator, ac_weight=condition.ac_weight,
                               label_frequencies=frequencies, grid_classes=condition.grid_classes, **common)
        if augment is not None:
            if dataset.kind != "image":
                raise GantrainError(f"augment.policy transforms images and {dataset.name} holds 2D points; set "
                                    f"augment.policy=null")
            from gantrain.training.augment import Augment

            game.augment = Augment(augment.policy, p=0.0 if augment.ada else augment.p,
                                   ada_target=augment.ada_target if augment.ada else None,
                                   ada_interval=augment.ada_interval, ada_kimg=augment.ada_kimg,
                                   batch_size=settings.batch_size * dist.world, device=device,
                                   average=(lambda t: distributed.all_sum(t) / dist.world) if dist.enabled else None)
        scored = getattr(dataset, "base", dataset)  # a run on dataset.subset is scored against the full dataset
        # made (cheaply: set-up waits for first use) also to check trainer.best_metric when evaluation is off
        checked = setup.evaluate and dist.main and (settings.eval_every > 0 or bool(settings.best_metric))
        evaluator = make_evaluator(scored, settings, device, num_classes is not None) if checked else None
        return Built(game, batches,
                     {"data_shape": list(dataset.shape), "data_kind": dataset.kind, "num_classes": num_classes, **meta},
                     evaluator=evaluator if settings.eval_every > 0 else None,
                     reference=dataset.tensor()[:2500] if dataset.kind == "points" else None,
                     diagnosis=reference_batch(dataset, setup.seed) if settings.diagnose and dist.main else None)

    @classmethod
    def make_networks(cls, setup: RunSetup) -> tuple[Generator, nn.Module, Optional[int], Optional[Tensor], dict]:
        """(G, D, the number of classes of a conditional run (None: none), what each sample is paired with
        instead of its class (None: its class, or nothing), the game's own checkpoint metadata)."""
        from gantrain.training.components import build_discriminator, build_generator, check_fits, check_labelled

        cfg, dataset, condition = setup.cfg, setup.dataset, setup.condition
        target = str(cfg.generator.get("_target_", ""))
        if target.startswith("gantrain.nets.translation."):  # G(image), not G(z)
            raise GantrainError(f"generator={target.rsplit('.', 1)[-1].replace('Generator', '').lower()} translates "
                                f"images (pix2pix, CycleGAN): add model=pix2pix or model=cyclegan with a paired or "
                                f"unpaired dataset, or pick a generator of noise (dcgan, sngan, mlp, stylegan2)")
        num_classes = check_labelled(dataset, condition)
        check_fits(cfg, dataset, setup.settings, setup.device, condition)
        generator = build_generator(cfg.generator, dataset.shape, dataset.kind, num_classes)
        return generator, build_discriminator(cfg, dataset, condition), num_classes, None, {}

    @classmethod
    def keeps_ema(cls, setup: RunSetup) -> bool:
        """Whether the game keeps an EMA copy of G (trainer.ema_decay > 0)."""
        return setup.settings.ema_decay > 0

    @classmethod
    def variants(cls) -> tuple[type, type]:
        """The game classes build makes: (unconditional, conditional)."""
        return GAN, ConditionalGAN

    @classmethod
    def own_arguments(cls, setup: RunSetup, generator: Generator) -> dict:
        """Arguments of a subclass's own, from the run's config, for its constructor (none here)."""
        return {}

    def grid_noise(self, count: int) -> Tensor:
        """The fixed noise of every sample grid (its own generator: the training RNG is not touched)."""
        return torch.randn(count, self.G.latent_dim, generator=torch.Generator().manual_seed(self.grid_seed)).to(self.device)

    def batches_per_step(self) -> int:
        return self.n_critic

    def step(self, batch: Any) -> None:
        fake, labels = self.discriminator_phases(batch)
        self.generator_phase(fake, labels)
        self.update_ema()

    # ---- what the conditional game changes ------------------------------------------------------

    def real(self, batch: Any, i: int) -> tuple[Tensor, Optional[Tensor]]:
        """The i-th real batch of a step in data space, and its labels (None: unconditional)."""
        return normalize(batch[i]), None

    def fake_labels(self, device: torch.device) -> Optional[Tensor]:
        """Labels for a batch of generated samples (None: unconditional)."""
        return None

    def judge(self, x: Tensor, y: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
        """D's logits for x, and its class logits where it has a classifier head."""
        return self.D(x), None

    def critic_for(self, y: Optional[Tensor]) -> Callable[[Tensor], Tensor]:
        """D as a function of x alone (what the penalties differentiate)."""
        return self.D

    def classifier_loss(self, class_logits: Optional[Tensor], y: Optional[Tensor], who: str) -> Optional[Tensor]:
        """An auxiliary classifier's loss added to D's or G's (None: none)."""
        return None

    def augmented(self, x: Tensor) -> Tensor:
        """What D sees of a batch: x through the augmentation when there is one (real and generated alike)."""
        return x if self.augment is None else self.augment(x)

    # ---- the phases --------------------------------------------------------------------------

    def discriminator_phases(self, batch: Any) -> tuple[Tensor, Optional[Tensor]]:
        """n_critic updates of D; returns the last G(z) (whose graph the generator phase backpropagates)
        and its labels."""
        G, loss = self.G, self.loss
        for i in range(self.n_critic):
            real, real_labels = self.real(batch, i)
            z = torch.randn(self.batch_size, G.latent_dim, device=real.device)
            labels = self.fake_labels(real.device)
            last = i == self.n_critic - 1
            with self.autocast, (nullcontext() if last else torch.no_grad()):
                fake = G(z) if labels is None else G(z, labels)
            with self.autocast:
                seen_real, seen_fake = self.augmented(real), self.augmented(fake.detach())
                real_logits, real_classes = self.judge(seen_real, real_labels)
                fake_logits, _ = self.judge(seen_fake, labels)
                real_logits, fake_logits = real_logits.float(), fake_logits.float()
                d_loss = loss.d_loss(real_logits, fake_logits)
                penalty = (loss.penalty(self.critic_for(real_labels), seen_real, seen_fake) if loss.has_penalty
                           else None)
                extra = self.classifier_loss(real_classes, real_labels, "d")
            total = d_loss if penalty is None else d_loss + penalty
            self.update("discriminator", total if extra is None else total + extra)
            self.clip_weights("discriminator", loss.clip)
            self.discriminator_statistics(d_loss, real_logits, fake_logits, penalty)
            if extra is not None:
                self.stats.add("loss/class_d", extra)
        return fake, labels

    def discriminator_statistics(self, d_loss: Tensor, real_logits: Tensor, fake_logits: Tensor,
                                 penalty: Optional[Tensor]) -> None:
        """After D's update: its loss, mean logits and accuracies, ADA's observation of the real logits, the
        penalty."""
        self.stats.add("loss/d", d_loss)
        self.stats.add("d/real", real_logits.detach().mean())
        self.stats.add("d/fake", fake_logits.detach().mean())
        if self.loss.threshold is not None:
            self.stats.add("d/acc_real", (real_logits.detach() > self.loss.threshold).float().mean())
            self.stats.add("d/acc_fake", (fake_logits.detach() <= self.loss.threshold).float().mean())
        if self.augment is not None:
            self.augment.observe(real_logits.detach())
        if penalty is not None:
            self.stats.add("loss/penalty", penalty)

    def generator_phase(self, fake: Tensor, labels: Optional[Tensor] = None) -> None:
        """One update of G through D (D's weights frozen) on the generated batch `fake` (of `labels`)."""
        self.D.requires_grad_(False)
        with self.autocast:
            logits, classes = self.judge(self.augmented(fake), labels)
            g_loss = self.loss.g_loss(logits.float())
            extra = self.classifier_loss(classes, labels, "g")
        self.update("generator", g_loss if extra is None else g_loss + extra)
        self.D.requires_grad_(True)
        self.stats.add("loss/g", g_loss)
        if self.augment is not None:
            self.stats.add("augment/p", self.augment.p.sum())
        if extra is not None:
            self.stats.add("loss/class_g", extra)

    # ---- what is shown and logged ------------------------------------------------------------

    def grid(self, sampler: nn.Module) -> Tensor:
        return (sampler(self.fixed_z) if self.fixed_labels is None else sampler(self.fixed_z, self.fixed_labels)).float()

    reported = ("loss/d", "loss/g", "d/real", "d/fake", "loss/class_d", "loss/class_g")

    def derived(self, means: dict[str, float]) -> dict[str, float]:
        if self.loss.estimates_distance and "d/real" in means:
            # the critic's estimate of the Wasserstein-1 distance: E D(x) - E D(G(z))
            return {"loss/wasserstein": means["d/real"] - means["d/fake"]}
        return {}

    def shared_tensors(self) -> list:
        return [self.augment.p] if self.augment is not None else []

    def own_state(self) -> dict:
        return {"augment": self.augment.state_dict()} if self.augment is not None else {}

    def load_own_state(self, state: dict) -> None:
        if self.augment is not None:
            if "augment" not in state:
                raise GantrainError("the checkpoint was trained without augmentation; resume with augment.policy=null")
            self.augment.load_state_dict(state["augment"])


class ConditionalGAN(GAN):
    """A class-conditional GAN: G(z, y) and D(x, y), real labels from the data, fake ones drawn on the device.

    conditioning: how D uses the labels (projection, concat, ac); ac adds `ac_weight` times the
    auxiliary classifier's cross-entropy to D's loss (on real images) and to G's (on generated ones).
    label_frequencies: the distribution fake labels are drawn from. grid_classes: rows of the sample
    grid (images: one class per row, the same noise down each column; points: every class in turn).
    """

    name = "cgan"
    watched = GAN.watched + ("loss/class_d", "loss/class_g")

    def __init__(self, *args: Any, num_classes: int, conditioning: str = "projection", ac_weight: float = 1.0,
                 label_frequencies: Optional[Tensor] = None, grid_classes: int = 10, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.num_classes, self.grid_classes = int(num_classes), int(grid_classes)
        self.conditioning, self.ac_weight = conditioning, float(ac_weight)
        self.fixed_z = self.grid_noise(self.grid_size(len(self.fixed_z)))
        frequencies = (torch.ones(self.num_classes) if label_frequencies is None else label_frequencies.float())
        cdf = (frequencies / frequencies.sum()).cumsum(0)
        self.label_cdf = cdf.to(self.device)
        rows = min(self.num_classes, self.grid_classes)
        if self.grid_columns:  # images: row r shows class r, column c the same noise
            self.fixed_z = self.fixed_z.repeat(rows, 1)
            self.fixed_labels = torch.arange(rows, device=self.device).repeat_interleave(self.grid_columns)
        else:
            self.fixed_labels = torch.arange(len(self.fixed_z), device=self.device) % self.num_classes

    def grid_size(self, num_samples: int) -> int:
        """How many noise vectors the grid draws (images: one per column, repeated down the class rows)."""
        if len(self.G.out_shape) != 3:  # 2D points: one scatter of every class
            self.grid_columns = None
            return num_samples
        rows = min(self.num_classes, self.grid_classes)
        self.grid_columns = max(1, num_samples // rows)
        return self.grid_columns

    def real(self, batch: Any, i: int) -> tuple[Tensor, Optional[Tensor]]:
        samples, labels = batch
        return normalize(samples[i]), labels[i]

    def fake_labels(self, device: torch.device) -> Optional[Tensor]:
        # inverse CDF of uniform draws: on the device, no host sync, the same under a CUDA graph
        u = torch.rand(self.batch_size, device=device)
        return torch.searchsorted(self.label_cdf, u, right=True).clamp_(max=self.num_classes - 1)

    def judge(self, x: Tensor, y: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
        if self.conditioning == "ac":
            return self.D(x, y, classes=True)
        return self.D(x, y), None

    def critic_for(self, y: Optional[Tensor]) -> Callable[[Tensor], Tensor]:
        return lambda x: self.D(x, y)  # penalties on interpolates and real images use the real labels

    def classifier_loss(self, class_logits: Optional[Tensor], y: Optional[Tensor], who: str) -> Optional[Tensor]:
        if class_logits is None or y is None:
            return None
        return self.ac_weight * F.cross_entropy(class_logits.float(), y)
