"""Text backbones: textCNN (Kim 2014), bidirectional GRU, and a local Hugging Face encoder.

Each takes a text data module's batch dict and returns features ``[B, D]``; the shared
encoder base (single texts or siamese pairs) and the embedding helpers are in
:mod:`imbal.models.text.base`.
"""

from imbal.models.text.base import (
    TextEncoder,
    build_embedding,
    load_vectors,
    pair_features,
    text_info,
    text_stats,
    tokenizer_vocab,
)
from imbal.models.text.gru import GRUEncoder
from imbal.models.text.hf_encoder import HFEncoder, mean_pool
from imbal.models.text.textcnn import TextCNN

__all__ = [
    "GRUEncoder",
    "HFEncoder",
    "TextCNN",
    "TextEncoder",
    "build_embedding",
    "load_vectors",
    "mean_pool",
    "pair_features",
    "text_info",
    "text_stats",
    "tokenizer_vocab",
]
