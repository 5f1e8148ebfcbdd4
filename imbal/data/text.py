"""``data=text``: labelled text (or text pairs) from CSV, TSV, JSONL or Parquet files.

One module serves every text data set; the presets (``data=sms_spam``,
``data=emotion``, ``data=quora_pairs``) only set columns and paths.  Reading is
pandas, vocabularies are Hugging Face ``tokenizers`` (``imbal/data/tokenize.py``),
splits are scikit-learn's (``StratifiedGroupKFold``), and batches are padded
per batch.  A batch is ``(x, y)`` with ``x`` a dict of ``input_ids`` and
``attention_mask`` ``[B, L]`` (and ``input_ids_b``/``attention_mask_b`` for pairs).

Rows are numbered from 1 over the *data* rows of a file (a header line is not
counted), so ``row 3`` is the third record pandas reads.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from imbal.data.loaders import build_sampler, eval_loader, train_loader
from imbal.data.base import DataModuleBase
from imbal.data.stats import DataStats
from imbal.data.tokenize import TextTokenizer, build_tokenizer, pad_batch
from imbal.errors import ImbalError

FORMATS = ("csv", "tsv", "jsonl", "parquet")
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
TASK_CHOICES = ("auto", "multiclass", "binary", "multilabel")
SPLITS = ("train", "val", "test")


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise ImbalError(f"data.format '{fmt}' is not one of {', '.join(FORMATS)}")
        return fmt
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise ImbalError(
            f"{path}: cannot tell the format from the extension '{ext or '(none)'}'; "
            f"set data.format to one of {', '.join(FORMATS)}"
        )
    return EXTENSIONS[ext]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_table(
    path: Path,
    *,
    fmt: str,
    sep: str | None = None,
    header: bool = True,
    column_names: Sequence[str] | None = None,
    quoting: str = "minimal",
    skip_bad_lines: bool = False,
) -> tuple[pd.DataFrame, int]:
    """The file as a DataFrame (text columns as ``str``) and the number of malformed lines skipped."""
    if not path.is_file():
        raise ImbalError(f"data file '{path}' does not exist")
    skipped: list[Any] = []
    if fmt in ("csv", "tsv"):
        if quoting not in ("minimal", "none"):
            raise ImbalError(f"data.quoting '{quoting}' is not one of minimal, none")
        kwargs: dict[str, Any] = dict(
            sep=sep if sep is not None else ("\t" if fmt == "tsv" else ","),
            header=0 if header else None,
            dtype=str,
            keep_default_na=False,  # the text "NA" or "null" is text, not a missing value
            na_values=[],
            quoting=csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL,
            encoding="utf-8",
        )
        if column_names:
            kwargs["names"] = list(column_names)
        if skip_bad_lines:
            # the python engine lets a callable see (and count) every malformed line
            kwargs.update(engine="python", on_bad_lines=lambda bad: skipped.append(bad))
        try:
            df = pd.read_csv(path, **kwargs)
        except pd.errors.ParserError as exc:
            raise ImbalError(f"{path}: malformed line ({_first_line(exc)}); fix it or set data.on_bad_row=skip") from exc
        except UnicodeDecodeError as exc:
            raise ImbalError(f"{path}: not UTF-8 text ({_first_line(exc)})") from exc
        if not header and not column_names:
            df.columns = [str(c) for c in df.columns]
        return df, len(skipped)
    if fmt == "jsonl":
        try:
            return pd.read_json(path, lines=True, dtype=False, convert_dates=False), 0
        except ValueError:
            # pandas' JSON error names no line: find (or skip) the bad lines one by one.
            records = []
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        if not isinstance(rec, dict):
                            raise ValueError("not a JSON object")
                    except ValueError as exc:
                        if not skip_bad_lines:
                            raise ImbalError(
                                f"{path}, line {lineno}: not a JSON object ({_first_line(exc)}); "
                                "fix it or set data.on_bad_row=skip"
                            ) from exc
                        skipped.append(lineno)
                        continue
                    records.append(rec)
            return pd.DataFrame.from_records(records), len(skipped)
    try:
        return pd.read_parquet(path), 0
    except Exception as exc:  # pyarrow raises its own types
        raise ImbalError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from exc


def _missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return False


def normalise_key(text: str) -> str:
    """Grouping key of a text: lower-cased, whitespace collapsed (near-identical copies group together)."""
    return " ".join(str(text).lower().split())


class TextDataset(Dataset):
    """Pre-tokenised texts (or pairs) and their targets; padding happens in :meth:`collate`."""

    def __init__(self, a: list[np.ndarray], b: list[np.ndarray] | None, y: torch.Tensor, pad_id: int, min_length: int = 1):
        self.a, self.b, self.y = a, b, y
        self.pad_id = pad_id
        self.min_length = min_length

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, i: int):
        return i

    def lengths(self) -> np.ndarray:
        la = np.fromiter((len(s) for s in self.a), dtype=np.int64, count=len(self.a))
        if self.b is not None:
            la = la + np.fromiter((len(s) for s in self.b), dtype=np.int64, count=len(self.b))
        return la

    def collate(self, idx: list[int]):
        ids, mask = pad_batch([self.a[i] for i in idx], self.pad_id, min_length=self.min_length)
        x = {"input_ids": ids, "attention_mask": mask}
        if self.b is not None:
            ids_b, mask_b = pad_batch([self.b[i] for i in idx], self.pad_id, min_length=self.min_length)
            x.update(input_ids_b=ids_b, attention_mask_b=mask_b)
        return x, self.y[torch.as_tensor(idx)]


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, drawn from the configured sampler's index stream.

    Indices come from ``sampler`` (the ``sampler`` config's choice) or a seeded
    permutation; every ``batch_size * pool`` consecutive indices are sorted by
    length and cut into batches, and the batches are shuffled.  Which samples
    are drawn (and how often) is the sampler's; only their grouping changes.
    """

    def __init__(self, sampler: Sampler | None, lengths: np.ndarray, batch_size: int, *, pool: int = 50, seed: int = 0):
        self.sampler, self.lengths = sampler, lengths
        self.batch_size, self.pool, self.seed = int(batch_size), int(pool), int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else len(self.lengths)
        return math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning every epoch; passed on to an epoch-aware sampler (progressive)."""
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        # the order depends only on (seed, epoch); without set_epoch calls it advances by itself
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = list(self.sampler) if self.sampler is not None else rng.permutation(len(self.lengths)).tolist()
        chunk = self.batch_size * self.pool
        batches = []
        for s in range(0, len(order), chunk):
            part = sorted(order[s : s + chunk], key=lambda i: self.lengths[i])
            batches += [part[k : k + self.batch_size] for k in range(0, len(part), self.batch_size)]
        for j in rng.permutation(len(batches)):
            yield batches[j]


class TextDataModule(DataModuleBase):
    """Labelled texts or text pairs from files.

    Args:
        train_path, val_path, test_path: files (relative to ``root`` when given).
            Without ``val_path``/``test_path`` those splits are cut from the training
            file: stratified by label, seeded, with every copy of a text in the same
            split (``group_by=text``; ``none`` disables the grouping).
        root: directory the paths are relative to.
        format: ``csv``, ``tsv``, ``jsonl`` or ``parquet``; by extension when null.
        sep, header, column_names, quoting: CSV/TSV reading (``quoting: none`` reads
            quote characters as text, as the SMS Spam Collection needs).
        text_column: the text; or ``text_columns`` (two names) for pair tasks.
        label_column: label strings or numbers, mapped to ids in sorted order (numbers
            numerically) unless ``classes`` lists them in order.
        task: ``auto`` (multilabel if ``multilabel`` else multiclass), ``multiclass``,
            ``binary`` (two classes, ``classes[1]`` is the positive class; logits ``[N]``)
            or ``multilabel``.
        multilabel, label_sep: labels given as a list, or a string split on ``label_sep``.
        val_fraction, test_fraction: sizes of the splits cut from the training file.
        on_bad_row: ``error`` (default) stops at the first bad row with one line naming
            file and row; ``skip`` drops bad rows and reports their count.
        tokenizer: the ``tokenizer`` node (see ``imbal/data/tokenize.py``).
        max_length: tokens kept per text.
        min_length: batches are padded to at least this many tokens (the widest
            convolution of a textCNN needs 5).
        bucket: group training batches by length (``bucket_pool`` batches per sort).
        test_prior: known class prior of the test split, for the post-hoc prior shift.
        batch_size, num_workers, seed, sampler: as every data module.
    """

    name = "text"
    modality = "text"

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
        if task not in TASK_CHOICES:
            raise ImbalError(f"data.task '{task}' is not one of {', '.join(TASK_CHOICES)}")
        if on_bad_row not in ("error", "skip"):
            raise ImbalError(f"data.on_bad_row '{on_bad_row}' is not one of error, skip")
        if group_by not in ("text", "none"):
            raise ImbalError(f"data.group_by '{group_by}' is not one of text, none")
        if text_columns is not None and len(text_columns) not in (1, 2):
            raise ImbalError(f"data.text_columns must name 1 or 2 columns, got {list(text_columns)}")
        for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < float(f) < 1.0:
                raise ImbalError(f"data.{name} must be in (0, 1), got {f}")
        self.root = Path(root).expanduser() if root else None
        self.paths = {"train": train_path, "val": val_path, "test": test_path}
        self.format = format
        self.sep, self.header, self.column_names, self.quoting = sep, bool(header), column_names, quoting
        self.text_columns = list(text_columns) if text_columns else [text_column]
        self.label_column = label_column
        self.classes = [str(c) for c in classes] if classes else None
        self.multilabel = bool(multilabel) or task == "multilabel"
        self.task = "multilabel" if self.multilabel else ("multiclass" if task == "auto" else task)
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
            raise ImbalError("data.train_path is required (a CSV, TSV, JSONL or Parquet file)")
        if self.root is not None and not self.root.is_dir():
            raise ImbalError(f"data.root '{self.root}' is not a directory")
        out = {}
        for split in SPLITS:
            if not self.paths[split]:
                continue
            path = self.resolve(self.paths[split])
            fmt = detect_format(path, self.format)
            df, skipped = read_table(
                path,
                fmt=fmt,
                sep=self.sep,
                header=self.header,
                column_names=self.column_names,
                quoting=self.quoting,
                skip_bad_lines=self.on_bad_row == "skip",
            )
            out[split] = (df, str(path), skipped)
        return out

    def _bad(self, where: str, row: int, what: str, bad: list[str]) -> None:
        msg = f"{where}, row {row}: {what}"
        if self.on_bad_row == "error":
            raise ImbalError(f"{msg} (set data.on_bad_row=skip to drop such rows)")
        bad.append(msg)

    def _parse_labels(self, value: Any) -> list[str] | str | None:
        """A label (single-label) or a list of labels (multilabel); None when missing."""
        if _missing(value):
            return None
        if self.multilabel:
            if isinstance(value, (list, tuple, np.ndarray)):
                return [str(v).strip() for v in value if not _missing(v) and str(v).strip()]
            return [s.strip() for s in str(value).split(self.label_sep) if s.strip()]
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)  # 1.0 read from JSON/Parquet is the label "1"
        s = str(value).strip()
        return s or None

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
        texts, labels, rows = [], [], []
        cols = [df[c].tolist() for c in self.text_columns]
        raw = df[self.label_column].tolist()
        for i in range(len(df)):
            row = i + 1
            t = []
            for c, col in zip(self.text_columns, cols):
                v = col[i]
                if _missing(v):
                    self._bad(where, row, f"missing value in text column '{c}'; expected text", bad)
                    break
                if not str(v).strip():
                    self._bad(where, row, f"empty text in column '{c}'; expected non-empty text", bad)
                    break
                t.append(str(v))
            else:
                lab = self._parse_labels(raw[i])
                if lab is None:
                    self._bad(where, row, f"missing label in column '{self.label_column}'", bad)
                    continue
                texts.append(tuple(t))
                labels.append(lab)
                rows.append(row)
        return texts, labels, rows

    def _class_names(self, train_labels: list) -> list[str]:
        if self.classes:
            return list(self.classes)
        seen = {l for labs in train_labels for l in labs} if self.multilabel else set(train_labels)
        try:
            return sorted(seen, key=lambda s: (float(s), s))  # numbers numerically: 2 before 10
        except ValueError:
            return sorted(seen)

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
        """(held-out, rest) indices: ``fraction`` of the rows, stratified by label, copies of a text together.

        The split is drawn over *groups* (distinct texts, or single rows with
        ``group_by=none``) with ``sklearn.model_selection.train_test_split``,
        stratified by each group's label (its first row's: copies of a text
        almost always share it).  scikit-learn's ``StratifiedGroupKFold`` does
        the same job but took 13 s on the 5,574 SMS messages (a Python loop per
        group), far too slow for Quora's 400k pairs.  Multilabel rows are not
        stratified (scikit-learn has no multilabel stratification).
        """
        from sklearn.model_selection import train_test_split

        n = len(texts)
        if self.group_by == "text":
            keys = ["\x1f".join(sorted(normalise_key(s) for s in t)) for t in texts]
            groups, uniques = pd.factorize(pd.Series(keys))
            n_groups = len(uniques)
        else:
            groups, n_groups = np.arange(n), n
        first = np.full(n_groups, -1, dtype=np.int64)
        first[groups[::-1]] = np.arange(n)[::-1]  # first row of every group
        strat = None
        if not self.multilabel:
            strat = np.asarray(y)[first]
            counts = np.bincount(strat)
            too_few = np.flatnonzero((counts > 0) & (counts < 2))
            if len(too_few):
                c = int(too_few[0])
                raise ImbalError(
                    f"class '{self.class_names[c]}' has {counts[c]} distinct training text(s), too few for a "
                    f"stratified {fraction:.2f} hold-out; give data.val_path/data.test_path or more rows"
                )
        try:
            _, held_groups = train_test_split(np.arange(n_groups), test_size=fraction, stratify=strat, random_state=seed)
        except ValueError as exc:
            raise ImbalError(f"cannot hold out {fraction:.2f} of {n_groups} texts stratified by class ({exc})") from exc
        in_held = np.zeros(n_groups, dtype=bool)
        in_held[held_groups] = True
        mask = in_held[groups]
        return np.flatnonzero(mask), np.flatnonzero(~mask)

    # -- setup --------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        frames = self.read_frames()
        bad: list[str] = []
        parsed: dict[str, tuple[list, list, list[int], str]] = {}
        for split, (df, where, _) in frames.items():
            parsed[split] = (*self._records(df, where, bad), where)
        train_texts, train_labels, _, train_where = parsed["train"]
        if not train_texts:
            raise ImbalError(f"{train_where}: no usable rows")
        self.class_names = self._class_names(train_labels)
        if self.task == "binary" and len(self.class_names) != 2:
            raise ImbalError(
                f"data.task=binary needs exactly 2 classes, but {train_where} has {len(self.class_names)}: "
                f"{', '.join(self.class_names[:10])}"
            )
        if len(self.class_names) < 2:
            raise ImbalError(f"{train_where}: found {len(self.class_names)} class; expected at least 2")
        index = {c: i for i, c in enumerate(self.class_names)}

        encoded: dict[str, tuple[list, list]] = {}
        for split, (texts, labels, rows, where) in parsed.items():
            encoded[split] = self._encode_labels(labels, texts, index, where, rows, bad)

        texts, ys = encoded["train"]
        split_info = {}
        pool = np.arange(len(texts))
        parts: dict[str, np.ndarray] = {}
        if "test" not in encoded:
            held, rest = self._split_off([ys[i] for i in pool], [texts[i] for i in pool], self.test_fraction, self.seed)
            parts["test"], pool = pool[held], pool[rest]
            split_info["test"] = f"{self.test_fraction:g} of {train_where}"
        if "val" not in encoded:
            frac = self.val_fraction / (1.0 - (self.test_fraction if "test" in parts else 0.0))
            held, rest = self._split_off([ys[i] for i in pool], [texts[i] for i in pool], min(frac, 0.5), self.seed + 1)
            parts["val"], pool = pool[held], pool[rest]
            split_info["val"] = f"{self.val_fraction:g} of {train_where}"
        parts["train"] = pool
        data: dict[str, tuple[list, list]] = {}
        for split in SPLITS:
            if split in parts:
                data[split] = ([texts[i] for i in parts[split]], [ys[i] for i in parts[split]])
            else:
                data[split] = encoded[split]
                split_info[split] = parsed[split][3]
        for split in SPLITS:
            if not data[split][0]:
                raise ImbalError(f"data split '{split}' is empty after reading {split_info.get(split, train_where)}")

        self.tokenizer = build_tokenizer(
            self.tokenizer_cfg,
            [s for t in data["train"][0] for s in t],
            max_length=self.max_length,
        )
        for split in SPLITS:
            tx, y = data[split]
            a = self.tokenizer.encode([t[0] for t in tx])
            b = self.tokenizer.encode([t[1] for t in tx]) if self.is_pair else None
            if self.task == "multilabel":
                yt = torch.from_numpy(np.stack(y)).float()
            elif self.task == "binary":
                yt = torch.tensor(y, dtype=torch.float32)
            else:
                yt = torch.tensor(y, dtype=torch.long)
            self.splits[split] = TextDataset(a, b, yt, self.tokenizer.pad_id, self.min_length)

        c = len(self.class_names)
        counts = {split: self._counts(self.splits[split].y, c) for split in SPLITS}
        train_keys = {tuple(normalise_key(s) for s in t) for t in data["train"][0]}
        overlap = {
            split: sum(tuple(normalise_key(s) for s in t) in train_keys for t in data[split][0]) for split in ("val", "test")
        }
        if self.test_prior is not None and len(self.test_prior) != c:
            raise ImbalError(f"data.test_prior has {len(self.test_prior)} entries, expected {c} (one per class)")
        skipped_lines = sum(f[2] for f in frames.values())
        if bad or skipped_lines:
            print(f"imbal: data '{self.name}': skipped {len(bad) + skipped_lines} bad rows (first: {bad[0] if bad else 'a malformed line'})")
        lengths = self.splits["train"].lengths()
        self.extra = {
            "vocab_size": self.tokenizer.vocab_size,
            "pad_id": self.tokenizer.pad_id,
            "tokenizer_kind": self.tokenizer.kind,
            "tokenizer_file": self.tokenizer.file,
            "text_pair": self.is_pair,
            "max_length": self.max_length,
            "num_train": len(self.splits["train"]),
        }
        self._stats = DataStats(
            task=self.task,
            num_classes=c,
            class_counts=counts["train"],
            class_names=list(self.class_names),
            modality=self.modality,
            input_shape=(self.max_length,),
            test_prior=self.test_prior,
            extra=dict(self.extra),
        )
        self.manifest = {
            "label_map": index,
            "task": self.task,
            "text_columns": self.text_columns,
            "label_column": self.label_column,
            "sources": split_info,
            "sizes": {s: len(self.splits[s]) for s in SPLITS},
            "class_counts": counts,
            "bad_rows_skipped": len(bad) + skipped_lines,
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
        if self.task == "multilabel":
            return [int(v) for v in y.sum(0).tolist()]
        return torch.bincount(y.long(), minlength=c).tolist()


    def save_manifest(self, run_dir: str | Path) -> Path:
        """``data_manifest.json`` (sizes, counts, sources, tokenizer) and ``label_map.json`` in the run dir."""
        run_dir = Path(run_dir)
        (run_dir / "label_map.json").write_text(json.dumps(self.manifest.get("label_map", {}), indent=2))
        path = run_dir / "data_manifest.json"
        path.write_text(json.dumps({"data": self.name, "seed": self.seed, **self.manifest}, indent=2, default=str))
        return path

    # -- loaders ----------------------------------------------------------
    def _sampler_labels(self, ds: TextDataset):
        # samplers weight by class; a multilabel target has none, so they see no labels
        return None if self.task == "multilabel" else ds.y.long()

    def train_dataloader(self) -> DataLoader:
        ds = self.splits["train"]
        if not self.bucket:
            return train_loader(
                ds,
                labels=self._sampler_labels(ds),
                batch_size=self.batch_size,
                seed=self.seed,
                sampler_cfg=self.sampler_cfg,
                num_workers=self.num_workers,
                collate_fn=ds.collate,
            )
        labels = self._sampler_labels(ds)
        sampler = build_sampler(self.sampler_cfg, labels, seed=self.seed) if labels is not None else None
        batches = BucketBatchSampler(sampler, ds.lengths(), self.batch_size, pool=self.bucket_pool, seed=self.seed)
        return DataLoader(
            ds,
            batch_sampler=batches,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=ds.collate,
        )

    def val_dataloader(self) -> DataLoader:
        ds = self.splits["val"]
        return eval_loader(ds, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=ds.collate)

    def test_dataloader(self) -> DataLoader:
        ds = self.splits["test"]
        return eval_loader(ds, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=ds.collate)
