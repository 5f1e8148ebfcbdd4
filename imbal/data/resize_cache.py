"""The one-time resize cache of ``data.cache_size`` (:mod:`imbal.data.split_list`; its docstring states the layout).

Every listed image stored once at short side ``size`` (bilinear, as torchvision's ``Resize``), JPEG
quality :data:`CACHE_QUALITY`, written atomically by DataLoader workers under a file lock.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from imbal.data.images import open_image

WHERE = "data 'split_list'"
#: version of the resize cache's layout (part of its key)
CACHE_VERSION = 2
CACHE_QUALITY = 95

def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """torchvision ``Resize(short)``'s output (width, height): the short side ``short``, the long side truncated."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def cache_folder(cache_dir: Path, root: Path, size: int) -> Path:
    key_src = json.dumps({"version": CACHE_VERSION, "root": os.path.realpath(root), "size": int(size),
                          "quality": CACHE_QUALITY}, sort_keys=True)
    return cache_dir / f"split_list_{hashlib.sha256(key_src.encode()).hexdigest()[:16]}"


class _CacheWriter(Dataset):
    """One cached image per item (a DataLoader's workers write them in parallel); yields 1 if written."""

    def __init__(self, sources: list[str], targets: list[str], size: int):
        self.sources, self.targets, self.size = sources, targets, size

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> int:
        from PIL import Image

        from imbal.io import atomic_path

        im = open_image(self.sources[i], where=WHERE, mode="RGB")
        im = im.resize(resized_size(im.width, im.height, self.size), Image.BILINEAR)
        out = Path(self.targets[i])
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            im.save(tmp, format="JPEG", quality=CACHE_QUALITY)
        return 1


def build_cache(folder: Path, names: list[str], sources: list[str], size: int, num_workers: int) -> dict[str, Any]:
    """Write the images of ``names`` missing from ``folder`` (under a file lock); what the marker records.

    Returns the marker's content: ``{"images", "written", "size"}``; ``written`` is 0 when the marker
    of these names was already there (nothing is read or written then).
    """
    from filelock import FileLock

    digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]
    marker = folder / f"complete-{digest}.json"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if marker.is_file():
            return {**json.loads(marker.read_text()), "written": 0}
        folder.mkdir(exist_ok=True)
        todo = [i for i, n in enumerate(names) if not (folder / n).is_file()]
        writer = _CacheWriter([sources[i] for i in todo], [str(folder / names[i]) for i in todo], size)
        written = sum(int(b.sum()) for b in DataLoader(writer, batch_size=64, num_workers=num_workers))
        from imbal.io import write_json_atomic

        info = {"images": len(names), "size": int(size), "format": f"JPEG q{CACHE_QUALITY} 4:2:0"}
        write_json_atomic(marker, info)
        return {**info, "written": written}
