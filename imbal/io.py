"""Writing files so that a reader (or a killed writer) never leaves half a file behind."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    The temporary name carries the pid, so concurrent writers never share one; on an
    exception it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """JSON (indented, non-JSON values as ``str``) written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=str))


def read_json_object(path: str | Path, *, expected: str) -> dict:
    """The JSON object in ``path``; a missing, malformed or non-object file is one line naming it
    (``expected`` says what the file should have been, e.g. "expected the directory of a finished run")."""
    from imbal.errors import ImbalError

    path = Path(path)
    if not path.is_file():
        raise ImbalError(f"{path} not found; {expected}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ImbalError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ImbalError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
