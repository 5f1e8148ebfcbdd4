"""``data=multilabel_images``: images with several labels each, listed by CSV / JSONL tables or COCO json files.

Each of ``data.train_list`` / ``data.val_list`` / ``data.test_list`` is, by its suffix:

* ``.csv`` (a header line) or ``.jsonl`` / ``.ndjson`` (one object per line): columns ``path`` (relative
  to the split's image folder; sub-folders allowed) and ``labels``: a list of class names (a JSON list in
  JSONL, or a cell ``["traffic light", "car"]`` in CSV) or one string of names split on
  ``data.label_sep`` (a space by default); an empty list or string is an image with no label
  (an all-negative row).  Read by the text tables' reader (:mod:`imbal.data.text.readers`).
* ``.json``: a COCO ``instances_*.json``.  An image's labels are the categories of its annotations
  (skipping, as Wu et al.'s ``mllt/datasets/coco.py``, an annotation marked ``ignore`` or with
  ``area <= 0`` or a box narrower or lower than 1 pixel); an image without annotation is kept as an
  all-negative row (COCO val2017 has 48: the 5,000-image test set of COCO-MLT keeps them).  Class
  names are the ``categories`` ordered by category id.  ``data.train_ids`` (one image id per line, e.g.
  COCO-MLT's ``appendix/coco/longtail2017/img_id.pkl``, which despite its name is such a text file)
  keeps only those images of the training json.

Class names come from ``data.class_names`` (a text file, one name per line, in class-id order), else
the training COCO json's categories, else the sorted names of the training list; a val/test row
naming another class is refused (file and row).  Class counts (positives per class) are the training
list's; a class with no training positive is refused in one line (a typo in a class-names file, or a
class the loss and the tail AP cannot treat).  ``data.val_list: null`` validates on the test list, as
Wu et al. do (``DataStats.val_from = "test_list"``; a post-hoc threshold tuned there says so).

Images are in ``data.root``, or in ``data.root/<split>_images`` when that is set (COCO's
``train2017`` / ``val2017``).  Every listed path is checked before training (``imbal/data/paths.py``:
it stays inside the folder), missing files are refused with the first few and their count, and every
file is probed (``data.on_bad_image``).  Training sampler: ``none`` only (a class-aware sampler needs
one class per image).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imbal.data.base import DataModuleBase
from imbal.data.image_folder import IMAGENET_MEAN, IMAGENET_STD, folder_transforms
from imbal.data.images import BadImages, open_image
from imbal.data.loaders import eval_loader, train_loader
from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.data.multilabel_lists import list_format, read_class_names, read_coco, read_ids, read_table_list, voc_list
from imbal.kinds import IMAGE, MULTILABEL, SPLITS

NAME = "multilabel_images"
WHERE = f"data '{NAME}'"
#: missing files named in the one-line error
SHOW_MISSING = 3


class ListedImages(Dataset):
    """Image files and their ``[C]`` 0/1 label vectors, decoded on access with ``transform``."""

    def __init__(self, paths: Sequence[Path], targets: torch.Tensor, transform: Callable):
        self.paths, self.targets, self.transform = [str(p) for p in paths], targets, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image = open_image(self.paths[i], where=WHERE, mode="RGB")
        return self.transform(image), self.targets[i]


class MultilabelImagesDataModule(DataModuleBase):
    """Multi-label image classification from CSV / JSONL lists or COCO instances files (module docstring).

    Args:
        root: the image folder (paths are relative to it, or to ``root/<split>_images``).
        train_list, val_list, test_list: the lists (``val_list: null``: validate on the test list).
        train_images, val_images, test_images: sub-folders of ``root`` holding each split's images
            (null: val's is the test folder, test's the training folder, train's ``root`` itself).
        train_ids: a text file of image ids keeping only those images of a COCO training json.
        class_names: a text file, one class name per line, in class-id order.
        label_sep: the separator of a ``labels`` string (default a space).
        image_size, augment, cutout, randaugment_n, randaugment_m, mean, std: as ``data=image_folder_lt``
            (images resized to ``image_size`` squares; training adds pad-crop, flip and the policy).
        on_bad_image: ``error`` | ``skip`` (:class:`imbal.data.images.BadImages`).
        batch_size, num_workers, seed, sampler: as every data module (sampler: ``none`` only).
    """

    name = NAME
    modality = IMAGE
    task = MULTILABEL
    augment_policies = True

    def __init__(
        self,
        *,
        root: str,
        train_list: str,
        test_list: str,
        val_list: str | None = None,
        train_images: str | None = None,
        val_images: str | None = None,
        test_images: str | None = None,
        train_ids: str | None = None,
        class_names: str | None = None,
        label_sep: str = " ",
        image_size: int = 224,
        augment: bool | str = "basic",
        cutout: int | None = None,
        randaugment_n: int = 2,
        randaugment_m: int = 9,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        batch_size: int = 64,
        num_workers: int = 4,
        seed: int = 0,
        sampler: Any = None,
        on_bad_image: str = "error",
    ):
        super().__init__()
        sampler_name = dict(sampler or {}).get("name", "none")
        if sampler_name not in (None, "none"):
            raise ImbalError(f"sampler '{sampler_name}' needs one class per sample; data '{NAME}' is multilabel: "
                             "use sampler=none")
        self.root = Path(os.path.expanduser(str(root)))
        self.lists = {"train": train_list, "val": val_list, "test": test_list}
        self.image_dirs = {"train": train_images, "val": val_images, "test": test_images}
        self.train_ids = train_ids
        self.class_names_file = class_names
        self.label_sep = str(label_sep)
        self.image_size = int(image_size)
        self.augment, self.cutout = augment, cutout
        self.randaugment_n, self.randaugment_m = randaugment_n, randaugment_m
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.sampler_cfg = sampler
        self.bad_images = BadImages(on_bad_image, where=WHERE)
        self.splits: dict[str, ListedImages] = {}
        self.class_names: list[str] = []
        self.manifest: dict[str, Any] = {}
        self._stats: DataStats | None = None

    def check_options(self) -> None:
        if self.image_size < 8:
            raise ImbalError(f"data.image_size must be >= 8 pixels, got {self.image_size}")
        if not self.label_sep:
            raise ImbalError("data.label_sep must not be empty; expected e.g. ' ' or ','")
        from imbal.data.augment import augment_name, check_cutout, check_randaugment

        self.augment, self.cutout = augment_name(self.augment), check_cutout(self.cutout)
        self.randaugment_n, self.randaugment_m = check_randaugment(self.randaugment_n, self.randaugment_m)
        if not self.root.is_dir():
            raise ImbalError(f"data.root={self.root} is not a directory; expected the folder holding the images")

    def image_dir(self, split: str) -> Path:
        """``root/<split>_images``; val falls back to the test folder, test to the training one, train to root."""
        chain = {"train": ("train",), "test": ("test", "train"), "val": ("val", "test", "train")}[split]
        key = next((s for s in chain if self.image_dirs[s]), None)
        sub = self.image_dirs[key] if key else None
        folder = self.root / sub if sub else self.root
        if not folder.is_dir():
            raise ImbalError(f"data.{key}_images={sub}: {folder} is not a directory; expected the sub-folder of data.root "
                             f"holding the {split} images")
        return folder

    # -- setup --------------------------------------------------------------
    def read_list(self, split: str) -> tuple[list[str], list[list[str]], list[str] | None, str]:
        """(paths, label names, COCO category names or None, file) of one split's list."""
        key = f"data.{split}_list"
        path = Path(os.path.expanduser(str(self.lists[split])))
        fmt = list_format(path, key)
        if fmt == "coco":
            ids = read_ids(Path(os.path.expanduser(self.train_ids))) if split == "train" and self.train_ids else None
            paths, labels, names = read_coco(path, ids)
            return paths, labels, names, str(path)
        if split == "train" and self.train_ids:
            raise ImbalError(f"data.train_ids keeps images of a COCO json, but data.train_list={path} is a "
                             f"{fmt.upper()} list; list only the images you want, or drop data.train_ids")
        if not path.is_file():
            raise ImbalError(f"{key}={path} does not exist; expected a CSV or JSONL list or a COCO instances json")
        paths, labels = read_table_list(path, fmt, label_sep=self.label_sep)
        return paths, labels, None, str(path)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.check_options()
        self.bad_images.skipped.clear()
        read = {s: self.read_list(s) for s in SPLITS if self.lists[s]}
        if "train" not in read or "test" not in read:
            raise ImbalError(f"{WHERE}: data.train_list and data.test_list are required")
        if "val" not in read:
            read["val"] = read["test"]
        self.class_names = self._names(read)
        index = {c: i for i, c in enumerate(self.class_names)}
        train_tf, eval_tf = folder_transforms(self.image_size, self.mean, self.std, augment=self.augment,
                                              cutout=self.cutout, randaugment_n=self.randaugment_n,
                                              randaugment_m=self.randaugment_m)
        targets = {split: self._targets(read[split], index) for split in SPLITS}
        self._check_counts(targets["train"], read["train"][3])
        fingerprints, sizes = {}, {}
        for split in ("train", "test", "val"):
            if split == "val" and read["val"] is read["test"]:  # validation on the test list: indexed once
                self.splits["val"], fingerprints["val"], sizes["val"] = self.splits["test"], fingerprints["test"], sizes["test"]
                continue
            names, where, y = read[split][0], read[split][3], targets[split]
            files, keep = self._files(split, names, where)
            self.splits[split] = ListedImages(files, torch.from_numpy(y[keep]), train_tf if split == "train" else eval_tf)
            fingerprints[split] = hashlib.sha256(
                json.dumps([names[k] for k in keep]).encode() + y[keep].tobytes()).hexdigest()[:16]
            sizes[split] = len(keep)
        counts = self._check_counts(self.splits["train"].targets.numpy(), read["train"][3])  # unreadable files left out
        self._describe(read, counts, fingerprints, sizes)

    def _targets(self, listed: tuple, index: dict[str, int]) -> np.ndarray:
        """``[N, C]`` 0/1 targets of a split's label names; an unknown name is refused (file and row)."""
        _, labels, _, where = listed
        c = len(index)
        y = np.zeros((len(labels), c), dtype=np.float32)
        for row, labs in enumerate(labels):
            for lab in labs:
                if lab not in index:
                    shown = ", ".join(self.class_names) if c <= 20 else f"{c} classes of the training list"
                    raise ImbalError(f"{where}, row {row + 1}: unknown class {lab!r}; expected one of: {shown}")
                y[row, index[lab]] = 1.0
        return y

    def _check_counts(self, y: np.ndarray, where: str) -> list[int]:
        """Positives per class; a class without one is refused."""
        counts = [int(v) for v in y.sum(0).tolist()]
        empty = [self.class_names[i] for i, n in enumerate(counts) if n == 0]
        if empty:
            raise ImbalError(f"{where}: class {empty[0]!r} has no training positive ({len(empty)} such classes); "
                             "every class needs one: drop it from the class names or add training images")
        return counts

    def _names(self, read: dict) -> list[str]:
        if self.class_names_file:
            return read_class_names(Path(os.path.expanduser(self.class_names_file)))
        _, labels, coco_names, where = read["train"]
        if coco_names is not None:
            for split in ("val", "test"):
                other = read[split][2]
                if other is not None and other != coco_names:
                    raise ImbalError(f"{read[split][3]}: its categories differ from those of the training json "
                                     f"{where}; expected the same categories")
            return coco_names
        found = {lab for labs in labels for lab in labs}
        try:
            found = sorted(found, key=lambda n: (float(n), n))  # numbers numerically: 2 before 10
        except ValueError:
            found = sorted(found)
        if len(found) < 2:
            raise ImbalError(f"{where}: {len(found)} class names in the training list; expected at least 2")
        return found

    def _files(self, split: str, names: list[str], where: str) -> tuple[list[Path], list[int]]:
        """The listed files (checked inside the folder, present, readable) and the rows kept."""
        from imbal.data.paths import ListedTree

        folder = self.image_dir(split)
        tree = ListedTree(folder, example="images/0001.jpg")
        paths = [tree.join(n, what=f"{where}, row {row}: path") for row, n in enumerate(names, 1)]
        missing = [(row, n) for row, n in enumerate(names, 1) if not tree.is_file(n)]
        if missing:
            shown = ", ".join(f"{n} (row {row})" for row, n in missing[:SHOW_MISSING])
            raise ImbalError(f"{where}: {len(missing)} of {len(names)} listed images are missing under {folder} "
                             f"(first: {shown}); check data.root and data.{split}_images")
        keep = [k for k, p in enumerate(paths) if self.bad_images.check(p, where=f"{WHERE}: {where}") is not None]
        if not keep:
            raise ImbalError(f"{where}: no readable image left; expected at least one")
        return [paths[k] for k in keep], keep

    def _describe(self, read: dict, counts: list[int], fingerprints: dict, sizes: dict) -> None:
        extra = self.bad_images.report()
        val_from = "val_list" if self.lists["val"] else "test_list"
        self._stats = DataStats(
            task=MULTILABEL,
            num_classes=len(self.class_names),
            class_counts=counts,
            class_names=list(self.class_names),
            modality=IMAGE,
            input_shape=(3, self.image_size, self.image_size),
            num_train=sizes["train"],
            val_from=val_from,
            extra=extra,
        )
        self.manifest = {
            "root": os.path.abspath(self.root),
            "lists": {s: read[s][3] for s in SPLITS},
            "image_dirs": {s: str(self.image_dir(s)) for s in SPLITS},
            "train_ids": self.train_ids,
            "val_from": val_from,
            "classes": list(self.class_names),
            "class_counts": counts,
            "sizes": sizes,
            "all_negative_rows": {s: int((self.splits[s].targets.sum(1) == 0).sum()) for s in SPLITS},
            "fingerprints": fingerprints,
            "image_size": self.image_size,
            **extra,
        }

    # -- loaders ------------------------------------------------------------
    def labels(self, split: str) -> torch.Tensor:
        """``[N, C]`` 0/1 targets of ``split`` (no single class per image: no class-aware sampler)."""
        return self.splits[split].targets

    def loader(self, split: str) -> DataLoader:
        if split == "train":
            return train_loader(self.splits["train"], labels=None, batch_size=self.batch_size, seed=self.seed,
                                sampler_cfg=None, num_workers=self.num_workers)
        return eval_loader(self.splits[split], batch_size=self.batch_size, num_workers=self.num_workers)


if __name__ == "__main__":  # pragma: no cover - a thin command line over voc_list
    import sys

    if len(sys.argv) != 4:
        print("usage: python -m imbal.data.multilabel_images VOC_DIR IDS_FILE OUT.jsonl", file=sys.stderr)
        raise SystemExit(2)
    try:
        print(f"wrote {voc_list(*sys.argv[1:])} rows to {sys.argv[3]}")
    except ImbalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
