"""Text conditioning: sentence encoders, conditioning augmentation, and the text-conditioned generator and
discriminator that wrap an image network (DCGAN's, with `condition_dim`).

Token ids come from gantrain.tokens.Vocabulary (0 = padding). Encoders map (N, L) ids to (N, dim):
  bag          a learned embedding of each word, averaged over the caption's words (offline)
  gru          a learned embedding read by a bidirectional GRU, its outputs averaged over the words
  precomputed  a frozen table of embeddings the user made with any encoder (one row per caption: the caption's
               single "token" is its row + 1)
  clip         a frozen table too, which gantrain fills with a pretrained CLIP text tower (open_clip) at the start
               of training, one row per distinct caption; prompts the run never saw are embedded by CLIP when sampled
G embeds the caption with its own encoder, draws the condition c ~ N(mu, sigma) from it (StackGAN's conditioning
augmentation, whose noise is the last values of G's z, in training and sampling alike) and feeds c to the image
network's per-block affine modulation; D embeds the caption with its own encoder and projects it onto its last features.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Any, Iterator, Optional, Sequence
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.config import TEXT_ENCODERS
from gantrain.errors import GantrainError
from gantrain.nets.base import Discriminator, Generator

log = logging.getLogger("gantrain")


class BagEncoder(nn.Module):
    """The mean of learned word embeddings over a caption's words (padding excluded)."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.dim = dim

    def forward(self, tokens: Tensor) -> Tensor:
        mask = (tokens != 0).unsqueeze(-1).to(self.embed.weight.dtype)
        return (self.embed(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class GRUEncoder(nn.Module):
    """Learned word embeddings read by a bidirectional GRU; its outputs averaged over the caption's words."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        if dim % 2:
            raise GantrainError(f"condition.text_dim={dim} must be even for text_encoder=gru (two directions of dim/2)")
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.gru = nn.GRU(dim, dim // 2, batch_first=True, bidirectional=True)
        self.dim = dim

    def forward(self, tokens: Tensor) -> Tensor:
        mask = (tokens != 0).unsqueeze(-1).to(self.embed.weight.dtype)
        out, _ = self.gru(self.embed(tokens))
        return (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class PrecomputedEncoder(nn.Module):
    """A frozen table of caption embeddings (rows of a file the user made); token id k + 1 is row k.

    extra: rows embedded after the run was built (prompts a CLIP run never saw, embedded when they are asked for),
    after the table's: neither a weight nor a buffer, so never saved, never averaged into an EMA copy, and the
    saved table is always the one the run was built with."""

    def __init__(self, table: Tensor):
        super().__init__()
        self.register_buffer("table", torch.cat([torch.zeros(1, table.shape[1]), table.float()]))
        self.dim = int(table.shape[1])
        self.extra: Optional[Tensor] = None

    def forward(self, tokens: Tensor) -> Tensor:
        table = self.table
        if self.extra is not None:
            table = torch.cat([table, self.extra.to(table.device, table.dtype)])
        return table[tokens[:, 0]]

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        saved = state_dict.get(prefix + "table")
        if isinstance(saved, Tensor) and saved.dim() == 2 and saved.shape[1] == self.table.shape[1] \
                and saved.shape[0] != self.table.shape[0]:
            # a CLIP run of 0.13 saved its table with the prompts it embedded while training appended (its words,
            # saved beside, name them): the saved rows are the run's
            self.table = self.table.new_zeros(saved.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@contextlib.contextmanager
def _hub_mode(pretrained: Optional[str]) -> Iterator[Any]:
    """Load from the Hugging Face cache only, without asking the hub, when its host cannot be reached: offline, the
    hub's client retries for most of a minute before it looks in the cache. Yields the unreachable host, or False.
    Behind a proxy (HTTPS_PROXY and the like) the host is not probed: the client goes through the proxy."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield False
        return
    proxied = any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))
    if pretrained is None or getattr(constants, "HF_HUB_OFFLINE", False) or proxied:
        yield False
        return
    url = urlparse(constants.ENDPOINT)
    host = url.hostname or "huggingface.co"
    try:
        socket.create_connection((host, url.port or (80 if url.scheme == "http" else 443)), timeout=5).close()
    except OSError:
        before = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
        try:
            yield host
        finally:
            constants.HF_HUB_OFFLINE = before
        return
    yield False


