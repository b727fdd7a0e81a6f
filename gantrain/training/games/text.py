"""Text-conditioned GANs: G(z, caption) and D(image, caption) trained from image-caption pairs.

The batches pair each image with K captions' token ids (N, K, L); each step picks one caption per image on the
device. One step: D judges (real image, its caption) as real, (G(z, caption), caption) as fake and, matching-aware
(GAN-INT-CLS, Reed et al. 2016; condition.mismatch), (real image, another image's caption) as fake too, the fake
term averaged over the generated and mismatched pairs as DF-GAN does; loss.matching_penalty adds DF-GAN's
matching-aware gradient penalty on (real image, its caption). G's update adds the KL term of conditioning
augmentation (condition.kl_weight). Generated samples use the real batch's captions.
"""
from __future__ import annotations

import logging
import random
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from gantrain.data.base import normalize
from gantrain.errors import GantrainError
from gantrain.nets.base import Generator
from gantrain.training.games import RunSetup
from gantrain.training.games.gan import GAN

log = logging.getLogger("gantrain")


#: training captions a text run keeps for sampling without a prompt (gantrain-eval's FID draws from them)
POOL = 2000


def dataset_texts(dataset: Any) -> list[list[str]]:
    """The captions of every sample of a captioned dataset; one clear line for a dataset without them."""
    texts = getattr(dataset, "texts", None)
    if texts is None:
        raise GantrainError(f"condition.text_encoder needs captions, and {dataset.name} has none; use "
                            f"dataset=mnist_captions, fashion_captions, or image_folder with captions (a "
                            f"metadata.jsonl, or a .txt beside each image)")
    return texts()


