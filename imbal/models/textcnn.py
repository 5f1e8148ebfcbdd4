"""Text backbones' common parts and the two-channel textCNN of Kim (2014).

A text backbone takes the batch dict of the text data modules
(``input_ids``, ``attention_mask`` ``[B, L]``; plus ``input_ids_b``,
``attention_mask_b`` for pairs) and returns features ``[B, D]``.  For pairs it
encodes both sides with the same (siamese) encoder and returns
``[u, v, |u - v|, u * v]`` (Conneau et al. 2017, InferSent), so ``D = 4 * d``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def stats_extra(stats: Any) -> dict:
    """``stats.extra``; Hydra's instantiate hands a DataStats over as a plain dict."""
    if isinstance(stats, dict):
        return dict(stats.get("extra") or {})
    return dict(getattr(stats, "extra", None) or {})


def text_stats(stats: Any, model: str) -> tuple[int, int, bool, str | None]:
    """(vocab_size, pad_id, is_pair, tokenizer_file) from a text data module's stats."""
    extra = stats_extra(stats)
    if "vocab_size" not in extra:
        raise ImbalError(f"model '{model}' needs a text data module (stats.extra has no vocab_size)")
    return int(extra["vocab_size"]), int(extra.get("pad_id", 0)), bool(extra.get("text_pair", False)), extra.get(
        "tokenizer_file"
    )


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


class TextCNN(TextEncoder):
    """Kim (2014) CNN for sentence classification.

    Embeddings ``[B, L, d]`` -> convolutions of widths ``filter_sizes`` with
    ``num_filters`` maps each and ReLU -> max-over-time pooling (over real
    tokens only) -> concatenation -> dropout.  The classifier head comes from
    the task.

    Args:
        stats: the text data module's stats (vocabulary size, padding id, pairs).
        channels: ``two`` (Kim's multichannel: a static copy of the embedding and
            a fine-tuned one, each convolved by the same filters and summed),
            ``nonstatic`` (one fine-tuned channel) or ``static`` (one frozen).
            Without ``pretrained`` vectors the static channel is a frozen random
            embedding (Kim's CNN-rand has one non-static channel: use ``nonstatic``).
        embed_dim: embedding size (300 as word2vec; ignored when ``pretrained`` gives vectors).
        pretrained: a local GloVe / word2vec text file, or null.
        filter_sizes, num_filters: 3/4/5 x 100 in the paper.
        dropout: 0.5 in the paper (applied to the pooled features).

    Reference:
        Y. Kim. Convolutional Neural Networks for Sentence Classification. EMNLP 2014.
    """

    def __init__(
        self,
        *,
        stats: Any,
        channels: str = "two",
        embed_dim: int = 300,
        pretrained: str | None = None,
        filter_sizes: Sequence[int] = (3, 4, 5),
        num_filters: int = 100,
        dropout: float = 0.5,
    ):
        super().__init__()
        if channels not in ("two", "nonstatic", "static"):
            raise ImbalError(f"model.channels '{channels}' is not one of two, nonstatic, static")
        _, self.pad_id, self.pair, _ = text_stats(stats, "textcnn")
        emb, self.pretrained_coverage = build_embedding(stats, "textcnn", embed_dim, pretrained)
        self.channels = channels
        d = emb.embedding_dim
        if channels == "two":
            self.embedding = emb
            self.static = nn.Embedding.from_pretrained(emb.weight.detach().clone(), freeze=True, padding_idx=self.pad_id)
        elif channels == "nonstatic":
            self.embedding, self.static = emb, None
        else:
            self.embedding = nn.Embedding.from_pretrained(emb.weight.detach().clone(), freeze=True, padding_idx=self.pad_id)
            self.static = None
        self.filter_sizes = [int(k) for k in filter_sizes]
        self.convs = nn.ModuleList(nn.Conv1d(d, int(num_filters), k) for k in self.filter_sizes)
        self.dropout = nn.Dropout(dropout)
        self.dim = int(num_filters) * len(self.filter_sizes)

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        kmax = max(self.filter_sizes)
        if input_ids.shape[1] < kmax:  # a batch of very short texts: pad so the widest filter fits
            input_ids = F.pad(input_ids, (0, kmax - input_ids.shape[1]), value=self.pad_id)
            attention_mask = F.pad(attention_mask, (0, kmax - attention_mask.shape[1]), value=0)
        e = self.embedding(input_ids).transpose(1, 2)  # [B, d, L]
        es = self.static(input_ids).transpose(1, 2) if self.static is not None else None
        lengths = attention_mask.sum(1)
        pooled = []
        for k, conv in zip(self.filter_sizes, self.convs):
            # Kim's multichannel: each filter is applied to both channels and the results added
            h = conv(e) if es is None else conv(e) + F.conv1d(es, conv.weight)
            h = F.relu(h)  # [B, F, L - k + 1]
            # max over windows that start on a real token (a text shorter than k keeps its first window)
            valid = torch.arange(h.shape[2], device=h.device)[None, :] < (lengths - k + 1).clamp_min(1)[:, None]
            h = h.masked_fill(~valid[:, None, :], float("-inf"))
            pooled.append(h.amax(dim=2))
        return self.dropout(torch.cat(pooled, dim=1))
