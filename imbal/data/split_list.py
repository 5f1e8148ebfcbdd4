"""``data=split_list``: images under ``data.root`` listed by split files, one ``relative/path.jpg <label>`` a line.

The format of the official long-tail lists (not shipped; see ``conf/data/imagenet_lt.yaml``,
``places_lt.yaml``, ``inat2018.yaml``)::

    train/n01440764/n01440764_10026.JPEG 0
    train_val2018/Plantae/7477/3b60c9486db1d2ee875f11a669fbde4a.jpg 7477

* A line is split on its **last** run of whitespace: the label is the last field, the path everything
  before it (so a path with spaces survives; the official lists have none).  Blank lines are skipped.
* A list path that is relative is taken under ``data.root`` (keep the ``*.txt`` files in the image
  root, beside ``train/`` and ``val/``); an absolute one is used as is.
* Classes: ``data.num_classes`` when given (iNaturalist 2018: 8142), else the lines of
  ``data.class_names`` (one name a line, line i = class i), else ``max label + 1`` over all lists.
  Class counts come from the training list; many / medium / few-shot groups (>100, 20-100, <20
  training images) follow from them (:mod:`imbal.metrics.shots`).
* Validation: ``data.val_list``, or with ``val_list: null`` ``data.val_per_class`` images of every class
  held out of the training list (balanced, seeded by ``subset_seed``); ``DataStats.val_from`` says which.

Listing checks, before anything trains, one line each (:class:`imbal.errors.ImbalError`): a malformed
line, a label that is not an integer or is outside ``[0, num_classes)``, a duplicate line (file:line,
and how many), a list none of whose files exists under ``data.root`` (the wrong root), listed files
missing (the first 3 and the count), a training-list path also listed for validation or test, a class
with no training image (``data.allow_empty_classes: true`` keeps such classes, e.g. a small subset of a
big label space).  Every listed path is joined through :class:`imbal.data.paths.ListedTree` (no ``..``,
no absolute path, no symlink out of ``data.root``) and its existence read from one directory listing
per folder.  ``data.check_images: true`` also probes every file's header
(:class:`imbal.data.images.BadImages`, ``data.on_bad_image``); the default checks existence only and a
file that fails to decode stops the run when read, in one line naming it.

Transforms (the papers'): training ``RandomResizedCrop(image_size)`` + horizontal flip + optional
``ColorJitter(color_jitter, color_jitter, color_jitter)``; evaluation ``Resize(resize_size)`` +
``CenterCrop(image_size)``; normalised by ``mean`` / ``std`` (ImageNet's; ``data=inat2018`` has Kang et
al.'s iNaturalist values and, as they do, no colour jitter; ``imagenet_lt`` / ``places_lt`` jitter 0.4).

Throughput:

* ``num_workers`` DataLoader workers; training loaders start fresh workers every epoch (the exact-resume
  contract of :mod:`imbal.data.loaders`), evaluation loaders keep theirs (``persistent_workers``);
  ``pin_memory: auto`` pins batches when CUDA is present.
* ``cache_size``: every listed image stored once, short side ``cache_size`` (bilinear, as
  ``Resize``), JPEG quality 95 (libjpeg's 4:2:0 chroma), under ``cache_dir/split_list_<key>/`` at the
  same relative path, ``key`` = hash of (real path of ``data.root``, ``cache_size``, format).  Each file is
  written atomically (a killed build leaves whole files only, and the next build fills in the rest); a
  marker ``complete-<hash of the listed paths>.json`` says a set of lists is done.  The build holds a
  file lock, so DDP ranks (each sets up its data before the Trainer exists) and concurrent runs wait
  for one writer and then read; ``prepare_data`` (local rank 0 under Lightning) builds it too.  An
  image changed in place after caching is not noticed: delete the cache folder.
* ``decode: gpu``: the DataLoader yields each file's bytes; ``on_before_batch_transfer`` decodes the
  batch with ``torchvision.io.decode_jpeg(device=<the trainer's device>)`` and runs the same
  transforms per image on the device.  JPEG files only (the official sets are JPEG; the resize cache
  writes JPEG).  Refused without CUDA; not exercised by the tests (no GPU here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from imbal.data.base import DataModuleBase, balanced_holdout
from imbal.data.image_folder import IMAGENET_MEAN, IMAGENET_STD
from imbal.data.images import BadImages, open_image
from imbal.data.list_files import (
    WHERE,
    check_files,
    check_labels_in_range,
    list_path,
    read_class_names,
    read_list,
)
from imbal.data.paths import ListedTree
from imbal.data.resize_cache import build_cache, cache_folder
from imbal.data.profile import indices_hash
from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.kinds import IMAGE, MULTICLASS
DECODE = ("cpu", "gpu")


# -- transforms ------------------------------------------------------------------
def split_list_transforms(image_size: int, resize_size: int, color_jitter: float | None, mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, *, from_tensor: bool = False) -> tuple[Callable, Callable]:
    """(train, eval): RandomResizedCrop + flip (+ ColorJitter) / Resize + CenterCrop, then ImageNet normalisation.

    The geometric steps run on the PIL image (PIL's bilinear resize, as the resize cache), then
    ``ToImage``; ``from_tensor`` builds the same steps for uint8 ``[3, H, W]`` tensors (``decode: gpu``).
    """
    from torchvision.transforms import v2

    finish = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    to_image = [] if from_tensor else [v2.ToImage()]
    train = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    if color_jitter:
        train.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    evaluate = [v2.Resize(resize_size, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose(train + to_image + finish), v2.Compose(evaluate + to_image + finish)


class ListedImages(Dataset):
    """Images at ``paths`` with integer ``targets``; ``transform=None`` yields the file's bytes (``decode: gpu``)."""

    def __init__(self, paths: list[str], targets: list[int] | np.ndarray, transform: Callable | None):
        self.paths = list(paths)
        self.targets = torch.as_tensor(np.asarray(targets, np.int64))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        if self.transform is None:
            from torchvision.io import read_file

            return read_file(path), int(self.targets[i])
        return self.transform(open_image(path, where=WHERE, mode="RGB")), int(self.targets[i])


def collate_bytes(batch):
    """A ``decode: gpu`` batch: (list of uint8 byte tensors, labels)."""
    return [b for b, _ in batch], torch.as_tensor([t for _, t in batch], dtype=torch.long)


class SplitListDataModule(DataModuleBase):
    """Image classification from ``data.root`` and split list files (see the module docstring).

    Args:
        root: the folder the listed paths are relative to.
        train_list, val_list, test_list: list files (relative ones under ``root``); ``val_list: null``
            holds ``val_per_class`` images of every class out of the training list.
        class_names: optional file, one class name a line.
        num_classes: the number of classes (default: the class names' count, else max label + 1).
        allow_empty_classes: keep classes without a training image (refused by default).
        image_size, resize_size: the crop side and the evaluation resize (224 / 256).
        color_jitter: null, or brightness = contrast = saturation jitter of training images (0.4).
        check_images: probe every file's header at setup (``on_bad_image``: error | skip).
        cache_size, cache_dir: the one-time resize cache (null: off).
        decode: cpu | gpu (``torchvision.io.decode_jpeg`` on the Trainer's CUDA device).
        pin_memory: auto (when CUDA is present) | true | false.
    """

    name = "split_list"
    modality = IMAGE
    task = MULTICLASS

    def __init__(
        self,
        *,
        root: str,
        train_list: str,
        val_list: str | None,
        test_list: str,
        class_names: str | None = None,
        num_classes: int | None = None,
        allow_empty_classes: bool = False,
        val_per_class: int = 10,
        subset_seed: int = 0,
        image_size: int = 224,
        resize_size: int = 256,
        color_jitter: float | None = None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        check_images: bool = False,
        on_bad_image: str = "error",
        cache_size: int | None = None,
        cache_dir: str | None = None,
        decode: str = "cpu",
        pin_memory: bool | str = "auto",
        batch_size: int = 64,
        num_workers: int = 4,
        seed: int = 0,
        sampler: Any = None,
    ):
        super().__init__()
        self.root = Path(os.path.expanduser(str(root)))
        self.list_keys = {"train": train_list, "val": val_list, "test": test_list}
        self.class_names_file = class_names
        self.num_classes = num_classes
        self.allow_empty_classes = bool(allow_empty_classes)
        self.val_per_class, self.subset_seed = int(val_per_class), int(subset_seed)
        self.image_size, self.resize_size = int(image_size), int(resize_size)
        self.color_jitter = color_jitter
        self.mean, self.std = tuple(mean), tuple(std)
        self.check_images, self.on_bad_image = bool(check_images), on_bad_image
        self.cache_size, self.cache_dir = cache_size, cache_dir
        self.decode, self.pin_memory = decode, pin_memory
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.sampler_cfg = sampler
        self.splits: dict[str, ListedImages] = {}
        self.manifest: dict[str, Any] = {}
        self.cache_info: dict[str, Any] = {}
        self._index: dict[str, Any] | None = None
        self._stats: DataStats | None = None

    # -- checks and index ------------------------------------------------
    def check_options(self) -> None:
        if self.decode not in DECODE:
            raise ImbalError(f"data.decode={self.decode!r}: expected one of {', '.join(DECODE)}")
        if self.decode == "gpu" and not torch.cuda.is_available():
            raise ImbalError("data.decode=gpu needs CUDA; torch.cuda.is_available() is false on this machine "
                             "(use data.decode=cpu)")
        if self.image_size < 8 or self.resize_size < self.image_size:
            raise ImbalError(f"data.image_size={self.image_size}, data.resize_size={self.resize_size}: expected "
                             f"8 <= image_size <= resize_size (evaluation resizes, then center-crops image_size)")
        if self.cache_size is not None and int(self.cache_size) < self.resize_size:
            raise ImbalError(f"data.cache_size={self.cache_size} is below data.resize_size={self.resize_size}: "
                             f"evaluation would upsample the cached images; use cache_size >= resize_size")
        if self.pin_memory not in ("auto", True, False):
            raise ImbalError(f"data.pin_memory={self.pin_memory!r}: expected auto, true or false")
        if not self.root.is_dir():
            raise ImbalError(f"data.root={self.root} is not a directory; expected the folder the list files' paths "
                             f"are relative to")

    def index(self) -> dict[str, Any]:
        """Read and check the lists (the module docstring's checks); the joined paths and labels per list."""
        if self._index is not None:
            return self._index
        self.check_options()
        lists = {s: read_list(list_path(self.root, v, f"data.{s}_list"), f"data.{s}_list")
                 for s, v in self.list_keys.items() if v is not None}
        c = self.num_classes
        names = None
        if self.class_names_file:
            names = read_class_names(list_path(self.root, self.class_names_file, "data.class_names"), c)
        if c is not None:
            why = f"data.num_classes={c}"
        elif names is not None:
            c, why = len(names), f"{len(names)} names in data.class_names"
        else:
            c = max(max(s.labels) for s in lists.values()) + 1
            why = "class ids count from 0"
        c = int(c)
        for s in lists.values():
            check_labels_in_range(s, c, why)
        tree = ListedTree(self.root, example=lists["train"].names[0])
        paths = {s: check_files(tree, lst) for s, lst in lists.items()}
        train_names = set(lists["train"].names)
        for s in ("val", "test"):
            if s in lists:
                both = [(n, line) for n, line in zip(lists[s].names, lists[s].lines) if n in train_names]
                if both:
                    raise ImbalError(f"{lists[s].file}:{both[0][1]}: {both[0][0]!r} is also in the training list "
                                     f"{lists['train'].file} ({len(both)} such lines); the {s} images must not be "
                                     f"trained on")
        if self.check_images:
            bad = BadImages(self.on_bad_image, where=WHERE)
            for s, lst in lists.items():
                keep = [i for i, p in enumerate(paths[s]) if bad.check(p, f"{WHERE}: {lst.file}") is not None]
                paths[s] = [paths[s][i] for i in keep]
                lst.names = [lst.names[i] for i in keep]
                lst.labels = [lst.labels[i] for i in keep]
            self.extra = bad.report()
        else:
            self.extra = {}
        counts = np.bincount(np.asarray(lists["train"].labels, np.int64), minlength=c)
        empty = np.flatnonzero(counts == 0)
        if len(empty) and not self.allow_empty_classes:
            raise ImbalError(f"{len(empty)} of {c} classes have no training image in {lists['train'].file} "
                             f"(class ids {', '.join(str(int(k)) for k in empty[:5])}{', ...' if len(empty) > 5 else ''}); "
                             f"fix the list or data.num_classes, or set data.allow_empty_classes=true")
        self._index = {"lists": lists, "paths": paths, "num_classes": c, "class_names": names}
        return self._index

    # -- resize cache ----------------------------------------------------
    def cache_root(self) -> Path:
        from imbal.cache import cache_root

        base = Path(os.path.expanduser(str(self.cache_dir))) if self.cache_dir else cache_root() / "split_list"
        return cache_folder(base, self.root, int(self.cache_size))

    def prepare_data(self) -> None:
        """Build the resize cache (``cache_size``) once; a no-op without it or when it is complete."""
        if self.cache_size is None or self.cache_info:
            return
        idx = self.index()
        names, sources = [], []
        for s, lst in idx["lists"].items():
            names += lst.names
            sources += idx["paths"][s]
        unique = dict(zip(names, sources))  # iNat2018's val list may serve as test too
        self.cache_info = build_cache(self.cache_root(), list(unique), list(unique.values()), int(self.cache_size),
                                      self.num_workers)

    # -- Lightning -------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        idx = self.index()
        self.prepare_data()
        lists, paths, c = idx["lists"], idx["paths"], idx["num_classes"]
        if self.cache_size is not None:
            folder = self.cache_root()
            paths = {s: [str(folder / n) for n in lst.names] for s, lst in lists.items()}
        train_y = np.asarray(lists["train"].labels, np.int64)
        train_rows = np.arange(len(train_y))
        if "val" in lists:
            val_paths, val_y, val_from = paths["val"], lists["val"].labels, "val_list"
            val_rows = np.arange(len(val_y))
        else:
            present = np.bincount(train_y, minlength=c)
            small = [k for k in range(c) if 0 < present[k] <= self.val_per_class]
            if small:
                raise ImbalError(f"data.val_list=null holds out data.val_per_class={self.val_per_class} training "
                                 f"images per class, but class {small[0]} has {present[small[0]]} ({len(small)} such "
                                 f"classes); give data.val_list or lower data.val_per_class")
            held, rest = balanced_holdout(train_y, self.val_per_class, np.random.default_rng(self.subset_seed))
            val_paths, val_y, val_from = [paths["train"][i] for i in held], train_y[held], "train"
            val_rows, train_rows = held, rest
        counts = np.bincount(train_y[train_rows], minlength=c)
        gpu = self.decode == "gpu"
        train_tf, eval_tf = split_list_transforms(self.image_size, self.resize_size, self.color_jitter,
                                                  self.mean, self.std)
        self.splits = {
            "train": ListedImages([paths["train"][i] for i in train_rows], train_y[train_rows],
                                  None if gpu else train_tf),
            "val": ListedImages(val_paths, val_y, None if gpu else eval_tf),
            "test": ListedImages(paths["test"], lists["test"].labels, None if gpu else eval_tf),
        }
        class_names = idx["class_names"] or [str(k) for k in range(c)]
        self.class_names = class_names
        self._stats = DataStats(
            task=self.task,
            num_classes=c,
            class_counts=[int(n) for n in counts],
            class_names=class_names,
            modality=self.modality,
            input_shape=(3, self.image_size, self.image_size),
            num_train=int(counts.sum()),
            val_from=val_from,
            extra=dict(self.extra),
        )
        self.manifest = {
            "root": os.path.abspath(self.root),
            "lists": {s: {"file": str(lst.file), "sha256": lst.sha256, "images": len(lst.names)}
                      for s, lst in lists.items()},
            "num_classes": c,
            "class_counts": [int(n) for n in counts],
            "val": val_from if val_from == "val_list" else f"{self.val_per_class} per class held out of the train list",
            "val_indices_hash": indices_hash(np.asarray(val_rows)),
            "subset_seed": self.subset_seed,
            "image_size": self.image_size,
            "resize_size": self.resize_size,
            "color_jitter": self.color_jitter,
            "cache_size": self.cache_size,
            **self.extra,
        }

    def labels(self, split: str) -> torch.Tensor:
        return self.splits[split].targets

    def loader(self, split: str):
        from imbal.data.loaders import eval_loader, train_loader

        collate = collate_bytes if self.decode == "gpu" else None
        pin = torch.cuda.is_available() if self.pin_memory == "auto" else bool(self.pin_memory)
        if split == "train":
            return train_loader(self.splits["train"], labels=self.labels("train"), batch_size=self.batch_size,
                                seed=self.seed, sampler_cfg=self.sampler_cfg, num_workers=self.num_workers,
                                collate_fn=collate, pin_memory=pin)
        return eval_loader(self.splits[split], batch_size=self.batch_size, num_workers=self.num_workers,
                           collate_fn=collate, pin_memory=pin)

    # -- data.decode=gpu -------------------------------------------------
    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """``decode: gpu``: decode a batch of JPEG bytes on the Trainer's device and transform it there."""
        if self.decode != "gpu" or not isinstance(batch, (list, tuple)) or not isinstance(batch[0], list):
            return batch
        from torchvision.io import ImageReadMode, decode_jpeg

        device = self.trainer.strategy.root_device
        images = decode_jpeg(batch[0], mode=ImageReadMode.RGB, device=device)
        if not hasattr(self, "_gpu_tf"):
            self._gpu_tf = split_list_transforms(self.image_size, self.resize_size, self.color_jitter, self.mean,
                                                 self.std, from_tensor=True)
        tf = self._gpu_tf[0] if self.trainer.training else self._gpu_tf[1]
        return torch.stack([tf(im) for im in images]), batch[1]
