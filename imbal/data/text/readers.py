"""Reading labelled text tables: CSV, TSV, JSONL, Parquet or a Hugging Face ``datasets`` folder into a
pandas DataFrame, and the cell helpers.

Rows are numbered from 1 over the *data* rows of a file (a header line is not
counted), so ``row 3`` is the third record pandas reads.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from imbal.errors import ImbalError

HF_DISK = "hf_disk"  # a folder written by datasets' save_to_disk (a Dataset or a DatasetDict)
FORMATS = ("csv", "tsv", "jsonl", "parquet", HF_DISK)
#: DatasetDict split names read as imbal's splits, first found wins
HF_SPLITS = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}
HF_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")
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


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise ImbalError(f"data.format '{fmt}' is not one of {', '.join(FORMATS)}")
        return fmt
    if path.is_dir():
        if is_hf_disk(path):
            return HF_DISK
        raise ImbalError(
            f"{path} is a directory but not a Hugging Face datasets folder (no {', '.join(HF_MARKERS)}); "
            "expected a data file or a save_to_disk folder"
        )
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise ImbalError(
            f"{path}: cannot tell the format from the extension '{ext or '(none)'}'; "
            f"set data.format to one of {', '.join(FORMATS)}"
        )
    return EXTENSIONS[ext]


def is_hf_disk(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` (``dataset_info.json``/``state.json``) or
    ``DatasetDict.save_to_disk`` (``dataset_dict.json``)."""
    return path.is_dir() and any((path / m).is_file() for m in HF_MARKERS)


def first_line(exc: BaseException) -> str:
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
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, fmt=fmt, sep=sep, header=header, column_names=column_names,
                               quoting=quoting, skip_bad_lines=skip_bad_lines)
    if fmt == "jsonl":
        try:
            return pd.read_json(path, lines=True, dtype=False, convert_dates=False), 0
        except ValueError:
            return _read_jsonl_lines(path, skip_bad_lines)
    try:
        return pd.read_parquet(path), 0
    except Exception as exc:  # pyarrow raises its own types
        raise ImbalError(f"{path}: not a readable Parquet file ({first_line(exc)})") from exc


def _read_delimited(
    path: Path, *, fmt: str, sep: str | None, header: bool, column_names: Sequence[str] | None, quoting: str,
    skip_bad_lines: bool,
) -> tuple[pd.DataFrame, int]:
    if quoting not in ("minimal", "none"):
        raise ImbalError(f"data.quoting '{quoting}' is not one of minimal, none")
    skipped: list[Any] = []
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
        raise ImbalError(f"{path}: malformed line ({first_line(exc)}); fix it or set data.on_bad_row=skip") from exc
    except UnicodeDecodeError as exc:
        raise ImbalError(f"{path}: not UTF-8 text ({first_line(exc)})") from exc
    if not header and not column_names:
        df.columns = [str(c) for c in df.columns]
    return df, len(skipped)


def _read_jsonl_lines(path: Path, skip_bad_lines: bool) -> tuple[pd.DataFrame, int]:
    """pandas' JSON error names no line: find (or skip) the bad lines one by one."""
    records, skipped = [], 0
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
                        f"{path}, line {lineno}: not a JSON object ({first_line(exc)}); "
                        "fix it or set data.on_bad_row=skip"
                    ) from exc
                skipped += 1
                continue
            records.append(rec)
    return pd.DataFrame.from_records(records), skipped