def _precomputed(path: Optional[str]) -> tuple[list[str], Tensor]:
    """(texts, embeddings) of a condition.text_embeddings .npz file."""
    if not path:
        raise GantrainError("condition.text_encoder=precomputed needs condition.text_embeddings=FILE.npz with arrays "
                            "texts (N,) and embeddings (N, D)")
    import zipfile

    if Path(path).is_file() and not zipfile.is_zipfile(path):  # np.load would take it for pickled data
        raise GantrainError(f"condition.text_embeddings={path} is not an .npz file (numpy.savez writes one, with "
                            f"arrays texts (N,) and embeddings (N, D))")
    try:
        content = np.load(path, allow_pickle=False)
        if not isinstance(content, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with content:
            raw_texts, raw_table = content["texts"], content["embeddings"]
        if raw_texts.ndim != 1:
            raise ValueError(f"texts must be one-dimensional, not of shape {raw_texts.shape}")
        texts, table = [str(t) for t in raw_texts], torch.from_numpy(np.asarray(raw_table, np.float32))
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        raise GantrainError(f"condition.text_embeddings={path}: cannot read the arrays texts (N,) and embeddings (N, D) "
                            f"of an .npz file ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    if table.dim() != 2 or len(table) != len(texts) or not len(texts):
        raise GantrainError(f"condition.text_embeddings={path}: embeddings must be (N, D) with one row per text "
                            f"({len(texts)}), not {tuple(table.shape)}")
    if not bool(torch.isfinite(table).all()):
        raise GantrainError(f"condition.text_embeddings={path}: the embeddings hold NaN or infinite values")
    return texts, table


def _clip_table(texts: list[str], clip: dict, device: Any) -> Tensor:
    """CLIP embeddings of a run's distinct captions, cached under $GANTRAIN_CACHE/clip by model, weights and texts."""
    import hashlib

    from gantrain.data.cache import _read_cache, _write_cache, datasets_cache_dir
    from gantrain.nets.text import clip_embed

    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    path = datasets_cache_dir().parent / "clip" / f"{clip['model']}-{clip['weights']}-{digest}.pt"
    cached = _read_cache(path, lambda c: isinstance(c.get("table"), Tensor) and len(c["table"]) == len(texts))
    if cached is not None:
        return cached["table"]
    log.info("embedding %d distinct captions with CLIP %s (%s weights), once (cached in %s)", len(texts),
             clip["model"], clip["weights"], path.parent)
    table = clip_embed(texts, clip["model"], clip["weights"], device)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_cache(path, {"table": table, "texts": len(texts)})
    return table


def text_networks(gen_cfg: Any, disc_cfg: Any, data_shape: tuple, text: dict, table: Optional[Tensor] = None) -> tuple:
    """(TextGenerator, TextDiscriminator) of the networks' configs and a text run's metadata `text` (encoder, dim,
    words, length, augment, prompts)."""
    from omegaconf import DictConfig, OmegaConf

    from gantrain.nets.text import TextDiscriminator, TextGenerator, make_encoder
    from gantrain.training.components import instantiate_component

    vocab = len(text["words"])
    if table is None and text["encoder"] in ("precomputed", "clip"):  # its rows come with the weights
        table = torch.zeros(text["rows"], text["table_dim"])
    node = gen_cfg if isinstance(gen_cfg, DictConfig) else OmegaConf.create(gen_cfg)
    try:
        net = instantiate_component(node, "generator", out_shape=tuple(data_shape), bounded=True,
                                    condition_dim=int(text["dim"]))
    except GantrainError as exc:
        if "condition_dim" not in str(exc):
            raise
        net = None
    if net is None or not getattr(net, "condition_dim", 0):
        raise GantrainError(f"generator {node.get('_target_')} cannot take a text condition; use generator=dcgan or stylegan2")
    dim = int(text["dim"]) if table is None else int(table.shape[1])
    g = TextGenerator(net, make_encoder(text["encoder"], vocab, dim, table), text["words"], text["length"],
                      text["augment"], text["prompts"], text.get("pool", ()), text.get("clip"))
    d = None
    if disc_cfg is not None:
        dnode = disc_cfg if isinstance(disc_cfg, DictConfig) else OmegaConf.create(disc_cfg)
        base = instantiate_component(dnode, "discriminator", in_shape=tuple(data_shape))
        d = TextDiscriminator(base, make_encoder(text["encoder"], vocab, dim, table))
    return g, d


class TextGAN(GAN):
    """A GAN conditioned on captions (see the module). kl_weight: of conditioning augmentation's KL term;
    mismatch: the matching-aware term; grid_tokens: the sample grid's prompts (rows), one noise per column."""

    name = "text"
    watched = GAN.watched + ("loss/kl",)
    reported = GAN.reported + ("loss/kl", "d/mismatch", "g/diversity")

    def __init__(self, *args: Any, kl_weight: float = 1.0, mismatch: bool = True, grid_tokens: Optional[Tensor] = None,
                 mode_seeking: float = 0.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.kl_weight, self.mismatch, self.mode_seeking = float(kl_weight), bool(mismatch), float(mode_seeking)
        if grid_tokens is not None:
            rows = len(grid_tokens)
            self.grid_columns = max(1, len(self.fixed_z) // rows)
            self.fixed_z = self.grid_noise(self.grid_columns).repeat(rows, 1)
            self.fixed_labels = grid_tokens.to(self.device).repeat_interleave(self.grid_columns, 0)

    @classmethod
    def variants(cls) -> tuple[type, type]:
        return TextGAN, TextGAN

    @classmethod
    def make_networks(cls, setup: RunSetup) -> tuple:
        from gantrain.tokens import Vocabulary, caption_tokens, tokenize

        condition, dataset = setup.condition, setup.dataset
        if condition is None or condition.text_encoder is None:
            raise GantrainError("game=text needs conditional=true and condition.text_encoder (bag, gru, precomputed, "
                                "clip); try experiment=text_mnist")
        if dataset.kind != "image":
            raise GantrainError(f"text conditioning is for images; {dataset.name} holds 2D points")
        texts = dataset_texts(dataset)
        from gantrain.training.components import check_fits

        check_fits(setup.cfg, dataset, setup.settings, setup.device, None)
        table, clip = None, None

        def key(text: str) -> str:  # the same normalisation as sampling's (TextGenerator.tokenize)
            return " ".join(tokenize(text))

        # the grid's rows: the set's own prompts, else the first distinct captions of the data
        prompts = (list(getattr(dataset, "grid_prompts", lambda: [])())
                   or list(dict.fromkeys(c for t in texts for c in t if tokenize(c)))[:condition.grid_classes])
        if condition.text_encoder in ("precomputed", "clip"):
            if condition.text_encoder == "precomputed":
                known, table = _precomputed(condition.text_embeddings)
            else:  # one row per distinct caption (as sampling normalises it) and grid prompt, embedded by CLIP once,
                clip = {"model": condition.clip_model, "weights": condition.clip_weights}  # cached
                known = list({key(c): c for c in [*(c for captions in texts for c in captions), *prompts]}.values())
                table = _clip_table(known, clip, setup.device)

            rows = {key(t): i + 1 for i, t in enumerate(known)}
            unmatched: dict[str, str] = {}  # each caption without a row once, as first written
            for c in (c for captions in texts for c in captions):
                if key(c) not in rows:
                    unmatched.setdefault(key(c), c)
            missing = list(unmatched.values())
            if missing:
                first = ("'' (the empty caption of the images that have none)" if not key(missing[0])
                         else repr(missing[0]))
                more = (f" and {len(missing) - 1} more distinct caption{'s' if len(missing) > 2 else ''} have"
                        if len(missing) > 1 else " has")
                raise GantrainError(f"caption {first}{more} no row in condition.text_embeddings="
                                    f"{condition.text_embeddings}; add a row for each caption of the data")
            k = max(len(t) for t in texts)
            paired = torch.tensor([[[rows[key(c[j % len(c)])]] for j in range(k)] for c in texts], dtype=torch.int64)
            words, length = known, 1
        else:
            vocabulary = dataset.vocabulary() if hasattr(dataset, "vocabulary") else Vocabulary.of(
                [c for captions in texts for c in captions])
            paired = caption_tokens(texts, vocabulary, condition.text_length)
            words, length = vocabulary.words, condition.text_length
        draw = random.Random(setup.seed)  # captions that sampling without a prompt draws from (they follow the data)
        captioned = [t for t in texts if any(tokenize(c) for c in t)]
        pool = [c for c in (draw.choice(captioned[draw.randrange(len(captioned))])
                            for _ in range(min(POOL, len(captioned)))) if tokenize(c)]
        meta = {"encoder": condition.text_encoder, "dim": condition.text_dim, "words": words, "length": length,
                "augment": condition.text_augment, "prompts": prompts, "pool": pool,
                "rows": 0 if table is None else int(len(table)), "table_dim": 0 if table is None else int(table.shape[1]),
                **({"clip": clip} if clip else {})}
        generator, discriminator = text_networks(setup.cfg.generator, setup.cfg.discriminator, dataset.shape, meta,
                                                 table)
        return generator, discriminator, None, paired, {"text": meta}

    @classmethod
    def own_arguments(cls, setup: RunSetup, generator: Generator) -> dict:
        grid = generator.tokenize(generator.prompts[: setup.condition.grid_classes])
        return {"kl_weight": setup.condition.kl_weight, "mismatch": setup.condition.mismatch, "grid_tokens": grid,
                "mode_seeking": setup.condition.mode_seeking}

    # ---- the phases ---------------------------------------------------------------------------

    def real(self, batch: Any, i: int) -> tuple[Tensor, Tensor]:
        """The i-th real batch and one of each image's K captions, picked on the device."""
        samples, captions = batch
        tokens = captions[i]  # (B, K, L)
        pick = torch.randint(tokens.shape[1], (tokens.shape[0],), device=tokens.device)
        return normalize(samples[i]), tokens[torch.arange(tokens.shape[0], device=tokens.device), pick]

    def discriminator_phases(self, batch: Any) -> tuple[Tensor, Any]:
        """n_critic updates of D; returns the last G(z) and (its KL term, its captions' tokens, its image noise and
        condition)."""
        G, D, loss = self.G, self.D, self.loss
        for i in range(self.n_critic):
            real, tokens = self.real(batch, i)
            z = torch.randn(self.batch_size, G.latent_dim, device=real.device)
            last = i == self.n_critic - 1
            with self.autocast, (nullcontext() if last else torch.no_grad()):
                image_z, eps = G.split(z)  # the image network's noise and conditioning augmentation's
                condition, kl = G.encode(tokens, eps)
                fake = G.net(image_z, condition)
            with self.autocast:
                seen_real, seen_fake = self.augmented(real), self.augmented(fake.detach())
                e = D.encode(tokens)
                real_logits = D.judge(seen_real, e).float()
                fake_logits = D.judge(seen_fake, e).float()
                if self.mismatch:  # the real images with the next image's caption
                    mismatched = D.judge(seen_real, e.roll(1, 0)).float()
                    d_loss = loss.d_loss(real_logits, torch.cat([fake_logits, mismatched]))
                else:
                    mismatched, d_loss = None, loss.d_loss(real_logits, fake_logits)
                penalty = (loss.penalty(lambda x: D.judge(x, e), seen_real, seen_fake)
                           if loss.gp_weight > 0 or loss.r1_gamma > 0 else None)
                if loss.matching_weight > 0:
                    from gantrain.training.losses import matching_gradient_penalty

                    matching = loss.matching_weight * matching_gradient_penalty(D.judge, seen_real, e, loss.matching_power)
                    penalty = matching if penalty is None else penalty + matching
            self.update("discriminator", d_loss if penalty is None else d_loss + penalty)
            self.clip_weights("discriminator", loss.clip)
            self.discriminator_statistics(d_loss, real_logits, fake_logits, penalty)
            if mismatched is not None:
                self.stats.add("d/mismatch", mismatched.detach().mean())
        return fake, (kl, tokens, image_z, condition)

    def diversity(self, fake: Tensor, image_z: Tensor, condition: Tensor) -> Tensor:
        """MSGAN's mode-seeking ratio (Mao et al. 2019) for the first half of the batch: mean |G(z1, c) - G(z2, c)|
        over mean |z1 - z2|, with the same condition c (caption and augmentation noise) and fresh image noise z2."""
        half = max(1, len(fake) // 2)
        z2 = torch.randn_like(image_z[:half])
        other = self.G.net(z2, condition[:half])
        return (fake[:half] - other).abs().mean() / (image_z[:half] - z2).abs().mean()

    def generator_phase(self, fake: Tensor, drawn: Any = None) -> None:
        """One update of G through D (frozen) on `fake`, drawn for `drawn` = (KL term, caption tokens)."""
        kl, tokens, image_z, condition = drawn
        self.D.requires_grad_(False)
        with self.autocast:
            # D judges G's output with the caption G drew it for: the same tokens, through D's own encoder
            logits = self.D(self.augmented(fake), tokens).float()
            g_loss = self.loss.g_loss(logits)
            total = g_loss if kl is None or self.kl_weight == 0 else g_loss + self.kl_weight * kl.float()
            if self.mode_seeking > 0:  # MSGAN: G minimises weight / (ratio + 1e-5), so z changes the image
                ratio = self.diversity(fake.float(), image_z, condition).float()
                total = total + self.mode_seeking / (ratio + 1e-5)
                self.stats.add("g/diversity", ratio.detach())
        self.update("generator", total)
        self.D.requires_grad_(True)
        self.stats.add("loss/g", g_loss)
        if kl is not None:
            self.stats.add("loss/kl", kl.detach().float())
        if self.augment is not None:
            self.stats.add("augment/p", self.augment.p.sum())

    def step(self, batch: Any) -> None:
        fake, drawn = self.discriminator_phases(batch)
        self.generator_phase(fake, drawn)
        self.update_ema()

    def grid(self, sampler: nn.Module) -> Tensor:
        return sampler(self.fixed_z, self.fixed_labels).float()
