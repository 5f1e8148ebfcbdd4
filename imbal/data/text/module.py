"""``data=text``: labelled text (or text pairs) from CSV, TSV, JSONL or Parquet files or a ``datasets`` folder.

One module serves every text data set; the presets (``data=sms_spam``,
``data=emotion``, ``data=quora_pairs``) only set columns and paths.  Reading is
pandas (``imbal/data/text/readers.py``), vocabularies are Hugging Face
``tokenizers`` (``imbal/data/text/tokenize.py``), splits are scikit-learn's,
and batches are padded per batch (``imbal/data/text/dataset.py``).  A batch is
``(x, y)`` with ``x`` a dict of ``input_ids`` and ``attention_mask`` ``[B, L]``
(and ``input_ids_b``/``attention_mask_b`` for pairs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from imbal.data.base import DataModuleBase
from imbal.data.loaders import EpochWorkerSeed, build_sampler, eval_loader, train_loader
from imbal.data.stats import DataStats, TextInfo
from imbal.data.text.dataset import BucketBatchSampler, TextDataset
from imbal.data.text.readers import HF_DISK, detect_format, hf_disk_frames, is_missing, normalise_key
from imbal.data.text.options import check_options
from imbal.data.text.readers import canonical_split_labels, check_cells, parse_labels, read_table
from imbal.data.text.splits import Splits, cut_splits, split_off
from imbal.data.text.tokenize import TextTokenizer, build_tokenizer
from imbal.errors import ImbalError
from imbal.io import write_json_atomic
from imbal.kinds import BINARY, MULTICLASS, MULTILABEL, SPLITS, TEXT

TASK_CHOICES = ("auto", MULTICLASS, BINARY, MULTILABEL)


class TextDataModule(DataModuleBase):
    """Labelled texts or text pairs from files.

    Args:
        train_path, val_path, test_path: files (relative to ``root`` when given).
            Without ``val_path``/``test_path`` those splits are cut from the training
            file: stratified by label, seeded, with every copy of a text in the same
            split (``group_by=text``; ``none`` disables the grouping).
        root: directory the paths are relative to (``train_path: .`` for a datasets folder ``root``).
        format: csv, tsv, jsonl, parquet or hf_disk (``readers.hf_disk_frames``); by extension when null.
        sep, header, column_names, quoting: CSV/TSV reading (``quoting: none`` reads
            quote characters as text, as the SMS Spam Collection needs).
        text_column: the text; or ``text_columns`` (two names) for pair tasks.
        label_column: label strings or numbers, mapped to ids in sorted order (numbers
            numerically) unless ``classes`` lists them in order.  Labels are stripped of
            surrounding whitespace; in a file whose labels are all numbers, ``1``, ``1.0`` and
            ``01`` are the one class ``'1'`` (``readers.canonical_labels``, over all files and ``classes``).
        task: ``auto`` (multilabel if ``multilabel`` else multiclass), ``multiclass``,
            ``binary`` (two classes, ``classes[1]`` is the positive class; logits ``[N]``)
            or ``multilabel``.
        multilabel, label_sep: labels given as a list, or a string split on ``label_sep``.
        val_fraction, test_fraction: sizes of the splits cut from the training file.
        on_bad_row: ``error`` (default) stops at the first bad row with one line naming
            file and row; ``skip`` drops bad rows and reports their count.
        tokenizer: the ``tokenizer`` node (see ``imbal/data/text/tokenize.py``).
        max_length: tokens kept per text.
        min_length: batches are padded to at least this many tokens (the widest
            convolution of a textCNN needs 5).
        bucket: group training batches by length (``bucket_pool`` batches per sort).
        test_prior: known class prior of the test split, for the post-hoc prior shift.
        batch_size, num_workers, seed, sampler: as every data module; a class-aware
            sampler needs one class per sample, so multilabel data takes ``sampler=none`` only.
    """

    name = "text"
    modality = TEXT

    def __init__(
        self,
        *,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        root: str | None = None,
        format: str | None = None,
        sep: str | None = None,
        header: bool = True,
        column_names: Sequence[str] | None = None,
        quoting: str = "minimal",
        text_column: str = "text",
        text_columns: Sequence[str] | None = None,
        label_column: str = "label",
        classes: Sequence[str] | None = None,
        task: str = "auto",
        multilabel: bool = False,
        label_sep: str = ",",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        group_by: str = "text",
        on_bad_row: str = "error",
        tokenizer: dict | None = None,
        max_length: int = 128,
        min_length: int = 5,
        bucket: bool = False,
        bucket_pool: int = 50,
        test_prior: Sequence[float] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        sampler: Any = None,
    ):
        super().__init__()
        check_options(task=task, choices=TASK_CHOICES, on_bad_row=on_bad_row, group_by=group_by, text_columns=text_columns,
                      val_fraction=val_fraction, test_fraction=test_fraction, max_length=max_length, min_length=min_length)
        self.root = Path(root).expanduser() if root else None
        self.paths = {"train": train_path, "val": val_path, "test": test_path}
        self.format = format
        self.sep, self.header, self.column_names, self.quoting = sep, bool(header), column_names, quoting
        self.text_columns = list(text_columns) if text_columns else [text_column]
        self.label_column = label_column
        self.classes = [str(c).strip() for c in classes] if classes else None
        self.feature_classes: list[str] | None = None  # a datasets ClassLabel's names, in order
        self.val_from: str | None = None  # "dataset_split": the validation split of a DatasetDict train_path
        self.multilabel = bool(multilabel) or task == MULTILABEL
        self.task = MULTILABEL if self.multilabel else (MULTICLASS if task == "auto" else task)
        self.label_sep = label_sep
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.group_by = group_by
        self.on_bad_row = on_bad_row
        self.tokenizer_cfg = dict(tokenizer or {})
        self.max_length, self.min_length = int(max_length), int(min_length)
        self.bucket, self.bucket_pool = bool(bucket), int(bucket_pool)
        self.test_prior = [float(p) for p in test_prior] if test_prior is not None else None
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.seed = int(seed)
        self.sampler_cfg = sampler
        sampler_name = dict(sampler or {}).get("name", "none")
        if self.multilabel and sampler_name not in (None, "none"):
            raise ImbalError(f"sampler '{sampler_name}' needs one class per sample; "
                             f"data '{self.name}' is multilabel: use sampler=none")
        self.splits: dict[str, TextDataset] = {}
        self.class_names: list[str] = []
        self.tokenizer: TextTokenizer | None = None
        self.manifest: dict[str, Any] = {}
        self._stats: DataStats | None = None

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    # -- reading ----------------------------------------------------------
    def resolve(self, p: str) -> Path:
        path = Path(p).expanduser()
        if not path.is_absolute() and self.root is not None:
            path = self.root / path
        return path

    def read_frames(self) -> dict[str, tuple[pd.DataFrame, str, int]]:
        """``{split: (frame, file name for messages, malformed lines skipped)}`` for the files given.

        Subclasses that generate their data (``data=text_synth``) override this.
        """
        if not self.paths["train"]:
            raise ImbalError("data.train_path is required (a CSV, TSV, JSONL or Parquet file, or a datasets folder)")
        if self.root is not None and not self.root.is_dir():
            raise ImbalError(f"data.root '{self.root}' is not a directory")
        out: dict[str, tuple[pd.DataFrame, str, int]] = {}
        for split in SPLITS:
            if not self.paths[split]:
                continue
            path = self.resolve(self.paths[split])
            fmt = detect_format(path, self.format)
            if fmt == HF_DISK:  # a DatasetDict given as train_path also fills the splits without a path
                frames, names = hf_disk_frames(path, split, [*self.text_columns, self.label_column], self.paths)
                out.update(frames)
                if split == "train":
                    self.feature_classes, self.val_from = names, ("dataset_split" if "val" in frames else None)
                continue
            df, skipped = read_table(path, fmt=fmt, sep=self.sep, header=self.header, column_names=self.column_names,
                                     quoting=self.quoting, skip_bad_lines=self.on_bad_row == "skip")
            out[split] = (df, str(path), skipped)
        return out

    def _bad(self, where: str, row: int, what: str, bad: list[str]) -> None:
        msg = f"{where}, row {row}: {what}"
        if self.on_bad_row == "error":
            raise ImbalError(f"{msg} (set data.on_bad_row=skip to drop such rows)")
        bad.append(msg)

    def _records(self, df: pd.DataFrame, where: str, bad: list[str]) -> tuple[list[tuple[str, ...]], list, list[int]]:
        """Texts, raw labels and row numbers of the valid rows of one file."""
        needed = [*self.text_columns, self.label_column]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            cols = ", ".join(str(c) for c in df.columns)
            raise ImbalError(
                f"{where}: no column '{missing[0]}' (columns: {cols}); set data.text_column(s)/data.label_column"
                + ("" if self.header else " or data.column_names")
            )
        check_cells(df, where, self.text_columns, self.label_column, multilabel=self.multilabel)
        texts, labels, rows = [], [], []
        cols = [df[c].tolist() for c in self.text_columns]
        raw = df[self.label_column].tolist()
        for i in range(len(df)):
            row = i + 1
            t = []
            for c, col in zip(self.text_columns, cols):
                v = col[i]
                if is_missing(v):
                    self._bad(where, row, f"missing value in text column '{c}'; expected text", bad)
                    break
                if not str(v).strip():
                    self._bad(where, row, f"empty text in column '{c}'; expected non-empty text", bad)
                    break
                t.append(str(v))
            else:
                lab = parse_labels(raw[i], multilabel=self.multilabel, label_sep=self.label_sep)
                if lab is None:
                    self._bad(where, row, f"missing label in column '{self.label_column}'", bad)
                    continue
                texts.append(tuple(t))
                labels.append(lab)
                rows.append(row)
        return texts, labels, rows

    def _class_names(self, train_labels: list) -> list[str]:
        if self.classes or self.feature_classes:  # given, or a datasets ClassLabel's order
            return list(self.classes or self.feature_classes)
        seen = {l for labs in train_labels for l in labs} if self.multilabel else set(train_labels)
        try:
            return sorted(seen, key=lambda s: (float(s), s))  # numbers numerically: 2 before 10
        except ValueError:
            return sorted(seen)

    def _label_index(self, train_texts: list, train_labels: list, train_where: str) -> dict[str, int]:
        """Set ``class_names`` from the training file's labels; their ids."""
        if not train_texts:
            raise ImbalError(f"{train_where}: no usable rows")
        self.class_names = self._class_names(train_labels)
        if self.task == BINARY and len(self.class_names) != 2:
            raise ImbalError(
                f"data.task=binary needs exactly 2 classes, but {train_where} has {len(self.class_names)}: "
                f"{', '.join(self.class_names[:10])}"
            )
        if len(self.class_names) < 2:
            raise ImbalError(f"{train_where}: found {len(self.class_names)} class; expected at least 2")
        return {c: i for i, c in enumerate(self.class_names)}

    def _encode_labels(self, labels: list, texts: list, index: dict[str, int], where: str, rows: list[int], bad: list[str]):
        keep, ys = [], []
        for j, lab in enumerate(labels):
            labs = lab if self.multilabel else [lab]
            unknown = [l for l in labs if l not in index]
            if unknown:
                known = ", ".join(index) if len(index) <= 20 else f"{len(index)} classes of the training split"
                self._bad(where, rows[j], f"unknown label '{unknown[0]}'; expected one of: {known}", bad)
                continue
            keep.append(j)
            if self.multilabel:
                v = np.zeros(len(index), dtype=np.float32)
                v[[index[l] for l in labs]] = 1.0
                ys.append(v)
            else:
                ys.append(index[lab])
        return [texts[j] for j in keep], ys

    # -- splitting --------------------------------------------------------
    def _split_off(self, y: list, texts: list[tuple[str, ...]], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(held-out, rest) indices of ``fraction`` of the rows (:func:`imbal.data.text.splits.split_off`)."""
        return split_off(y, texts, fraction, seed, group_by=self.group_by, multilabel=self.multilabel,
                         class_names=self.class_names)

    def _split(self, encoded: Splits, wheres: dict[str, str]) -> tuple[Splits, dict[str, str]]:
        """Every split's ``(texts, ys)`` and source: one without its own file is cut from the training file."""
        return cut_splits(encoded, wheres, self._split_off, val_fraction=self.val_fraction,
                          test_fraction=self.test_fraction, seed=self.seed)

    # -- setup --------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Read the files, fix the class ids, cut the missing splits, tokenise, then fill stats and manifest."""
        if self.splits:
            return
        frames = self.read_frames()
        bad: list[str] = []
        parsed = {split: (*self._records(df, where, bad), where) for split, (df, where, _) in frames.items()}
        # labels that are all numbers: 1 and 1.0 are one class, decided over every split and the given names
        parsed, self.classes = canonical_split_labels(parsed, self.classes or self.feature_classes)
        train_texts, train_labels, _, train_where = parsed["train"]
        index = self._label_index(train_texts, train_labels, train_where)
        encoded = {
            split: self._encode_labels(labels, texts, index, where, rows, bad)
            for split, (texts, labels, rows, where) in parsed.items()
        }
        data, sources = self._split(encoded, {split: p[3] for split, p in parsed.items()})
        self._tokenize(data)
        self._describe(data, index, sources, bad, skipped_lines=sum(f[2] for f in frames.values()))

    def _tokenize(self, data: Splits) -> None:
        """Train (or load) the tokenizer on the training texts; every split as a :class:`TextDataset`."""
        self.tokenizer = build_tokenizer(
            self.tokenizer_cfg,
            [s for t in data["train"][0] for s in t],
            max_length=self.max_length,
        )
        for split in SPLITS:
            tx, y = data[split]
            a = self.tokenizer.encode([t[0] for t in tx])
            b = self.tokenizer.encode([t[1] for t in tx]) if self.is_pair else None
            if self.task == MULTILABEL:
                yt = torch.from_numpy(np.stack(y)).float()
            elif self.task == BINARY:
                yt = torch.tensor(y, dtype=torch.float32)
            else:
                yt = torch.tensor(y, dtype=torch.long)
            self.splits[split] = TextDataset(a, b, yt, self.tokenizer.pad_id, self.min_length)

    # -- stats and manifest -------------------------------------------------
    def _describe(self, data: Splits, index: dict[str, int], sources: dict[str, str], bad: list[str], *,
                  skipped_lines: int) -> None:
        """Set ``stats`` and ``manifest``; refuse a ``test_prior`` of the wrong length."""
        c = len(self.class_names)
        counts = {split: self._counts(self.splits[split].y, c) for split in SPLITS}
        train_keys = {tuple(normalise_key(s) for s in t) for t in data["train"][0]}
        overlap = {
            split: sum(tuple(normalise_key(s) for s in t) in train_keys for t in data[split][0]) for split in ("val", "test")
        }
        if self.test_prior is not None and len(self.test_prior) != c:
            raise ImbalError(f"data.test_prior has {len(self.test_prior)} entries, expected {c} (one per class)")
        if bad or skipped_lines:
            print(f"imbal: data '{self.name}': skipped {len(bad) + skipped_lines} bad rows (first: {bad[0] if bad else 'a malformed line'})")
        self.text_info = TextInfo(
            vocab_size=self.tokenizer.vocab_size,
            pad_id=self.tokenizer.pad_id,
            tokenizer_kind=self.tokenizer.kind,
            tokenizer_file=self.tokenizer.file,
            pair=self.is_pair,
            max_length=self.max_length,
        )
        self._stats = DataStats(
            task=self.task,
            num_classes=c,
            class_counts=counts["train"],
            class_names=list(self.class_names),
            modality=self.modality,
            input_shape=(self.max_length,),
            test_prior=self.test_prior,
            num_train=len(self.splits["train"]),
            val_from="val_path" if self.paths["val"] else (self.val_from or "train"),
            text=self.text_info,
        )
        self.manifest = self._manifest(index, sources, counts, overlap, bad, len(bad) + skipped_lines)

    def _manifest(self, index: dict[str, int], sources: dict[str, str], counts: dict[str, list[int]],
                  overlap: dict[str, int], bad: list[str], skipped: int) -> dict[str, Any]:
        lengths = self.splits["train"].lengths()
        return {
            "label_map": index,
            "task": self.task,
            "text_columns": self.text_columns,
            "label_column": self.label_column,
            "sources": sources,
            "sizes": {s: len(self.splits[s]) for s in SPLITS},
            "class_counts": counts,
            "bad_rows_skipped": skipped,
            "bad_rows_first": bad[:5],
            "texts_also_in_train": overlap,
            "train_tokens_per_text": {
                "mean": float(lengths.mean()),
                "max": int(lengths.max()),
                "truncated": int((lengths >= self.max_length * (2 if self.is_pair else 1)).sum()),
            },
            "tokenizer": {**self.tokenizer.describe(), "cached": self.tokenizer.cached},
            "group_by": self.group_by,
        }

    def _counts(self, y: torch.Tensor, c: int) -> list[int]:
        if self.task == MULTILABEL:
            return [int(v) for v in y.sum(0).tolist()]
        return torch.bincount(y.long(), minlength=c).tolist()

    def save_manifest(self, run_dir: str | Path) -> Path:
        """``data_manifest.json`` (sizes, counts, sources, tokenizer) and ``label_map.json`` in the run dir."""
        write_json_atomic(Path(run_dir) / "label_map.json", self.manifest.get("label_map", {}))
        return super().save_manifest(run_dir)

    # -- loaders ----------------------------------------------------------
    def labels(self, split: str) -> torch.Tensor:
        """Class ids of ``split`` (what a class-aware sampler weighs); single-label tasks only."""
        return self.splits[split].y.long()

    def loader(self, split: str) -> DataLoader:
        """``train``: the configured sampler, length-bucketed with ``bucket``; ``val``/``test``: in order."""
        ds = self.splits[split]
        if split != "train":
            return eval_loader(ds, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=ds.collate)
        # a multilabel target has no single class to weigh (a class-aware sampler is refused in __init__)
        labels = None if self.task == MULTILABEL else self.labels("train")
        if not self.bucket:
            return train_loader(ds, labels=labels, batch_size=self.batch_size, seed=self.seed,
                                sampler_cfg=self.sampler_cfg, num_workers=self.num_workers, collate_fn=ds.collate)
        sampler = build_sampler(self.sampler_cfg, labels, seed=self.seed) if labels is not None else None
        batches = BucketBatchSampler(sampler, ds.lengths(), self.batch_size, pool=self.bucket_pool, seed=self.seed)
        return DataLoader(
            ds,
            batch_sampler=batches,
            num_workers=self.num_workers,
            persistent_workers=False,  # fresh workers seeded by (seed, epoch), as train_loader's
            worker_init_fn=EpochWorkerSeed(self.seed, batches) if self.num_workers > 0 else None,
            collate_fn=ds.collate,
        )
