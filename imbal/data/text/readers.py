"""Reading labelled text tables: CSV, TSV, JSONL, Parquet or a Hugging Face ``datasets`` folder into a
pandas DataFrame, and the cell helpers.

Rows are numbered from 1 over the *data* rows of a file (a header line is not
counted), so ``row 3`` is the third record pandas reads.
"""

from __future__ import annotations

import csv
import json
import math
import re
from decimal import Decimal
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
    if path.stat().st_size == 0:
        raise ImbalError(f"{path}: no data rows (the file is empty, 0 bytes); expected at least one labelled row")
    if fmt in ("csv", "tsv"):
        df, skipped = _read_delimited(path, fmt=fmt, sep=sep, header=header, column_names=column_names,
                                      quoting=quoting, skip_bad_lines=skip_bad_lines)
    elif fmt == "jsonl":
        df, skipped = _read_jsonl_lines(path, skip_bad_lines)
    else:
        try:
            df, skipped = pd.read_parquet(path), 0
        except Exception as exc:  # pyarrow raises its own types
            raise ImbalError(f"{path}: not a readable Parquet file ({first_line(exc)})") from exc
    if len(df) == 0 and not skipped:
        what = "only a header line" if fmt in ("csv", "tsv") and header and len(df.columns) else "no records"
        raise ImbalError(f"{path}: no data rows ({what}); expected at least one labelled row")
    return df, skipped


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
    except pd.errors.EmptyDataError as exc:
        raise ImbalError(f"{path}: no data rows (only blank lines); expected at least one labelled row") from exc
    except pd.errors.ParserError as exc:
        raise ImbalError(f"{path}: malformed line ({first_line(exc)}); fix it or set data.on_bad_row=skip") from exc
    except UnicodeDecodeError as exc:
        raise ImbalError(not_utf8(path)) from exc
    if not header and not column_names:
        df.columns = [str(c) for c in df.columns]
    return df, len(skipped)


def _read_jsonl_lines(path: Path, skip_bad_lines: bool) -> tuple[pd.DataFrame, int]:
    """One JSON object per line (blank lines and a leading UTF-8 BOM ignored), read line by line so that an
    error names its line: a line that is not UTF-8 (with its byte offset) or not a JSON object."""
    records, skipped, offset = [], 0, 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            start, offset = offset, offset + len(raw)
            if lineno == 1 and raw.startswith(BOM):
                raw, start = raw[len(BOM):], start + len(BOM)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ImbalError(not_utf8(path, lineno, start + exc.start, raw[exc.start])) from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError(f"a JSON {_JSON_KINDS.get(type(rec), type(rec).__name__)}")
            except ValueError as exc:
                if not skip_bad_lines:
                    raise ImbalError(
                        f"{path}, line {lineno}: not a JSON object ({first_line(exc)}); expected one object per "
                        "line; fix it or set data.on_bad_row=skip"
                    ) from None
                skipped += 1
                continue
            records.append(rec)
    return pd.DataFrame.from_records(records), skipped


BOM = b"\xef\xbb\xbf"
_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def not_utf8(path: Path, lineno: int | None = None, offset: int | None = None, byte: int | None = None) -> str:
    """The one-line message for a file that is not UTF-8, naming the line and byte offset of the first bad byte
    (found by scanning the file when not given)."""
    if lineno is None:
        lineno, offset, byte = _first_bad_utf8(path)
    where = f"{path}, line {lineno}" if lineno else str(path)
    at = f" (byte 0x{byte:02x} at byte offset {offset})" if byte is not None else ""
    return f"{where}: not UTF-8 text{at}; save the file as UTF-8"


def _first_bad_utf8(path: Path) -> tuple[int | None, int | None, int | None]:
    import codecs

    decoder, offset, lineno = codecs.getincrementaldecoder("utf-8")(), 0, 1
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as exc:
                return lineno, offset + exc.start, raw[exc.start] if exc.start < len(raw) else None
            offset, lineno = offset + len(raw), lineno + 1
    return None, None, None


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


#: cell values that are not one text or one label: refused rather than turned into their ``str()``
NOT_SCALAR = (bytes, bytearray, memoryview, list, tuple, dict, set, np.ndarray)


def check_cells(df: pd.DataFrame, where: str, text_columns: Sequence[str], label_column: str, *,
                multilabel: bool) -> None:
    """Refuse a text cell (or a single-label cell) holding bytes, a list, a dict or an array (a Parquet or
    JSON value that ``str()`` would silently turn into text); a multilabel cell may be a list of labels."""
    for c in [*text_columns, label_column]:
        if df[c].dtype != object:
            continue
        allowed = (list, tuple, np.ndarray) if (multilabel and c == label_column) else ()
        for i, v in enumerate(df[c].tolist()):
            if isinstance(v, NOT_SCALAR) and not isinstance(v, allowed):
                expected = "text" if c != label_column else "a label (a string or a number" + (
                    ", or a list of them)" if multilabel else ")")
                shown = repr(v if not isinstance(v, np.ndarray) else v.tolist())
                raise ImbalError(f"{where}, row {i + 1}: column '{c}' holds a {_KIND.get(type(v), type(v).__name__)} "
                                 f"value ({shown[:40]}{'...' if len(shown) > 40 else ''}); expected {expected}")


_KIND = {bytearray: "bytes", memoryview: "bytes", tuple: "list", np.ndarray: "list"}


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def numeric_label(s: str) -> str | None:
    """The canonical text of a label that is a number (``1``, ``1.0``, ``01``, ``1e0`` -> ``1``;
    ``1.50`` -> ``1.5``), or None for any other label."""
    if not _NUMBER.fullmatch(s):
        return None
    d = Decimal(s)
    if abs(d.adjusted()) > 30:  # no 1e999999 expansions
        return None
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def canonical_labels(labels: list, names: Sequence[str] | None = None) -> tuple[list, list[str] | None]:
    """Labels (strings, or lists of strings for multilabel) and the class names given, if any: when *every*
    label and name is a number, each becomes its canonical text (:func:`numeric_label`), so ``1`` and ``1.0``
    are one class; otherwise both are returned as they are (``"007"`` among words stays ``"007"``)."""
    flat = [x for lab in labels for x in (lab if isinstance(lab, list) else [lab])]
    canon = {x: numeric_label(x) for x in {*flat, *(names or ())}}
    if not canon or any(v is None for v in canon.values()):
        return labels, (list(names) if names else None)
    mapped = [[canon[x] for x in lab] if isinstance(lab, list) else canon[lab] for lab in labels]
    return mapped, ([canon[x] for x in names] if names else None)


def canonical_split_labels(parsed: dict[str, tuple], names: Sequence[str] | None) -> tuple[dict[str, tuple], list[str] | None]:
    """:func:`canonical_labels` over every split at once: ``{split: (texts, labels, ...)}`` with the labels of
    all splits (and the given class names) decided together, so a split can never map a label differently."""
    lengths = [len(p[1]) for p in parsed.values()]
    flat, names = canonical_labels([lab for p in parsed.values() for lab in p[1]], names)
    out, start = {}, 0
    for (split, p), n in zip(parsed.items(), lengths):
        out[split] = (p[0], flat[start:start + n], *p[2:])
        start += n
    return out, names


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
