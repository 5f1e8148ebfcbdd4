"""The one-line checks of ``data=text``'s options, done in ``__init__`` before any file is read."""

from __future__ import annotations

from typing import Sequence

from imbal.errors import ImbalError


def check_options(*, task: str, choices: Sequence[str], on_bad_row: str, group_by: str,
                  text_columns: Sequence[str] | None, val_fraction: float, test_fraction: float,
                  max_length: int, min_length: int) -> None:
    """Refuse an option value that would fail later or silently train on nothing."""
    if task not in choices:
        raise ImbalError(f"data.task '{task}' is not one of {', '.join(choices)}")
    if on_bad_row not in ("error", "skip"):
        raise ImbalError(f"data.on_bad_row '{on_bad_row}' is not one of error, skip")
    if group_by not in ("text", "none"):
        raise ImbalError(f"data.group_by '{group_by}' is not one of text, none")
    if text_columns is not None and len(text_columns) not in (1, 2):
        raise ImbalError(f"data.text_columns must name 1 or 2 columns, got {list(text_columns)}")
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < float(f) < 1.0:
            raise ImbalError(f"data.{name} must be in (0, 1), got {f}")
    # 0 tokens per text would train on padding alone
    if isinstance(max_length, bool) or int(max_length) < 1:
        raise ImbalError(f"data.max_length must be >= 1 (tokens kept per text), got {max_length}")
    if isinstance(min_length, bool) or int(min_length) < 0:
        raise ImbalError(f"data.min_length must be >= 0 (tokens a batch is padded to), got {min_length}")
