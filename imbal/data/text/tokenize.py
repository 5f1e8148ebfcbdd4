"""Tokenisation for the text data modules: Hugging Face ``tokenizers`` or a local pretrained tokenizer.

Two kinds of tokenizer, chosen by the ``data.tokenizer`` node:

* ``kind: word`` or ``kind: wordpiece``: a ``tokenizers`` WordLevel / WordPiece
  model trained on the *training split only* (so no validation or test word
  leaks into the vocabulary), lower-cased and accent-stripped by default,
  split on whitespace and punctuation.  The trained tokenizer is cached on
  disk as ``<cache_dir>/<sha256 of the training texts and the settings>.json``
  and reloaded by the next run with the same data and settings.
* ``kind: pretrained`` with ``path``: ``transformers.AutoTokenizer`` from a
  local directory (``local_files_only``: nothing is downloaded), for
  ``model=hf_encoder``.

Every kind exposes the same small interface (:class:`TextTokenizer`):
``encode(texts) -> list[np.ndarray]`` (ids, truncated to ``max_length``),
``pad_id``, ``vocab_size``, ``vocab()`` (token -> id) and ``file`` (a path a
model can reload the vocabulary from).  Padding happens per batch in
:func:`pad_batch`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from imbal.errors import ImbalError
from imbal.io import atomic_path

KINDS = ("word", "wordpiece", "pretrained")
PAD, UNK = "[PAD]", "[UNK]"

DEFAULTS: dict[str, Any] = {
    "kind": "word",
    "vocab_size": 30000,
    "min_frequency": 1,
    "lowercase": True,
    "path": None,
    "cache_dir": None,
}


def default_cache_dir() -> Path:
    """``tokenizers`` under :func:`imbal.cache.cache_root` (``$IMBAL_CACHE`` or ``~/.cache/imbal``)."""
    from imbal.cache import cache_root

    return cache_root() / "tokenizers"


def texts_digest(texts: Iterable[str]) -> str:
    """sha256 over the texts in order (a NUL byte between texts, so boundaries count)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


class TextTokenizer:
    """A trained ``tokenizers.Tokenizer`` or a pretrained ``transformers`` tokenizer behind one interface."""

    def __init__(self, backend: Any, *, kind: str, max_length: int, file: str | None, cached: bool = False):
        self.backend = backend
        self.kind = kind
        self.max_length = int(max_length)
        self.file = file
        self.cached = cached
        if kind == "pretrained":
            pad = backend.pad_token_id
            if pad is None:  # e.g. GPT-2 style tokenizers have no pad token
                pad = backend.eos_token_id if backend.eos_token_id is not None else 0
            self.pad_id = int(pad)
            self.vocab_size = int(len(backend))
        else:
            self.pad_id = int(backend.token_to_id(PAD))
            self.vocab_size = int(backend.get_vocab_size())

    def vocab(self) -> dict[str, int]:
        return dict(self.backend.get_vocab())

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of every text, truncated to ``max_length``; at least one token each."""
        if self.kind == "pretrained":
            ids = self.backend(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        else:
            ids = [e.ids[: self.max_length] for e in self.backend.encode_batch(list(texts))]
        unk = self.unk_id
        # A text of only characters the normaliser removes encodes to nothing: give it one UNK
        # so every sample has a length >= 1 (pooling over zero tokens is undefined).
        return [np.asarray(x if len(x) else [unk], dtype=np.int64) for x in ids]

    @property
    def unk_id(self) -> int:
        if self.kind == "pretrained":
            u = self.backend.unk_token_id
            return int(u if u is not None else self.pad_id)
        return int(self.backend.token_to_id(UNK))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "pad_id": self.pad_id, "file": self.file}


def _train_tokenizers(texts: Sequence[str], kind: str, vocab_size: int, min_frequency: int, lowercase: bool):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK], show_progress=False
        )
    else:
        tok = Tokenizer(models.WordPiece(unk_token=UNK))
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK], show_progress=False
        )
    norm = [normalizers.NFD(), normalizers.StripAccents()]
    if lowercase:
        norm.insert(0, normalizers.Lowercase())
    tok.normalizer = normalizers.Sequence(norm)
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if kind == "wordpiece":
        from tokenizers import decoders

        tok.decoder = decoders.WordPiece()
    return tok


def build_tokenizer(
    settings: Mapping[str, Any] | None, train_texts: Sequence[str], *, max_length: int
) -> TextTokenizer:
    """The tokenizer a ``data.tokenizer`` node describes, trained on (or loaded for) ``train_texts``."""
    cfg = {**DEFAULTS, **dict(settings or {})}
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ImbalError(
            f"data.tokenizer: unknown key(s) {', '.join(sorted(unknown))}; expected: {', '.join(DEFAULTS)}"
        )
    kind = cfg["kind"]
    if kind not in KINDS:
        raise ImbalError(f"data.tokenizer.kind '{kind}' is not one of {', '.join(KINDS)}")
    if kind == "pretrained":
        return load_pretrained(cfg["path"], max_length=max_length)

    from tokenizers import Tokenizer

    key = {
        "kind": kind,
        "vocab_size": int(cfg["vocab_size"]),
        "min_frequency": int(cfg["min_frequency"]),
        "lowercase": bool(cfg["lowercase"]),
        "texts": texts_digest(train_texts),
        "format": 1,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    cache = Path(cfg["cache_dir"]) if cfg["cache_dir"] else default_cache_dir()
    path = cache / f"{kind}-{digest}.json"
    if path.is_file():
        return TextTokenizer(Tokenizer.from_file(str(path)), kind=kind, max_length=max_length, file=str(path), cached=True)
    tok = _train_tokenizers(train_texts, kind, key["vocab_size"], key["min_frequency"], key["lowercase"])
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a concurrent run never reads half a file
        tok.save(str(tmp))
    return TextTokenizer(tok, kind=kind, max_length=max_length, file=str(path))


def load_pretrained(path: str | None, *, max_length: int) -> TextTokenizer:
    """``AutoTokenizer.from_pretrained(path, local_files_only=True)`` with one-line errors."""
    if not path:
        raise ImbalError("data.tokenizer.kind=pretrained needs data.tokenizer.path (a local Hugging Face directory)")
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ImbalError(f"data.tokenizer.path '{path}' is not a directory; expected a local Hugging Face checkpoint")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception as exc:  # transformers raises OSError/ValueError with multi-line text
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImbalError(f"data.tokenizer.path '{path}': no tokenizer could be loaded ({first})") from exc
    return TextTokenizer(tok, kind="pretrained", max_length=max_length, file=str(p))


def pad_batch(seqs: Sequence[np.ndarray], pad_id: int, *, min_length: int = 1) -> tuple[Tensor, Tensor]:
    """``(input_ids [B, L], attention_mask [B, L])`` padded on the right to the batch's longest sequence."""
    n = len(seqs)
    length = max(min_length, max(len(s) for s in seqs))
    ids = torch.full((n, length), pad_id, dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.from_numpy(s)
        mask[i, : len(s)] = 1
    return ids, mask
