"""Any local Hugging Face encoder checkpoint: ``AutoModel`` pooled (mean, first token or the pooler),
or a sequence-classification checkpoint whose own classifier is reused as the head."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import BINARY
from imbal.models.text.base import TextEncoder, text_info

POOLINGS = ("mean", "cls", "pooler")


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean of the token states over real tokens (Sentence-BERT's pooling)."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _is_default_label(name: str, i: int) -> bool:
    return str(name) == f"LABEL_{i}"


class HFEncoder(TextEncoder):
    """A pretrained transformer encoder from a local directory.

    The data must be tokenised by the same checkpoint's tokenizer:
    ``data.tokenizer.kind=pretrained data.tokenizer.path=<the same path>``.
    Loading is offline (``HF_HUB_OFFLINE=1``, ``local_files_only``).

    ``from_pretrained`` returns a model in eval mode and Lightning (2.6) does not
    call ``.train()`` at fit start (it keeps the modes modules had, and the
    evaluation loops restore them), so the encoder is put in train mode here:
    its dropout is active in ``training_step``.  A fully frozen encoder
    (``freeze=true``) stays in eval mode, whatever ``.train()`` calls follow: it
    is a fixed feature extractor.  ``freeze=k`` keeps train mode.

    Reusing a checkpoint's classifier (``reuse_head``): a checkpoint saved from
    ``AutoModelForSequenceClassification`` (``config.architectures`` ending in
    ``ForSequenceClassification``) whose label count fits the data is loaded
    whole; the backbone sets ``outputs_logits = True`` and returns the
    checkpoint's logits (the task adds no head).  The head fits when

    * multiclass / multilabel data: ``num_labels == num_classes``;
    * binary data (one logit): a 2-label head gives ``z_pos - z_neg`` (so the
      sigmoid of it is the checkpoint's softmax probability of the positive
      class), a 1-label head its logit as is (not a ``regression`` one).

    Labels are matched by name when the checkpoint's ``id2label`` names are the
    data's class names (in any order; the logits are reordered to the data's
    class ids), else by position (printed in one line when the names are not
    the default ``LABEL_i``).  With a reused head the checkpoint's own pooling
    and classifier dropout apply: ``pooling`` and ``dropout`` are not used.
    Pairs (siamese features) never reuse a head.

    Args:
        path: directory of a Hugging Face checkpoint (config.json + weights).
        freeze: ``true`` keeps every encoder weight fixed (only the head trains);
            an integer ``k`` freezes the embeddings and the first ``k`` layers.
        stats: the text data module's stats (checks the tokenizer matches).
        dropout: on the pooled vector.
        pooling: ``mean`` (over real tokens), ``cls`` (the first token's hidden
            state) or ``pooler`` (the model's ``pooler_output``; refused when the
            checkpoint has no pooler weights).
        reuse_head: ``auto`` reuses a sequence-classification head that fits the
            data and drops one that does not (one printed line); ``true`` refuses
            in one line when it cannot reuse; ``false`` always trains a new head.
    """

    def __init__(
        self,
        *,
        path: str,
        stats: Any,
        freeze: bool | int = False,
        dropout: float = 0.1,
        pooling: str = "mean",
        reuse_head: bool | str = "auto",
    ):
        super().__init__()
        info = text_info(stats, "hf_encoder")
        if not path:
            raise ImbalError("model.path is required: a local Hugging Face checkpoint directory")
        if pooling not in POOLINGS:
            raise ImbalError(f"model.pooling '{pooling}' is not one of {', '.join(POOLINGS)}")
        if not (isinstance(reuse_head, bool) or reuse_head == "auto"):
            raise ImbalError(f"model.reuse_head '{reuse_head}' is not one of auto, true, false")
        p = Path(path).expanduser()
        if not p.is_dir() or not (p / "config.json").is_file():
            raise ImbalError(f"model.path '{path}' is not a Hugging Face checkpoint directory (no config.json there)")
        if info.tokenizer_kind != "pretrained":
            raise ImbalError(
                f"model hf_encoder needs the checkpoint's own tokenizer: add data.tokenizer.kind=pretrained "
                f"data.tokenizer.path={path}"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from imbal.extras import require

        require("transformers", "text", feature="model=hf_encoder")
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

        try:
            config = AutoConfig.from_pretrained(str(p), local_files_only=True)
        except Exception as exc:
            raise ImbalError(f"model.path '{path}': the checkpoint could not be loaded ({_first_line(exc)})") from exc
        self.pair = bool(info.pair)
        self.pooling = pooling
        self.binary = stats.task == BINARY
        self.label_index: list[int] | None = None  # checkpoint label per output, when the head is reused
        self.outputs_logits = self._reuse_head(config, stats, reuse_head, path)
        if self.outputs_logits and pooling != "mean":
            print(f"imbal: model hf_encoder: model.pooling={pooling} is not used: the reused head pools as the checkpoint does")
        loader = AutoModelForSequenceClassification if self.outputs_logits else AutoModel
        try:
            self.model, loading = loader.from_pretrained(str(p), local_files_only=True, output_loading_info=True)
        except Exception as exc:
            raise ImbalError(f"model.path '{path}': the checkpoint could not be loaded ({_first_line(exc)})") from exc
        if pooling == "pooler" and not self.outputs_logits:
            missing = [k for k in loading.get("missing_keys", ()) if "pooler" in k]
            if getattr(self.model, "pooler", None) is None or missing:
                raise ImbalError(
                    f"model.pooling=pooler: the checkpoint at '{path}' has no pooler weights "
                    f"({type(self.model).__name__}); use model.pooling=mean or cls"
                )
        n_emb = self.model.get_input_embeddings().num_embeddings
        if int(info.vocab_size) > n_emb:
            raise ImbalError(
                f"data's tokenizer has {info.vocab_size} tokens but the checkpoint at '{path}' embeds {n_emb}; "
                f"use data.tokenizer.path={path}"
            )
        self.dim = int(self.model.config.hidden_size)
        self.drop = torch.nn.Dropout(dropout)
        self.frozen = freeze is True
        self._freeze(freeze)
        self.train()  # from_pretrained returns eval mode; train() keeps a frozen encoder in eval

    # -- the head ------------------------------------------------------------
    def _reuse_head(self, config: Any, stats: Any, reuse_head: bool | str, path: str) -> bool:
        """Whether the checkpoint's classifier becomes the head; sets ``label_index`` when it does."""
        if reuse_head is False:
            return False
        archs = list(getattr(config, "architectures", None) or [])
        if not any(str(a).endswith("ForSequenceClassification") for a in archs):
            if reuse_head is True:
                raise ImbalError(
                    f"model.reuse_head=true: the checkpoint at '{path}' has no sequence-classification head "
                    f"(architectures: {', '.join(archs) or 'none'}); use model.reuse_head=auto or false"
                )
            return False
        names = [str(config.id2label.get(i, f"LABEL_{i}")) for i in range(int(config.num_labels))]
        why = self._head_mismatch(config, stats, names)
        if why is not None:
            if reuse_head is True:
                raise ImbalError(f"model.reuse_head=true: {why}; use model.reuse_head=auto or false")
            print(f"imbal: model hf_encoder: {why}; it is dropped and a new head is trained")
            return False
        classes = [str(c) for c in stats.class_names]
        if len(names) == 1:  # binary from a 1-label head: its logit
            self.label_index = [0]
            return True
        if set(names) == set(classes) and len(set(names)) == len(names):
            order = [names.index(c) for c in classes]  # by name, in the data's class order
        else:
            order = list(range(len(classes)))
            if not all(_is_default_label(n, i) for i, n in enumerate(names)):
                pairs = ", ".join(f"{names[o]}->{c}" for o, c in zip(order, classes))
                print(f"imbal: model hf_encoder: the checkpoint's labels are matched to the classes by position ({pairs})")
        # binary from a 2-label head: order is [negative, positive] and the logit is z_pos - z_neg
        self.label_index = order
        return True

    @staticmethod
    def _head_mismatch(config: Any, stats: Any, names: list[str]) -> str | None:
        """Why the checkpoint's head does not fit the data (None when it fits)."""
        k, c = int(config.num_labels), int(stats.num_classes)
        if stats.task == BINARY:
            fits = k == 2 or (k == 1 and getattr(config, "problem_type", None) != "regression")
            wanted = "binary (one logit: a 2-label or 1-label head)"
        else:
            fits = k == c
            wanted = f"{c} classes"
        if not fits:
            return f"the checkpoint's classification head has {k} label(s) ({', '.join(names[:10])}) but the data is {wanted}"
        if bool(getattr(getattr(stats, "text", None), "pair", False)):
            return "the checkpoint's classification head takes single texts but the data is text pairs (siamese)"
        return None

    def logits(self, x: dict[str, Tensor]) -> Tensor:
        """The checkpoint's logits in the data's class order: ``[B, C]`` (``[B, 1]`` for binary)."""
        z = self.model(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits
        idx = self.label_index if self.label_index is not None else list(range(z.shape[-1]))
        if self.binary and z.shape[-1] == 2:
            return (z[:, idx[1]] - z[:, idx[0]]).unsqueeze(-1)
        return z[:, idx]

    # -- modes and freezing ---------------------------------------------------
    def train(self, mode: bool = True) -> "HFEncoder":
        super().train(mode)
        if self.frozen:
            self._encoder().eval()
        return self

    def _encoder(self) -> torch.nn.Module:
        """The transformer without a reused classifier (``base_model`` of a sequence-classification model)."""
        return self.model.base_model

    def _freeze(self, freeze: bool | int) -> None:
        enc = self._encoder()
        if freeze is True:
            for prm in enc.parameters():
                prm.requires_grad_(False)
            return
        if freeze is False or int(freeze) <= 0:
            return
        for prm in enc.get_input_embeddings().parameters():
            prm.requires_grad_(False)
        layers = None
        for name in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
            obj = enc
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

    # -- forward ------------------------------------------------------------
    def forward(self, x: dict[str, Tensor]) -> Tensor:
        if self.outputs_logits and isinstance(x, dict) and "input_ids" in x:
            return self.logits(x)
        return super().forward(x)

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "cls":
            pooled = out.last_hidden_state[:, 0]
        elif self.pooling == "pooler":
            pooled = out.pooler_output
        else:
            pooled = mean_pool(out.last_hidden_state, attention_mask)
        return self.drop(pooled)
