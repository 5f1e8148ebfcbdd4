"""File names read from a data set's own files (CSV rows, list files, folder listings), joined to a folder safely.

A name in a CSV such as ``../../x.jpg`` or ``/etc/x.jpg`` would otherwise make a loader read (and train
on) a file outside the data folder, and a symlink inside a data folder can point anywhere.
:func:`safe_child` is the one check every loader that joins a listed name to a folder goes through.
"""

from __future__ import annotations

import os
from pathlib import Path

from imbal.errors import ImbalError


def is_plain_name(name: str) -> bool:
    """True for a bare file name: no folder separator, not absolute, not ``.``/``..``, no NUL byte."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and not os.path.isabs(name)
        and Path(name).name == name
    )


def safe_child(folder: str | Path, name: str, *, what: str, within: str | Path | None = None,
               example: str | None = None) -> Path:
    """``folder / name``, refusing a name that is not a plain file name and a symlink that leads outside.

    Args:
        folder: the folder the name is listed for (e.g. ``<root>/train_v2``).
        name: the listed name (a CSV ``ImageId``, a list file's line, a file found in the folder).
        what: the start of the one-line message, naming the file and row, e.g.
            ``"data 'airbus': <csv> row 7: ImageId"``; the value and the folder are appended.
        within: the folder the resolved path must stay in (default ``folder``), e.g. ``data.root``
            so that a mask may link to a file of the image folder.
        example: a name of the expected form, shown in the message.

    Raises:
        ImbalError: ``<what> '<name>' is not a plain file name inside <folder> (expected e.g. <example>)``,
            or ``<what> '<name>': <path> is a symlink to <target>, outside <within>; ...``.
    """
    folder = Path(folder)
    hint = f" (expected e.g. {example})" if example else " (expected a file name without folders)"
    if not is_plain_name(name):
        raise ImbalError(f"{what} {name!r} is not a plain file name inside {folder}{hint}")
    path = folder / name
    if os.path.islink(path):
        boundary = Path(within if within is not None else folder)
        target = path.resolve()
        if not any(target.is_relative_to(b.resolve()) for b in (boundary, folder)):
            raise ImbalError(
                f"{what} {name!r}: {path} is a symlink to {target}, outside {boundary}; data files must stay "
                f"inside it (copy the file in, or point the data at a folder that holds both)"
            )
    return path
