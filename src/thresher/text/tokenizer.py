"""A word-level vocabulary (issue 21's documented alternative to BPE): lower-cased runs of letters and digits, the
most frequent words of the training captions, id 0 padding and id 1 every word it does not know. Small pools of
templated captions have a few hundred words, so a word vocabulary is exact where BPE would split names into pieces;
it is stored in the checkpoint (``to_dict``) so that zero-shot prompts are read with the words the model learnt.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

PAD, UNK = 0, 1
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """The words of ``text`` as the vocabulary reads them."""
    return _WORD.findall(text.lower())


class WordVocab:
    """Word -> id for the ``size - 2`` most frequent words of a corpus (ties broken alphabetically)."""

    def __init__(self, vocabulary: Sequence[str]):
        self.words = list(vocabulary)
        self.index = {w: i + 2 for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Iterable[str], size: int = 4096) -> WordVocab:
        if size < 3:
            raise ValueError(f"a vocabulary needs room for padding, unknown and one word: size >= 3, got {size}")
        counts = Counter(w for t in texts for w in words(t))
        if not counts:
            raise ValueError("no words in the captions: cannot build a vocabulary")
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: size - 2]
        return cls([w for w, _ in ranked])

    def __len__(self) -> int:
        return len(self.words) + 2

    def knows(self, text: str) -> bool:
        """Whether every word of ``text`` is in the vocabulary."""
        return all(w in self.index for w in words(text))

    def encode(self, texts: Sequence[str], length: int) -> torch.Tensor:
        """(len(texts), length) int64 ids, cut at ``length`` words, padded with 0."""
        out = torch.zeros(len(texts), length, dtype=torch.int64)
        for i, t in enumerate(texts):
            ids = [self.index.get(w, UNK) for w in words(t)][:length]
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out

    def to_dict(self) -> dict:
        return {"kind": "words", "words": list(self.words)}

    @classmethod
    def from_dict(cls, doc: dict) -> WordVocab:
        if doc.get("kind") != "words":
            raise ValueError(f"not a word vocabulary: {doc.get('kind')!r}")
        return cls(doc["words"])
