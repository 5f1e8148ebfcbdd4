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


def is_relative_name(name: str) -> bool:
    """True for a relative path of plain names joined by ``/`` (``train/n01440764/x.JPEG``): not absolute,
    no ``.``/``..``/empty part, no backslash, no NUL byte."""
    # is_plain_name of every part, in plain string operations (an index joins 450k names)
    return (isinstance(name, str) and bool(name) and not name.startswith("/") and "\\" not in name
            and "\x00" not in name and all(part not in ("", ".", "..") for part in name.split("/")))


class ListedTree:
    """Relative paths listed under one root (a split-list file's ``train/n01440764/x.JPEG``), joined safely.

    :meth:`join` is :func:`safe_child` for a name with sub-folders: the name must pass
    :func:`is_relative_name`, and neither a folder on the way nor the file itself may be a symlink that
    resolves outside ``root`` (a symlink inside it is fine).  Each folder is resolved and listed once
    (``os.scandir``: the names and symlink flags of all its entries in one call), so indexing 450k listed
    files costs one directory read per folder, not a ``stat`` per file.

    Args:
        root: the folder the names are relative to (``data.root``).
        example: a name of the expected form, shown in messages.
    """

    def __init__(self, root: str | Path, *, example: str | None = None):
        self.root = Path(root)
        self.real_root = Path(os.path.realpath(self.root))
        self.example = example
        self._root_str = str(self.root)
        self._dirs: dict[str, dict[str, os.DirEntry] | None] = {}
        self._real: dict[str, Path | None] = {}  # folder -> its real path, for the folders that resolve outside root

    def _inside(self, real: Path) -> bool:
        return real == self.real_root or real.is_relative_to(self.real_root)

    def join(self, name: str, *, what: str) -> str:
        """``root/name`` (a string: an index joins many) after the checks above.

        Raises:
            ImbalError: ``<what> '<name>' is not a relative path inside <root> (expected e.g. <example>)``, or
                ``<what> '<name>': <path> is (under) a symlink to <target>, outside <root>; ...``.
        """
        if not is_relative_name(name):
            hint = f"e.g. {self.example}" if self.example else "folder/file.jpg"
            raise ImbalError(f"{what} {name!r} is not a relative path inside {self.root} (expected {hint}, "
                             f"without '..' or a leading '/')")
        folder, _, base = name.rpartition("/")
        if folder not in self._real:
            real = Path(os.path.realpath(self.root / folder))
            self._real[folder] = None if self._inside(real) else real
        if self._real[folder] is not None:
            self._escape(what, name, self.root / folder, self._real[folder])
        entry = self._entries(folder).get(base)
        if entry is not None and entry.is_symlink():
            target = Path(os.path.realpath(entry.path))
            if not self._inside(target):
                self._escape(what, name, Path(entry.path), target)
        return os.path.join(self._root_str, name)

    def _escape(self, what: str, name: str, path: Path, target: Path):
        raise ImbalError(
            f"{what} {name!r}: {path} leads through a symlink to {target}, outside data.root={self.root}; data files "
            f"must stay inside it (point data.root at the folder that really holds the images, or copy them in)"
        )

    def _entries(self, folder: str) -> dict[str, os.DirEntry]:
        if folder not in self._dirs:
            try:
                with os.scandir(self.root / folder if folder else self.root) as it:
                    self._dirs[folder] = {e.name: e for e in it}
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                self._dirs[folder] = None
        return self._dirs[folder] or {}

    def is_file(self, name: str) -> bool:
        """Whether a name :meth:`join` accepted is a file (or a symlink to one), from the folder's listing."""
        folder, _, base = name.rpartition("/")
        entry = self._entries(folder).get(base)
        return entry is not None and entry.is_file()
