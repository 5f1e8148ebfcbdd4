"""The two-channel textCNN of Kim (2014)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imbal.errors import ImbalError
from imbal.models.text.base import TextEncoder, build_embedding, text_stats


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
