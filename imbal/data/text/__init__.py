"""Text data: labelled texts (or text pairs) from files, and a generated long-tailed corpus.

* :mod:`~imbal.data.text.readers`: CSV, TSV, JSONL and Parquet tables, and the cell helpers;
* :mod:`~imbal.data.text.tokenize`: trained or local pretrained tokenizers, per-batch padding;
* :mod:`~imbal.data.text.splits`: stratified hold-outs that keep copies of a text together;
* :mod:`~imbal.data.text.dataset`: :class:`TextDataset` and length-bucketed batches;
* :mod:`~imbal.data.text.module`: ``data=text`` (:class:`TextDataModule`) and its presets;
* :mod:`~imbal.data.text.synthetic`: ``data=text_synth`` (:class:`TextSynthDataModule`).
"""

from imbal.extras import require_all

require_all(("pandas", "tokenizers"), "text", feature="text data")  # a one-line error, not pandas' traceback

from imbal.data.text.dataset import BucketBatchSampler, TextDataset  # noqa: E402
from imbal.data.text.module import TASK_CHOICES, TextDataModule
from imbal.data.text.readers import EXTENSIONS, FORMATS, detect_format, normalise_key, read_table
from imbal.data.text.synthetic import TextSynthDataModule, generate_corpus
from imbal.data.text.tokenize import TextTokenizer, build_tokenizer, load_pretrained, pad_batch

__all__ = [
    "BucketBatchSampler",
    "EXTENSIONS",
    "FORMATS",
    "TASK_CHOICES",
    "TextDataModule",
    "TextDataset",
    "TextSynthDataModule",
    "TextTokenizer",
    "build_tokenizer",
    "detect_format",
    "generate_corpus",
    "load_pretrained",
    "normalise_key",
    "pad_batch",
    "read_table",
]
