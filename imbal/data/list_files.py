"""Split list files (``relative/path.jpg <label>`` a line: ImageNet-LT, Places-LT, iNaturalist 2018): reading and checks.

Used by ``data=split_list`` (:mod:`imbal.data.split_list`, whose docstring states the rules); one
line per problem, naming the file and line.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from imbal.data.paths import ListedTree
from imbal.errors import ImbalError

WHERE = "data 'split_list'"
#: what a line of a list looks like, in messages
LINE_FORM = "'relative/path.jpg <label>'"
_INT = re.compile(r"[+-]?\d+")


@dataclass
class ListedSplit:
    """One list file: its lines' paths and labels, and the line number of each."""

    key: str
    file: Path
    names: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    sha256: str = ""


def list_path(root: Path, value: str, key: str) -> Path:
    """A list file's path: an absolute ``value`` as is, a relative one under ``data.root``."""
    p = Path(os.path.expanduser(str(value)))
    path = p if p.is_absolute() else root / p
    if not path.is_file():
        raise ImbalError(f"{key}={value}: list file {path} not found (a relative path is taken under "
                         f"data.root={root}; give an absolute path for a list kept elsewhere)")
    return path


def read_list(path: Path, key: str) -> ListedSplit:
    """Parse a list file, refusing a malformed line, a non-integer label and duplicate lines."""
    data = path.read_bytes()
    out = ListedSplit(key=key, file=path, sha256=hashlib.sha256(data).hexdigest())
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImbalError(f"{key}: {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); expected lines "
                         f"{LINE_FORM}") from None
    seen: dict[str, int] = {}
    first_dup, dups = None, 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise ImbalError(f"{path}:{n}: malformed line {line[:80]!r}; expected {LINE_FORM}")
        name, label = parts
        if not _INT.fullmatch(label):
            raise ImbalError(f"{path}:{n}: label {label[:40]!r} is not an integer; expected {LINE_FORM} with an "
                             f"integer class id")
        if name in seen:
            dups += 1
            first_dup = first_dup or (n, name, seen[name])
            continue
        seen[name] = n
        out.names.append(name)
        out.labels.append(int(label))
        out.lines.append(n)
    if first_dup:
        n, name, first = first_dup
        raise ImbalError(f"{path}:{n}: duplicate line: {name!r} is already listed at line {first} ({dups} duplicate "
                         f"lines in {path.name}); list each image once")
    if not out.names:
        raise ImbalError(f"{key}: {path} lists no image; expected lines {LINE_FORM}")
    return out


def check_labels_in_range(split: ListedSplit, num_classes: int, why: str) -> None:
    for name, label, n in zip(split.names, split.labels, split.lines):
        if not 0 <= label < num_classes:
            raise ImbalError(f"{split.file}:{n}: label {label} is outside [0, {num_classes}) ({why})")


def check_files(tree: ListedTree, split: ListedSplit) -> list[str]:
    """Every listed path joined safely under ``data.root`` and present; the joined paths."""
    paths, missing = [], []
    for name, n in zip(split.names, split.lines):
        paths.append(tree.join(name, what=f"{WHERE}: {split.file}:{n}: path"))
        if not tree.is_file(name):
            missing.append(name)
    if missing and len(missing) == len(split.names):
        top = split.names[0].split("/")[0]
        holds = f"{top}/..." if "/" in split.names[0] else split.names[0]
        raise ImbalError(f"none of the {len(split.names)} files of {split.file} exists under data.root={tree.root}; "
                         f"is data.root the folder that holds {holds}?")
    if missing:
        raise ImbalError(f"{len(missing)} of the {len(split.names)} files listed in {split.file} are missing under "
                         f"data.root={tree.root} (first: {', '.join(missing[:3])})")
    return paths


def read_class_names(path: Path, num_classes: int | None) -> list[str]:
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ImbalError(f"data.class_names={path}: no class name; expected one name a line, line i = class i")
    if num_classes is not None and len(names) != num_classes:
        raise ImbalError(f"data.class_names={path} has {len(names)} names but data.num_classes={num_classes}; "
                         f"expected one name a line for every class")
    return names