# -- Hugging Face datasets folders -------------------------------------------
def read_hf_disk(
    path: Path, *, columns: Sequence[str], split: str = "train"
) -> tuple[dict[str, tuple[pd.DataFrame, str]], list[str] | None]:
    """A ``save_to_disk`` folder as ``{split: (frame, where)}`` and the label's class names.

    A ``Dataset`` gives one frame under the key ``""``; a ``DatasetDict`` gives its
    ``train``, ``validation`` (or ``val``) and ``test`` splits as ``train``/``val``/``test``
    (other splits are not read; a split whose labels are all missing, the ``-1`` of an
    unlabelled GLUE test split, is left out with one printed line).  Only ``columns``
    (text columns, then the label column) are converted.  A ``ClassLabel`` label
    (or a list of them, multilabel) becomes its names, and the names in ``ClassLabel``
    order are returned, so the data's ids stay the dataset's; other labels give ``None``.
    ``split`` is the imbal split the folder was given for (``data.<split>_path``): a
    ``DatasetDict`` without it is refused in one line.
    """
    key = f"data.{split}_path"
    if not is_hf_disk(path):
        raise ImbalError(f"{key}={path} is not a Hugging Face datasets folder (no {', '.join(HF_MARKERS)} there)")
    try:
        import datasets
    except ImportError as exc:
        raise ImbalError(
            f"{key}={path} is a Hugging Face datasets folder; reading it needs the datasets package: pip install datasets"
        ) from exc
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError, ValueError, pyarrow errors
        raise ImbalError(f"{path}: not a readable Hugging Face datasets folder ({first_line(exc)})") from exc
    if isinstance(loaded, datasets.DatasetDict):
        parts = {}
        for ours, names in HF_SPLITS.items():
            name = next((n for n in names if n in loaded), None)
            if name is not None:
                parts[ours] = (loaded[name], str(path / name))
        if split not in parts:
            raise ImbalError(
                f"{key}={path}: no '{'|'.join(HF_SPLITS[split])}' split in this DatasetDict (splits: {', '.join(loaded)})"
            )
    else:
        parts = {"": (loaded, str(path))}
    out: dict[str, tuple[pd.DataFrame, str]] = {}
    class_names = None
    for ours, (ds, where) in parts.items():
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            raise ImbalError(
                f"{where}: no column '{missing[0]}' (columns: {', '.join(ds.column_names)}); "
                "set data.text_column(s)/data.label_column"
            )
        df = ds.select_columns(list(columns)).to_pandas()
        names = _class_label_names(ds.features[columns[-1]])
        if names is not None:
            if ours in ("val", "test") and len(df) and _all_unlabelled(df[columns[-1]]):
                print(f"imbal: {where} has no labels (all -1); split '{ours}' is not read from it")
                continue
            df[columns[-1]] = [_label_names(v, names) for v in df[columns[-1]]]
            if class_names is None or ours == "train":
                class_names = names
        out[ours] = (df, where)
    return out, class_names


def hf_disk_frames(
    path: Path, split: str, columns: Sequence[str], paths: dict[str, str | None]
) -> tuple[dict[str, tuple[pd.DataFrame, str, int]], list[str] | None]:
    """The frames a datasets folder given as ``data.<split>_path`` contributes, as ``{split: (frame, where, 0)}``,
    and its ClassLabel names: a ``Dataset`` is that split; a ``DatasetDict`` gives that split and, given as the
    training path, also its ``validation``/``val`` and ``test`` splits for the splits whose ``paths`` are empty."""
    frames, names = read_hf_disk(path, columns=columns, split=split)
    if "" in frames:
        frames = {split: frames[""]}
    keep = {s: (df, where, 0) for s, (df, where) in frames.items() if s == split or (split == "train" and not paths[s])}
    return keep, names


def _class_label_names(feature: Any) -> list[str] | None:
    """The names of a ``ClassLabel`` feature, or of a list of them; None for any other feature."""
    inner = getattr(feature, "feature", feature)  # Sequence(ClassLabel) / List(ClassLabel)
    names = getattr(inner, "names", None)
    return [str(n) for n in names] if names is not None and hasattr(inner, "int2str") else None


def _label_names(value: Any, names: list[str]) -> Any:
    """ClassLabel ids as names (lists element-wise); ``-1`` (no label) and missing cells as None."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [names[int(v)] for v in value if not is_missing(v) and int(v) >= 0]
    if is_missing(value) or int(value) < 0:
        return None
    return names[int(value)]


def _all_unlabelled(col: pd.Series) -> bool:
    return all(not isinstance(v, (list, tuple, np.ndarray)) and (is_missing(v) or int(v) < 0) for v in col)


# -- cells ------------------------------------------------------------------
def is_missing(v: Any) -> bool:
    """A cell with no value: None (a JSON null or absent key) or NaN (an empty Parquet cell)."""
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return False


def normalise_key(text: str) -> str:
    """Grouping key of a text: lower-cased, whitespace collapsed (near-identical copies group together)."""
    return " ".join(str(text).lower().split())


def parse_labels(value: Any, *, multilabel: bool, label_sep: str) -> list[str] | str | None:
    """A label (single-label) or a list of labels (multilabel) from one cell; None when missing."""
    if is_missing(value):
        return None
    if multilabel:
        if isinstance(value, (list, tuple, np.ndarray)):
            return [str(v).strip() for v in value if not is_missing(v) and str(v).strip()]
        return [s.strip() for s in str(value).split(label_sep) if s.strip()]
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)  # 1.0 read from JSON/Parquet is the label "1"
    s = str(value).strip()
    return s or None
