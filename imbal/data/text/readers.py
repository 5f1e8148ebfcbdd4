"""Reading labelled text tables: CSV, TSV, JSONL or Parquet into a pandas DataFrame, and the cell helpers.

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
