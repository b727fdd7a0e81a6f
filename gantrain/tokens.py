"""Captions as token ids, shared by the captioned datasets and the text-conditioned networks: the tokeniser and
the vocabulary (words <-> ids; 0 is padding, 1 an unknown word)."""
from __future__ import annotations

import re
from typing import Sequence

import torch
from torch import Tensor

PAD, UNKNOWN = 0, 1
#: tokens: runs of letters and digits in any script, lower-cased ("T-shirt" -> t, shirt; "Füße" -> füße)
_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """The words of a caption: lower-cased runs of letters and digits (punctuation and spaces separate them)."""
    return _WORD.findall(str(text).lower())


class Vocabulary:
    """Words <-> token ids: 0 is padding, 1 an unknown word, then the words in the order given."""

    def __init__(self, words: Sequence[str]):
        self.words = ["<pad>", "<unk>"] + [w for w in dict.fromkeys(words) if w not in ("<pad>", "<unk>")]
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def of(cls, texts: Sequence[str]) -> "Vocabulary":
        """The vocabulary of a set of captions, sorted (the same captions always give the same ids)."""
        return cls(sorted({w for t in texts for w in tokenize(t)}))

    def __len__(self) -> int:
        return len(self.words)

    def unknown(self, texts: Sequence[str]) -> list[str]:
        """The words of texts this vocabulary does not hold, each once, in order of appearance."""
        return list(dict.fromkeys(w for t in texts for w in tokenize(t) if w not in self.index))

    def encode(self, texts: Sequence[str], length: int) -> Tensor:
        """Token ids of each text, int64 (len(texts), length): cut after `length` words, padded with 0."""
        out = torch.zeros((len(texts), length), dtype=torch.int64)
        for i, text in enumerate(texts):
            ids = [self.index.get(w, UNKNOWN) for w in tokenize(text)][:length]
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out

    def decode(self, ids: Tensor) -> list[str]:
        """The words of token ids (N, L) joined by spaces, padding dropped."""
        return [" ".join(self.words[int(i)] for i in row if int(i) != PAD) for row in torch.as_tensor(ids).view(len(ids), -1)]


def caption_tokens(texts: Sequence[Sequence[str]], vocabulary: Vocabulary, length: int) -> Tensor:
    """Token ids of K captions per sample (N, K, length); K is the most any sample has, and a sample with fewer
    repeats its own captions in turn."""
    k = max((len(t) for t in texts), default=1)
    flat = [captions[j % len(captions)] for captions in texts for j in range(k)]
    return vocabulary.encode(flat, length).view(len(texts), k, length)
