"""Any local Hugging Face encoder checkpoint (``AutoModel``) with masked mean pooling."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from imbal.errors import ImbalError
from imbal.models.text.base import TextEncoder, text_info


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean of the token states over real tokens (Sentence-BERT's pooling)."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


class HFEncoder(TextEncoder):
    """A pretrained transformer encoder from a local directory, mean-pooled.

    The data must be tokenised by the same checkpoint's tokenizer:
    ``data.tokenizer.kind=pretrained data.tokenizer.path=<the same path>``.
    Loading is offline (``HF_HUB_OFFLINE=1``, ``local_files_only``).

    Args:
        path: directory of a Hugging Face checkpoint (config.json + weights).
        freeze: ``true`` keeps every encoder weight fixed (only the head trains);
            an integer ``k`` freezes the embeddings and the first ``k`` layers.
        stats: the text data module's stats (checks the tokenizer matches).
        dropout: on the pooled vector.
    """

    def __init__(self, *, path: str, stats: Any, freeze: bool | int = False, dropout: float = 0.1):
        super().__init__()
        info = text_info(stats, "hf_encoder")
        if not path:
            raise ImbalError("model.path is required: a local Hugging Face checkpoint directory")
        p = Path(path).expanduser()
        if not p.is_dir() or not (p / "config.json").is_file():
            raise ImbalError(f"model.path '{path}' is not a Hugging Face checkpoint directory (no config.json there)")
        if info.tokenizer_kind != "pretrained":
            raise ImbalError(
                f"model hf_encoder needs the checkpoint's own tokenizer: add data.tokenizer.kind=pretrained "
                f"data.tokenizer.path={path}"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel

        try:
            self.model = AutoModel.from_pretrained(str(p), local_files_only=True)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ImbalError(f"model.path '{path}': the checkpoint could not be loaded ({first})") from exc
        n_emb = self.model.get_input_embeddings().num_embeddings
        if int(info.vocab_size) > n_emb:
            raise ImbalError(
                f"data's tokenizer has {info.vocab_size} tokens but the checkpoint at '{path}' embeds {n_emb}; "
                f"use data.tokenizer.path={path}"
            )
        self.pair = bool(info.pair)
        self.dim = int(self.model.config.hidden_size)
        self.drop = torch.nn.Dropout(dropout)
        self._freeze(freeze)

    def _freeze(self, freeze: bool | int) -> None:
        if freeze is True:
            for prm in self.model.parameters():
                prm.requires_grad_(False)
            return
        if freeze is False or int(freeze) <= 0:
            return
        for prm in self.model.get_input_embeddings().parameters():
            prm.requires_grad_(False)
        layers = None
        for name in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
            obj = self.model
            try:
                for part in name.split("."):
                    obj = getattr(obj, part)
                layers = obj
                break
            except AttributeError:
                continue
        if layers is None:
            raise ImbalError("model.freeze=<k>: this checkpoint's layer list was not found; use freeze=true or false")
        for layer in list(layers)[: int(freeze)]:
            for prm in layer.parameters():
                prm.requires_grad_(False)

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return self.drop(mean_pool(out.last_hidden_state, attention_mask))