def clip_text_tower(model: str, weights: Optional[str]) -> tuple[nn.Module, Any]:
    """(open_clip's model, its tokenizer) for condition.clip_model / clip_weights ("none": untrained weights, which
    tests the path offline but conditions on nothing meaningful); one clear line when either cannot be had."""
    try:
        import open_clip
    except ImportError:
        raise GantrainError("condition.text_encoder=clip needs open_clip: pip install 'gantrain[clip]' (or "
                            "open_clip_torch); offline, use text_encoder=bag, gru or precomputed") from None
    if model not in open_clip.list_models():
        raise GantrainError(f"condition.clip_model={model!r} is not a model open_clip knows (e.g. ViT-B-32; "
                            f"open_clip.list_models() lists them)")
    pretrained = None if weights in (None, "none") else str(weights)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)  # open_clip logs its own lines on the root logger; ours says it in one
    offline = False
    try:
        with torch.random.fork_rng(devices=[]), _hub_mode(pretrained) as offline:
            torch.manual_seed(0)  # untrained weights (clip_weights=none) are the same in every process
            net = open_clip.create_model(model, pretrained=pretrained)
    except Exception as exc:  # a download that fails offline, an unknown tag, a damaged file
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        where = (f"they are not in the cache and {offline} cannot be reached" if isinstance(offline, str)
                 else first)
        raise GantrainError(f"CLIP {model} with weights {weights!r} could not be loaded ({where}); the weights "
                            f"download on first use: run once with network access, or use text_encoder=bag, gru "
                            f"or precomputed") from None
    finally:
        root.setLevel(level)
    if pretrained is None:
        log.warning("CLIP %s with untrained weights (condition.clip_weights=none): the captions' embeddings carry "
                    "no learned meaning", model)
    return net.eval().requires_grad_(False), open_clip.get_tokenizer(model)


def clip_embed(texts: Sequence[str], model: str, weights: Optional[str], device: Any = "cpu",
               batch: int = 256) -> Tensor:
    """CLIP text embeddings (N, D) of `texts`, L2-normalised (as CLIP compares them), computed on `device`."""
    net, tokenizer = clip_text_tower(model, weights)
    net = net.to(device)
    rows = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            e = net.encode_text(tokenizer(list(texts[i:i + batch])).to(device)).float()
            rows.append(F.normalize(e, dim=1).cpu())
    return torch.cat(rows) if rows else torch.zeros(0, 1)


def make_encoder(kind: str, vocab_size: int, dim: int, table: Optional[Tensor] = None) -> nn.Module:
    if kind == "bag":
        return BagEncoder(vocab_size, dim)
    if kind == "gru":
        return GRUEncoder(vocab_size, dim)
    if kind in ("precomputed", "clip"):
        if table is None:
            raise GantrainError("condition.text_encoder=precomputed needs condition.text_embeddings=FILE.npz "
                                "(arrays texts and embeddings)")
        return PrecomputedEncoder(table)
    raise GantrainError(f"condition.text_encoder={kind!r} is not one of {', '.join(TEXT_ENCODERS)}")


class ConditioningAugmentation(nn.Module):
    """StackGAN's conditioning augmentation: (mu, log sigma^2) = fc(e); c = mu + sigma * eps for the given noise
    eps (N, dim) (mu when None); kl: KL(N(mu, sigma^2) || N(0, I)), averaged over the batch and dimensions
    (StackGAN's form). enabled=False: c = fc(e) and kl = 0."""

    def __init__(self, dim_in: int, dim_out: int, enabled: bool = True):
        super().__init__()
        self.enabled = bool(enabled)
        self.fc = nn.Linear(dim_in, dim_out * (2 if self.enabled else 1))
        self.dim = dim_out

    def forward(self, e: Tensor, eps: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        h = self.fc(e)
        if not self.enabled:
            return F.leaky_relu(h, 0.2), h.new_zeros(())
        mu, logvar = F.leaky_relu(h, 0.2).chunk(2, dim=1)
        kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).mean()
        if eps is None:
            return mu, kl
        return mu + eps * (0.5 * logvar).exp(), kl


