"""Bidirectional GRU sentence encoder with max or attention pooling; siamese for pairs."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from imbal.errors import ImbalError
from imbal.models.text.base import TextEncoder, build_embedding, text_stats

POOLINGS = ("max", "attention", "last")


class GRUEncoder(TextEncoder):
    """Embedding -> bidirectional GRU (packed, so padding never enters the recurrence) -> pooling.

    Args:
        stats: the text data module's stats.
        embed_dim: embedding size (ignored when ``pretrained`` gives vectors).
        hidden: GRU units per direction; the sentence vector has ``2 * hidden``.
        num_layers: stacked GRU layers.
        pooling: ``max`` (max over time of the hidden states, InferSent's best),
            ``attention`` (additive self-attention, Yang et al. 2016: ``a_t =
            softmax(v^T tanh(W h_t + b))``, output ``sum_t a_t h_t``), or ``last``
            (the final states of both directions).
        dropout: on the embeddings and on the sentence vector.
        pretrained: a local GloVe / word2vec text file, or null.
        freeze_embedding: keep the embedding fixed.

    For pair data the same encoder reads both texts; the features are
    ``[u, v, |u - v|, u * v]`` (``8 * hidden``).

    Reference:
        Conneau, Kiela, Schwenk, Barrault, Bordes. Supervised Learning of Universal
        Sentence Representations from Natural Language Inference Data. EMNLP 2017.
    """

    def __init__(
        self,
        *,
        stats: Any,
        embed_dim: int = 300,
        hidden: int = 256,
        num_layers: int = 1,
        pooling: str = "max",
        dropout: float = 0.5,
        pretrained: str | None = None,
        freeze_embedding: bool = False,
        attention_dim: int = 128,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ImbalError(f"model.pooling '{pooling}' is not one of {', '.join(POOLINGS)}")
        _, self.pad_id, self.pair, _ = text_stats(stats, "gru")
        self.embedding, self.pretrained_coverage = build_embedding(stats, "gru", embed_dim, pretrained)
        self.embedding.weight.requires_grad_(not freeze_embedding)
        self.gru = nn.GRU(
            self.embedding.embedding_dim, int(hidden), num_layers=int(num_layers), batch_first=True, bidirectional=True
        )
        self.pooling = pooling
        self.dim = 2 * int(hidden)
        if pooling == "attention":
            self.att_proj = nn.Linear(self.dim, int(attention_dim))
            self.att_v = nn.Linear(int(attention_dim), 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        lengths = attention_mask.sum(1).clamp_min(1)
        e = self.dropout(self.embedding(input_ids))
        packed = pack_padded_sequence(e, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.gru(packed)
        if self.pooling == "last":
            return self.dropout(torch.cat([h_n[-2], h_n[-1]], dim=1))
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=input_ids.shape[1])  # [B, L, 2H]
        valid = torch.arange(h.shape[1], device=h.device)[None, :] < lengths[:, None]
        if self.pooling == "max":
            s = h.masked_fill(~valid[:, :, None], float("-inf")).amax(dim=1)
        else:
            score = self.att_v(torch.tanh(self.att_proj(h))).squeeze(-1)  # [B, L]
            a = F.softmax(score.masked_fill(~valid, float("-inf")), dim=1)
            s = torch.bmm(a.unsqueeze(1), h).squeeze(1)
        return self.dropout(s)
