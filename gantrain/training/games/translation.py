"""Image-to-image translation: pix2pix (paired, Isola et al. 2017) and CycleGAN (unpaired, Zhu et al. 2017).

Both translate images of domain A into domain B. The translating networks live in one `Translator`
(`ab`: A -> B, and for CycleGAN `ba`: B -> A), which is the run's "generator": checkpoints, the EMA copy,
`gantrain-translate` and the evaluation use it. The adversarial terms come from the loss group and are
weighted as in the reference implementation (pytorch-CycleGAN-and-pix2pix): a discriminator's loss is
the mean of its real and fake terms, a generator's the plain term.

Everything in a step runs on the device without a host sync (random crops and flips, the history pool),
so the step can be captured as a CUDA graph like the other games'.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.data.base import normalize
from gantrain.errors import GantrainError
from gantrain.training.losses import GANLoss
from gantrain.nets.translation import Translator, to_channels
from gantrain.training.games import Built, Game, RunSetup, make_ema

def jitter(x: Tensor, load_size: int, flip: bool) -> Tensor:
    """pix2pix's augmentation, per sample and on the device: resize to load_size, crop a random window of
    the original size, flip left-right with probability 1/2. Every channel of a sample gets the same crop
    and flip, so A and B of a paired batch (stacked as channels) stay aligned."""
    n, c, s, _ = x.shape
    if load_size > s:
        big = F.interpolate(x, size=(load_size, load_size), mode="bilinear", align_corners=False)
        offsets = torch.randint(0, load_size - s + 1, (n, 2), device=x.device)
        steps = torch.arange(s, device=x.device)
        rows = (offsets[:, :1] + steps).view(n, 1, s, 1)
        cols = (offsets[:, 1:] + steps).view(n, 1, 1, s)
        x = big[torch.arange(n, device=x.device).view(n, 1, 1, 1), torch.arange(c, device=x.device).view(1, c, 1, 1), rows, cols]
    if flip:
        mirrored = torch.rand(n, device=x.device) < 0.5
        x = torch.where(mirrored.view(n, 1, 1, 1), x.flip(-1), x)
    return x


#: CycleGAN's stage-batched generator calls apply up to this batch x height x width (32 x 32 x 8)
BATCHED_PIXELS = 8192


class ImagePool(nn.Module):
    """The history of generated images the CycleGAN discriminators also see (Shrivastava et al. 2017).

    Until full, each image is stored and returned as it is; then each image is, with probability 1/2,
    swapped with a random stored one (the stored one is returned), else returned as it is. The images and
    the count are buffers: on the device (no host sync) and in the checkpoint.
    """

    def __init__(self, size: int, shape: tuple[int, ...]):
        super().__init__()
        self.size = int(size)
        self.register_buffer("images", torch.zeros((max(self.size, 1), *shape)))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    @torch.no_grad()
    def forward(self, batch: Tensor) -> Tensor:
        batch = batch.detach().to(self.images.dtype)  # the discriminators' update never reaches the generators
        if self.size == 0:
            return batch
        out = []
        for image in batch:
            filling = self.count < self.size
            slot_random = torch.randint(0, self.size, (), device=batch.device)
            use_stored = ~filling & (torch.rand((), device=batch.device) < 0.5)
            slot = torch.where(filling, self.count.clamp(max=self.size - 1), slot_random)
            stored = self.images[slot]
            out.append(torch.where(use_stored, stored, image))
            keep = filling | use_stored  # the new image goes into the pool
            self.images.index_copy_(0, slot.view(1), torch.where(keep, image, stored).unsqueeze(0))
            self.count.add_(filling.long())
        return torch.stack(out)


def _adversarial_scales(loss: GANLoss) -> tuple[float, float]:
    """(D scale, G scale) that make the loss group's terms the reference's: D the mean of its real and fake
    terms, G the plain term (LSGAN's terms already carry a factor 1/2)."""
    return (1.0, 2.0) if loss.name == "lsgan" else (0.5, 1.0)


def _grid(rows: list[list[Tensor]]) -> Tensor:
    """Rows of image batches side by side, as one batch for a grid (every image in the most channels)."""
    channels = max(t.shape[1] for row in rows for t in row)
    return torch.cat([torch.stack([to_channels(t, channels) for t in row], 1).flatten(0, 1) for row in rows])


class Pix2Pix(Game):
    """Paired translation: the U-Net maps A to B; the PatchGAN judges (A, B) pairs; L1 to the target.

    A batch holds each pair as the channels of one image (A's first), so crops and flips are shared.
    """

    name = "pix2pix"
    sampled = "generator"
    watched = ("loss/d", "loss/g", "loss/l1", "loss/penalty")

    def __init__(self, translator: Translator, discriminator: nn.Module, loss: GANLoss, l1_weight: float,
                 load_size: int, flip: bool, grid_a: Tensor, grid_b: Tensor, ema: Optional[Translator] = None,
                 ema_decay: float = 0.0, source_channels_a: Optional[int] = None, **base: Any):
        super().__init__(**base)
        self.T, self.D, self.loss = translator, discriminator, loss
        self.set_networks({"generator": translator, "discriminator": discriminator}, ema, ema_decay)
        self.l1_weight, self.load_size, self.flip = float(l1_weight), int(load_size), bool(flip)
        self.ca, self.source_a = translator.channels_a, source_channels_a
        self.grid_a, self.grid_b = grid_a.to(self.device), grid_b.to(self.device)
        self.grid_columns = 6  # two (input | output | target) triplets per row
        self.d_scale, self.g_scale = _adversarial_scales(loss)

    @classmethod
    def build(cls, setup: RunSetup) -> Built:
        return build_translation(cls, setup)

    def pair_critic(self, a: Tensor):
        """D on (a, x) pairs as a function of x alone, one score per sample (what penalties differentiate)."""
        return lambda x: self.D(torch.cat([a, x], 1)).flatten(1).mean(1)

    def step(self, batch: Tensor) -> None:
        x = jitter(normalize(batch[0]), self.load_size, self.flip)
        split = self.source_a or self.ca  # A's channels in the data, before any conversion
        a, b = to_channels(x[:, :split], self.ca), to_channels(x[:, split:], self.T.channels_b)
        loss = self.loss
        with self.autocast:
            fake = self.T.ab(a)
            real_logits = self.D(torch.cat([a, b], 1)).float().flatten()
            fake_logits = self.D(torch.cat([a, fake.detach()], 1)).float().flatten()
            d_loss = self.d_scale * loss.d_loss(real_logits, fake_logits)
            penalty = loss.penalty(self.pair_critic(a), b, fake) if loss.has_penalty else None
        self.update("discriminator", d_loss if penalty is None else d_loss + penalty)
        self.clip_weights("discriminator", loss.clip)
        self.D.requires_grad_(False)
        with self.autocast:
            g_loss = self.g_scale * loss.g_loss(self.D(torch.cat([a, fake], 1)).float().flatten())
            l1 = (fake.float() - b).abs().mean()
        self.update("generator", g_loss + self.l1_weight * l1)
        self.D.requires_grad_(True)
        self.update_ema()
        self.stats.add("loss/d", d_loss)
        self.stats.add("loss/g", g_loss)
        self.stats.add("loss/l1", l1)
        self.stats.add("d/real", real_logits.detach().mean())
        self.stats.add("d/fake", fake_logits.detach().mean())
        if penalty is not None:
            self.stats.add("loss/penalty", penalty)

    def grid(self, sampler: nn.Module) -> Tensor:
        """input | output | target for the same held-out pairs every time."""
        return _grid([[self.grid_a, sampler.ab(self.grid_a).float(), self.grid_b]])

    reported = ("loss/d", "loss/g", "loss/l1", "d/real", "d/fake")


class CycleGAN(Game):
    """Unpaired translation: G (A -> B) and F (B -> A), a PatchGAN per domain, cycle consistency
    |F(G(a)) - a| weighted `cycle_weight` and |G(F(b)) - b| weighted `cycle_weight_b` (None: the same; the
    reference's lambda_A and lambda_B), identity |F(a) - a| and |G(b) - b| weighted `identity_weight` x
    their domain's cycle weight, and a history pool of generated images for each discriminator.

    A step takes one batch of each domain: the generators' update (discriminators frozen), then the
    discriminators' on real images and pooled generated ones.
    """

    name = "cyclegan"
    sampled = "generator"
    watched = ("loss/d", "loss/g", "loss/cycle", "loss/identity", "loss/penalty")

    def __init__(self, translator: Translator, discriminators: nn.ModuleDict, loss: GANLoss, cycle_weight: float,
                 identity_weight: float, pool_size: int, load_size: int, flip: bool, grid_a: Tensor, grid_b: Tensor,
                 ema: Optional[Translator] = None, ema_decay: float = 0.0, cycle_weight_b: Optional[float] = None,
                 **base: Any):
        super().__init__(**base)
        if identity_weight > 0 and translator.channels_a != translator.channels_b:
            raise GantrainError(f"translation.identity_weight={identity_weight} compares G(b) with b, which needs "
                                f"the same channels in both domains ({translator.channels_a} and {translator.channels_b}); "
                                f"set translation.identity_weight=0 or declare the same channels for both domains")
        self.T, self.D, self.loss = translator, discriminators, loss
        self.set_networks({"generator": translator, "discriminator": discriminators}, ema, ema_decay)
        self.cycle_weight, self.identity_weight = float(cycle_weight), float(identity_weight)
        self.cycle_weight_b = self.cycle_weight if cycle_weight_b is None else float(cycle_weight_b)
        #: per-sample normalisation only: each stage's inputs of a generator may go through it as one batch
        self.batched = not any(isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "track_running_stats", False)
                               for m in translator.modules())
        self.load_size, self.flip = int(load_size), bool(flip)
        size = translator.image_size
        self.pools = nn.ModuleDict({"a": ImagePool(pool_size, (translator.channels_a, size, size)),
                                    "b": ImagePool(pool_size, (translator.channels_b, size, size))}).to(self.device)
        self.grid_a, self.grid_b = grid_a.to(self.device), grid_b.to(self.device)
        self.grid_columns = 6
        self.d_scale, self.g_scale = _adversarial_scales(loss)

    @classmethod
    def build(cls, setup: RunSetup) -> Built:
        return build_translation(cls, setup)

    def judge(self, domain: str, x: Tensor) -> Tensor:
        return self.D[domain](x).float().flatten()

    def translate_all(self, a: Tensor, b: Tensor) -> tuple:
        """G(a), F(b), F(G(a)), G(F(b)) and, with identity terms, F(a) and G(b) (else None).

        With per-sample normalisation (instance or none) and small calls (batch x height x width at most
        BATCHED_PIXELS), each generator's inputs of one stage go through it as one batch: three generator
        calls instead of six (three instead of four with identity terms off), the same values as separate
        calls up to rounding (dropout, when on, draws other masks). Measured on one CPU thread: 1.2-1.4x
        faster at 32-64 px and batch 1, level at 128 px and batch 1-4, 7% slower at 128 px and batch 8
        (large calls are memory-bound), hence the limit. Batch norm keeps separate calls, as the reference
        makes them (its statistics are per call).
        """
        T, n = self.T, a.shape[0]
        identity = self.identity_weight > 0
        if not self.batched or n * a.shape[-2] * a.shape[-1] > BATCHED_PIXELS:
            fake_b, fake_a = T.ab(a), T.ba(b)
            rec_a, rec_b = T.ba(fake_b), T.ab(fake_a)
            return fake_b, fake_a, rec_a, rec_b, (T.ba(a) if identity else None), (T.ab(b) if identity else None)
        m = b.shape[0]
        if identity:  # needs the same channels on both sides, so a, b and G(a) all fit both generators
            fake_b, same_b = T.ab(torch.cat([a, b])).split([n, m])
            fake_a, same_a, rec_a = T.ba(torch.cat([b, a, fake_b])).split([m, n, n])
        else:
            fake_b, same_b, same_a = T.ab(a), None, None
            fake_a, rec_a = T.ba(torch.cat([b, fake_b])).split([m, n])
        return fake_b, fake_a, rec_a, T.ab(fake_a), same_a, same_b

    def step(self, batch: Any) -> None:
        a = to_channels(jitter(normalize(batch[0][0]), self.load_size, self.flip), self.T.channels_a)
        b = to_channels(jitter(normalize(batch[1][0]), self.load_size, self.flip), self.T.channels_b)
        loss = self.loss
        # the generators' update, discriminators frozen
        self.D.requires_grad_(False)
        with self.autocast:
            fake_b, fake_a, rec_a, rec_b, same_a, same_b = self.translate_all(a, b)
            g_loss = self.g_scale * (loss.g_loss(self.judge("b", fake_b)) + loss.g_loss(self.judge("a", fake_a)))
            cycle_a, cycle_b = (rec_a.float() - a).abs().mean(), (rec_b.float() - b).abs().mean()
            cycle = cycle_a + cycle_b
            total = g_loss + self.cycle_weight * cycle_a + self.cycle_weight_b * cycle_b
            identity = None
            if same_a is not None:  # each scaled by its domain's cycle weight, as the reference does
                identity_b, identity_a = (same_b.float() - b).abs().mean(), (same_a.float() - a).abs().mean()
                identity = identity_a + identity_b
                total = total + self.identity_weight * (self.cycle_weight * identity_a + self.cycle_weight_b * identity_b)
        self.update("generator", total)
        self.D.requires_grad_(True)
        # the discriminators' update, on real images and on generated ones from the history pools
        pooled_b, pooled_a = self.pools["b"](fake_b.float()), self.pools["a"](fake_a.float())
        with self.autocast:
            real_b, seen_b = self.judge("b", b), self.judge("b", pooled_b)
            real_a, seen_a = self.judge("a", a), self.judge("a", pooled_a)
            d_loss = self.d_scale * (loss.d_loss(real_b, seen_b) + loss.d_loss(real_a, seen_a))
            penalty = None
            if loss.has_penalty:
                penalty = (loss.penalty(lambda x: self.D["b"](x).flatten(1).mean(1), b, pooled_b)
                           + loss.penalty(lambda x: self.D["a"](x).flatten(1).mean(1), a, pooled_a))
        self.update("discriminator", d_loss if penalty is None else d_loss + penalty)
        self.clip_weights("discriminator", loss.clip)
        self.update_ema()
        self.stats.add("loss/d", d_loss)
        self.stats.add("loss/g", g_loss)
        self.stats.add("loss/cycle", cycle)
        if identity is not None:
            self.stats.add("loss/identity", identity)
        self.stats.add("d/real", 0.5 * (real_a.detach().mean() + real_b.detach().mean()))
        self.stats.add("d/fake", 0.5 * (seen_a.detach().mean() + seen_b.detach().mean()))
        if penalty is not None:
            self.stats.add("loss/penalty", penalty)

    def grid(self, sampler: nn.Module) -> Tensor:
        """A | G(A) | F(G(A)) rows, then B | F(B) | G(F(B)) rows, for the same held-out images every time."""
        ga, fb = sampler.ab(self.grid_a).float(), sampler.ba(self.grid_b).float()
        return _grid([[self.grid_a, ga, sampler.ba(ga).float()], [self.grid_b, fb, sampler.ab(fb).float()]])

    reported = ("loss/d", "loss/g", "loss/cycle", "loss/identity", "d/real", "d/fake")

    def own_state(self) -> dict:
        return {"pools": self.pools.state_dict()}

    def load_own_state(self, state: dict) -> None:
        if "pools" not in state:
            raise GantrainError("the checkpoint holds no CycleGAN history pools; it was not written by a cyclegan run")
        self.pools.load_state_dict(state["pools"])

    def rank_state_dict(self) -> dict:
        return {"pools": {k: v.detach().cpu().clone() for k, v in self.pools.state_dict().items()}}

    def load_rank_state_dict(self, state: dict) -> None:
        self.pools.load_state_dict(state["pools"])