class TextGenerator(Generator):
    """G(z, tokens): the caption's embedding (its own encoder), conditioning augmentation, then the image network
    with `condition_dim` modulated by it. z is the image network's noise followed by conditioning augmentation's
    (latent_dim = net.latent_dim + condition_dim when augmentation is on), so that a sample is a function of
    (z, caption) in training, sampling and export alike.

    words: the run's vocabulary (saved with the weights), length: tokens per caption, prompts: the sample grid's
    rows (one per class of the offline sets), pool: training captions sample(n) draws from when no text is given
    (so that samples without a prompt follow the data; the prompts when empty).
    """

    def __init__(self, net: Generator, encoder: nn.Module, words: Sequence[str], length: int,
                 augmentation: bool = True, prompts: Sequence[str] = (), pool: Sequence[str] = (),
                 clip: Optional[dict] = None):
        super().__init__()
        self.net, self.encoder = net, encoder
        self.augment = ConditioningAugmentation(encoder.dim, net.condition_dim, augmentation)
        self.noise_dim = net.condition_dim if augmentation else 0
        self.latent_dim, self.out_shape = net.latent_dim + self.noise_dim, net.out_shape
        self.words, self.length, self.prompts, self.pool = list(words), int(length), list(prompts), list(pool)
        self.precomputed = isinstance(encoder, PrecomputedEncoder)
        self.clip = dict(clip) if clip else None  # {"model", "weights"} of a text_encoder=clip run
        self.extra_words: list[str] = []  # the prompts of the encoder's extra rows, in order (not saved)

    def get_extra_state(self) -> dict:
        state = {"words": list(self.words), "length": self.length, "prompts": list(self.prompts), "pool": list(self.pool)}
        if self.clip:
            state["clip"] = dict(self.clip)
        return state

    def set_extra_state(self, state: dict) -> None:
        self.words, self.length, self.prompts = list(state["words"]), int(state["length"]), list(state["prompts"])
        if self.precomputed:  # rows embedded after the build belonged to the weights replaced
            self.extra_words, self.encoder.extra = [], None
        self.pool = list(state.get("pool", []))
        self.clip = dict(state["clip"]) if state.get("clip") else self.clip

    def split(self, z: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """(the image network's z, conditioning augmentation's noise or None) of a full z."""
        return z[:, : self.net.latent_dim], (z[:, self.net.latent_dim:] if self.noise_dim else None)

    def encode(self, tokens: Tensor, eps: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """(the condition c (N, condition_dim) for noise eps (None: the mean), the KL term of conditioning
        augmentation)."""
        return self.augment(self.encoder(tokens), eps)

    def forward(self, z: Tensor, tokens: Tensor) -> Tensor:
        image_z, eps = self.split(z)
        return self.net(image_z, self.encode(tokens, eps)[0])

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """Token ids (N, length) of prompts; an empty prompt is refused, unknown words named in one warning."""
        from gantrain.tokens import Vocabulary, tokenize

        for text in texts:
            if not tokenize(text):
                raise GantrainError(f"text={text!r} is empty: give a prompt with at least one word, e.g. "
                                    f"text='{self.prompts[0] if self.prompts else 'a thick 3'}'")
        if self.precomputed:
            rows = {" ".join(tokenize(w)): i + 1 for i, w in enumerate(self.words)}
            table, extra = self.encoder.table, self.encoder.extra
            rows.update({key: len(table) + i for i, key in enumerate(self.extra_words) if key not in rows})
            keys = [" ".join(tokenize(t)) for t in texts]
            missing = [key for key in dict.fromkeys(keys) if key not in rows]
            if missing and self.clip:  # CLIP embeds prompts the run never saw, once: rows after the saved table's
                new = clip_embed(missing, self.clip["model"], self.clip.get("weights"), table.device)
                new = new.to(table.device, table.dtype)
                self.encoder.extra = new if extra is None else torch.cat([extra.to(new.device), new])
                rows.update({key: len(table) + len(self.extra_words) + i for i, key in enumerate(missing)})
                self.extra_words = self.extra_words + missing
                missing = []
            if missing:
                raise GantrainError(f"text={missing[0]!r} has no precomputed embedding: a precomputed run generates "
                                    f"only the captions of its condition.text_embeddings file")
            return torch.tensor([[rows[key]] for key in keys], dtype=torch.int64)
        vocabulary = Vocabulary(self.words[2:])
        unknown = vocabulary.unknown(texts)
        if unknown:
            log.warning("words this run never saw (read as unknown): %s", ", ".join(unknown))
        cut = [words[self.length:] for words in map(tokenize, texts) if len(words) > self.length]
        if cut:
            log.warning("this run reads the first %d words of a prompt (condition.text_length); left out: %s",
                        self.length, "; ".join(" ".join(words) for words in dict.fromkeys(map(tuple, cut))))
        return vocabulary.encode(list(texts), self.length)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None, labels: Any = None,
               truncation: Optional[float] = None, text: Any = None) -> Tensor:
        """n samples for `text`: a prompt for all, or one per sample (None: training captions of the run, drawn
        uniformly, or its prompts)."""
        from gantrain.nets.base import truncate

        if labels is not None:
            raise GantrainError("labels given, but this generator is conditioned on text: give text='a thick 3'")
        try:  # as Generator.sample: any integer type, never 2.5 or True
            count = -1 if isinstance(n, bool) else n.__index__()
        except (AttributeError, TypeError, RuntimeError):
            count = -1
        if count < 0:
            raise GantrainError(f"sample(n={n!r}): n must be a whole number >= 0, the number of samples to draw")
        if text is None:
            drawn = self.pool or self.prompts
            if not drawn:
                raise GantrainError("this text-conditioned generator needs text=... to sample")
            pick = torch.randint(len(drawn), (count,), generator=generator).tolist()
            texts = [drawn[i] for i in pick]
        else:
            try:
                texts = [text] * count if isinstance(text, str) else list(text)
            except TypeError:  # not iterable (a number, say)
                texts = [None]
            if not all(isinstance(t, str) for t in texts):
                raise GantrainError(f"text={text!r:.60} must be a prompt or a list of prompts, one per sample")
            if len(texts) != count:
                raise GantrainError(f"{len(texts)} prompts for {count} samples; give one prompt per sample, or one for all")
        device = next(self.parameters()).device
        if count == 0:
            return torch.empty((0, *self.out_shape), device=device)
        tokens = self.tokenize(texts).to(device)
        if generator is not None:
            z = truncate(torch.randn(count, self.latent_dim, generator=generator), truncation, generator).to(device)
        else:
            z = truncate(torch.randn(count, self.latent_dim, device=device), truncation)
        return self(z, tokens)


class TextProgram(nn.Module):
    """G(z, tokens) of a TextGenerator without its vocabulary (what TorchScript and ONNX export trace): the same
    modules, so the same numbers."""

    def __init__(self, generator: TextGenerator):
        super().__init__()
        self.net, self.encoder, self.augment = generator.net, generator.encoder, generator.augment
        self.split = generator.net.latent_dim, generator.noise_dim

    def forward(self, z: Tensor, tokens: Tensor) -> Tensor:
        image_z, eps = z[:, : self.split[0]], (z[:, self.split[0]:] if self.split[1] else None)
        return self.net(image_z, self.augment(self.encoder(tokens), eps)[0])


class TextDiscriminator(Discriminator):
    """D(x, tokens): the image network's logit plus the projection of its last features onto the caption's
    embedding (its own encoder): logit(x) + <W e(t), h(x)>. `judge(x, e)` takes the embedding directly (what
    the matching-aware gradient penalty differentiates)."""

    def __init__(self, net: nn.Module, encoder: nn.Module):
        super().__init__()
        if not hasattr(net, "text_features"):
            raise GantrainError(f"discriminator {type(net).__name__} has no text_features(x) to project a caption onto; "
                                f"use discriminator=dcgan or stylegan2 for text conditioning")
        self.net, self.encoder = net, encoder
        self.project = nn.Linear(encoder.dim, net.feature_dim, bias=False)
        nn.init.normal_(self.project.weight, 0.0, 0.02)

    def encode(self, tokens: Tensor) -> Tensor:
        return self.encoder(tokens)

    def judge(self, x: Tensor, e: Tensor) -> Tensor:
        logit, h = self.net.text_features(x)
        return logit + (self.project(e) * h).sum(1)

    def forward(self, x: Tensor, tokens: Tensor) -> Tensor:
        return self.judge(x, self.encode(tokens))
