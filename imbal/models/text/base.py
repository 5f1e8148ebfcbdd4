"""What every text backbone shares: the siamese encoder base and the embedding helpers.

A text backbone takes the batch dict of the text data modules
(``input_ids``, ``attention_mask`` ``[B, L]``; plus ``input_ids_b``,
``attention_mask_b`` for pairs) and returns features ``[B, D]``.  For pairs it
encodes both sides with the same (siamese) encoder and returns
``[u, v, |u - v|, u * v]`` (Conneau et al. 2017, InferSent), so ``D = 4 * d``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from imbal.data.stats import DataStats, TextInfo
from imbal.errors import ImbalError


def pair_features(u: Tensor, v: Tensor) -> Tensor:
    """``[u, v, |u - v|, u * v]``."""
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


class TextEncoder(nn.Module):
    """Base of the text backbones: single texts or siamese pairs, ``out_features`` set accordingly.

    Subclasses implement ``encode(input_ids, attention_mask) -> [B, d]`` and set ``self.dim = d``.
    """

    dim: int
    pair: bool = False

    @property
    def out_features(self) -> int:
        return 4 * self.dim if self.pair else self.dim

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        if not isinstance(x, dict) or "input_ids" not in x:
            raise ImbalError(
                f"{type(self).__name__} takes a dict with input_ids and attention_mask (a text data module's batch)"
            )
        u = self.encode(x["input_ids"], x["attention_mask"])
        if not self.pair:
            return u
        return pair_features(u, self.encode(x["input_ids_b"], x["attention_mask_b"]))


def text_info(stats: DataStats, model: str) -> TextInfo:
    """The tokenizer facts of a text data module's stats; refused in one line for other data."""
    info = getattr(stats, "text", None)
    if info is None:
        raise ImbalError(f"model '{model}' needs a text data module (the data's stats carry no tokenizer)")
    return info


def text_stats(stats: DataStats, model: str) -> tuple[int, int, bool, str | None]:
    """(vocab_size, pad_id, is_pair, tokenizer_file) from a text data module's stats."""
    info = text_info(stats, model)
    return int(info.vocab_size), int(info.pad_id), bool(info.pair), info.tokenizer_file


def load_vectors(path: str, vocab: dict[str, int], vocab_size: int, *, seed: int = 0) -> tuple[Tensor, float]:
    """Embedding matrix ``[vocab_size, d]`` from a GloVe or word2vec *text* file, and the vocabulary coverage.

    Read line by line by hand (a word then ``d`` numbers; word2vec's ``count dim``
    first line is skipped) rather than with pandas: the files are gigabytes and
    only the training vocabulary's rows are kept, and GloVe words may contain
    quotes and separators that a CSV reader would mangle.  Words missing from
    the file get ``U(-0.25, 0.25)``, as Kim (2014) did (chosen so their variance
    matches the pretrained vectors'); the padding row is zero.  A lower-case
    fallback is tried for words not found as written.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ImbalError(f"model.pretrained '{path}' does not exist; expected a GloVe/word2vec text file")
    lower: dict[str, int] = {}
    for w, i in vocab.items():
        lower.setdefault(w.lower(), i)
    found: dict[int, list[float]] = {}
    dim = None
    with open(p, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if lineno == 1 and len(parts) == 2 and all(s.isdigit() for s in parts):
                dim = int(parts[1])  # word2vec header: "<count> <dim>"
                continue
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise ImbalError(f"{p}, line {lineno}: {len(parts) - 1} numbers, expected {dim} (the vector size)")
            word = parts[0]
            idx = vocab.get(word, lower.get(word.lower()) if word.lower() == word else None)
            if idx is None or idx in found:
                continue
            try:
                found[idx] = [float(s) for s in parts[1:]]
            except ValueError as exc:
                raise ImbalError(f"{p}, line {lineno}: not a vector of numbers ({exc})") from exc
    if dim is None:
        raise ImbalError(f"{p}: no vectors found; expected lines 'word v1 v2 ... vd'")
    g = torch.Generator().manual_seed(seed)
    weight = torch.empty(vocab_size, dim).uniform_(-0.25, 0.25, generator=g)
    if found:
        idx = torch.tensor(list(found.keys()))
        weight[idx] = torch.tensor(list(found.values()), dtype=torch.float32)
    return weight, len(found) / max(1, len(vocab))


def tokenizer_vocab(tokenizer_file: str | None, model: str) -> dict[str, int]:
    if not tokenizer_file:
        raise ImbalError(f"model '{model}' with pretrained vectors needs the data's tokenizer file")
    if Path(tokenizer_file).is_dir():  # a pretrained transformers tokenizer
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        return dict(AutoTokenizer.from_pretrained(tokenizer_file, local_files_only=True).get_vocab())
    from tokenizers import Tokenizer

    return dict(Tokenizer.from_file(tokenizer_file).get_vocab())


def build_embedding(
    stats: Any, model: str, embed_dim: int, pretrained: str | None, *, seed: int = 0
) -> tuple[nn.Embedding, float | None]:
    """An ``nn.Embedding`` for the data's vocabulary: pretrained vectors when a file is given."""
    vocab_size, pad_id, _, tok_file = text_stats(stats, model)
    if pretrained:
        weight, coverage = load_vectors(pretrained, tokenizer_vocab(tok_file, model), vocab_size, seed=seed)
        weight[pad_id] = 0.0
        emb = nn.Embedding.from_pretrained(weight, freeze=False, padding_idx=pad_id)
        return emb, coverage
    emb = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
    nn.init.uniform_(emb.weight, -0.25, 0.25)
    with torch.no_grad():
        emb.weight[pad_id].zero_()
    return emb, None