def build_translation(cls: type, setup: RunSetup) -> Built:
    """A pix2pix or CycleGAN game (cls) of setup.cfg: its translator, discriminator(s), batch stream and evaluator."""
    from gantrain.training import distributed
    from gantrain.training.components import (_grid_images, _patch_discriminator, build_translator, seed_everything, translation_channels)
    from gantrain.data.streaming import UnpairedBatches, make_batches

    cfg, translation, dataset, settings = setup.cfg, setup.translation, setup.dataset, setup.settings
    device, dist, seed, loss = setup.device, setup.dist, setup.seed, setup.loss
    if getattr(dataset, "paired", None) is None:
        raise GantrainError(f"model={translation.kind} translates images between two domains, and {dataset.name} has "
                            f"one; use dataset=edges2mnist, mnist2mnistm, paired_folder or unpaired_folder")
    if settings.n_critic != 1:
        raise GantrainError(f"trainer.n_critic={settings.n_critic}: translation games update each network once per "
                            f"step; set trainer.n_critic=1 (loss=wgan_gp sets 5: override it)")
    if loss.gp_weight > 0 and cfg.discriminator.get("norm") == "batch":
        raise GantrainError("discriminator.norm=batch under a gradient penalty: set discriminator.norm=instance or none")
    src_a, ca, src_b, cb, size = translation_channels(dataset, translation)
    translator = build_translator(cfg.generator, translation.kind, ca, cb, size)
    load_size = translation.load_size if translation.load_size is not None else round(size * 286 / 256)
    if load_size < size:
        raise GantrainError(f"translation.load_size={load_size} is below the image size {size}; the random crop "
                            f"needs load_size >= image_size (equal: flips only)")
    grid_a, grid_b = _grid_images(dataset, translation.grid_images)
    grid_a, grid_b = to_channels(grid_a, ca), to_channels(grid_b, cb)
    if translation.kind == "pix2pix":
        discriminator: nn.Module = _patch_discriminator(cfg, ca + cb, size)
        batches: Any = make_batches(dataset, settings.batch_size, seed, device, settings.num_workers, dist.rank, dist.world)
    else:
        discriminator = nn.ModuleDict({"a": _patch_discriminator(cfg, ca, size), "b": _patch_discriminator(cfg, cb, size)})
        if getattr(dataset, "paired", False):  # CycleGAN on paired data: the two sides, each in its own order
            from gantrain.data.translation import DomainImages

            images = dataset.tensor()
            domains = (DomainImages(f"{dataset.name}-A", images[:, :src_a]), DomainImages(f"{dataset.name}-B", images[:, src_a:]))
        else:
            domains = (dataset.domain_a(), dataset.domain_b())
        batches = UnpairedBatches(*(make_batches(d, settings.batch_size, seed + i, device, settings.num_workers,
                                                 dist.rank, dist.world) for i, d in enumerate(domains)))
    translator.to(device)
    discriminator.to(device)
    if dist.enabled:
        distributed.broadcast_state(translator)
        distributed.broadcast_state(discriminator)
        seed_everything(seed + 1_000_003 * dist.rank)
    shared = dict(ema=make_ema(translator) if settings.ema_decay > 0 else None, ema_decay=settings.ema_decay,
                  **setup.base())
    if translation.kind == "pix2pix":
        game: Game = cls(translator, discriminator, loss, translation.l1_weight, load_size, translation.flip,
                         grid_a, grid_b, source_channels_a=src_a, **shared)
    else:
        game = cls(translator, discriminator, loss, translation.cycle_weight, translation.identity_weight,
                   translation.pool_size, load_size, translation.flip, grid_a, grid_b,
                   cycle_weight_b=translation.cycle_weight_b, **shared)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes every step, as the GAN games
    evaluator = None
    if setup.evaluate and dist.main and (settings.eval_every > 0 or settings.best_metric):  # also checks best_metric
        from gantrain.eval.translation import make_translation_evaluator

        evaluator = make_translation_evaluator(dataset, settings.metrics, device, translation.kind)
        if settings.best_metric and (evaluator is None or settings.best_metric not in evaluator.names):
            evaluated = ", ".join(evaluator.names) if evaluator is not None else "none apply to this data"
            raise GantrainError(f"trainer.best_metric={settings.best_metric} is not among the evaluated metrics "
                                f"({evaluated}); pick one of them or set trainer.best_metric=null")
    meta = {"kind": translation.kind, "channels_a": ca, "channels_b": cb, "image_size": size}
    return Built(game, batches, {"data_shape": [ca + cb, size, size], "data_kind": "image", "num_classes": None,
                                 "translation": meta},
                 evaluator=evaluator if settings.eval_every > 0 else None)
