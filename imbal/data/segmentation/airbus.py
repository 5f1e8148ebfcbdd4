"""``data=airbus``: Kaggle Airbus Ship Detection (RLE ship masks on 768x768 JPEGs), or a synthetic twin.

Two targets on the same images, index and split (``data.target``):

* ``mask`` (default): per-pixel ship masks, task ``segmentation``.  Splits, crops,
  augmentation and batches are those of
  :class:`imbal.data.segmentation.base.SegmentationDataModule`; validation and test
  batches carry the ship instances the Airbus F2 metric needs.
* ``presence``: one ship / no-ship label per image ("has at least one RLE row"), task
  ``binary``, modality ``image`` (:mod:`imbal.data.segmentation.presence`): whole images
  resized by area to ``data.presence_size``, flips and 90-degree rotations in training.
  Its evaluation input is :func:`presence_input` (``presence_input(img, size)``), which
  ``imbal predict --gate`` applies to new images.

What a run records for the two-stage pipeline (read these, not the live config):

* ``data_manifest.json``: ``target`` (``mask`` | ``presence``), ``group`` (null | ``scene``),
  ``val_ids`` / ``test_ids`` (the split, identical for both targets with the same ``seed``,
  ``val_fraction``, ``test_fraction``, ``max_images`` and ``group``), ``split`` (those
  settings), ``presence_size`` (presence: the resolved side in pixels, or null = native size)
  and ``resize`` (mask: the resolved ``data.resize``).
* the recorded config's ``data.target``, ``data.presence_size`` (may be ``auto``: 256 with
  ``data.root``, the synthetic images' own side without; the manifest holds the number) and
  ``data.resize``.

``data.group=scene`` keeps the tiles that share content in one split
(:mod:`imbal.data.segmentation.scenes`).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from imbal.data.paths import safe_child
from imbal.data.segmentation import scenes
from imbal.data.segmentation import synthetic as synthetic_set
from imbal.data.segmentation.base import SegmentationDataModule
from imbal.data.segmentation.datasets import SegItem
from imbal.data.segmentation.presence import (
    MASK_TARGET,
    PRESENCE_CLASSES,
    PRESENCE_TARGET,
    TARGETS,
    PresenceDataset,
    presence_image,
    presence_input,
)
from imbal.data.segmentation.rle import check_rle, rle_decode_instances
from imbal.data.segmentation.transforms import read_rgb
from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.kinds import BINARY, IMAGE

__all__ = ["AirbusDataModule", "presence_input"]

#: The value of ``data.image_size``, ``data.crop`` and ``data.samples_per_epoch`` that picks the
#: default of the data in use (conf/data/airbus.yaml's default): :data:`REAL` with ``data.root``,
#: :data:`SYNTHETIC` without.
AUTO = "auto"
REAL = {"image_size": 768, "crop": 256, "samples_per_epoch": None, "presence_size": 256}
#: ``image_size`` of the synthetic set is its generator's (``data.synthetic.image_size``), and so is its
#: ``presence_size`` (the images are used at their own side).
SYNTHETIC = {"image_size": 128, "crop": 64, "samples_per_epoch": 32}
#: ``data.empty_share: auto``: this share with ``data.target=mask``; null (no empty-share sampler) with presence
EMPTY_SHARE = 0.5


def _announce(msg: str) -> None:
    """One warning line on stderr (Hydra sends logging to the run's log file only)."""
    import logging

    if logging.getLogger().handlers:  # e.g. Hydra's run log file
        logging.getLogger("imbal").warning(msg)
    print(f"imbal: warning: {msg}", file=sys.stderr, flush=True)


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


def _generator_keys() -> list[str]:
    return [p for p in inspect.signature(synthetic_set.generate).parameters if p != "root"]


class AirbusDataModule(SegmentationDataModule):
    """Kaggle Airbus Ship Detection: ``<root>/<images>/*.jpg`` and ``<root>/<csv>`` (``ImageId,EncodedPixels``).

    One CSV row per ship (run-length encoded, see :mod:`imbal.data.segmentation.rle`)
    and one row with an empty value per ship-free image.  The training target is
    the union of an image's ships; validation and test also carry the
    instance labels the Airbus F2 metric needs.

    Without ``root`` a synthetic data set in the same layout is generated once
    into a cache directory (``cache_dir``, else ``$IMBAL_CACHE`` or
    ``~/.cache/imbal``) and read by the same code.

    Args:
        root: folder with the Kaggle files, or null for the synthetic set.
        csv, images: names of the CSV and of the image folder under ``root``.
        image_size: side of the images (768 on Kaggle); every JPEG is checked.  ``auto``:
            768 with ``root``, else the synthetic set's ``image_size``; without ``root``
            another value is refused (set ``synthetic.image_size``).
        crop, samples_per_epoch: see :class:`SegmentationDataModule`; ``auto``: 256 and
            null with ``root``, 64 and 32 on the synthetic set (see :data:`REAL`, :data:`SYNTHETIC`).
        max_images: use only this many images (a stratified, seeded subset), for quick runs.
        target: ``mask`` (ship masks, task ``segmentation``) or ``presence`` (ship / no-ship per
            image, task ``binary``; same index and split).  With ``presence``, ``crop``,
            ``samples_per_epoch`` and ``empty_share`` left at ``auto`` mean whole images, each
            training image once per epoch and no empty-share sampler (``sampler=`` picks the
            images, e.g. ``sampler=class_balanced``); other values, and ``resize``, are refused.
        presence_size: side (pixels) to which ``presence`` images are resized by area; null: their
            own side; ``auto``: 256 with ``root``, the synthetic images' own side without.
        empty_share: see :class:`SegmentationDataModule`; ``auto``: 0.5 with ``mask``, null with ``presence``.
        group: null (image-level stratified split) or ``scene``: tiles that share a
            ``block_size`` block go to one split (:mod:`imbal.data.segmentation.scenes`).
        block_size: side of the aligned blocks hashed by ``group=scene``; ``auto``: ``image_size // 3``
            (256 on Kaggle's 768 px tiles, cut on a 256 px grid).
        block_min_std: blocks whose grey standard deviation (0-255, at the reduced decoding scale, once the
            best-fitting plane is removed) is below this are not matched (open sea would join unrelated scenes).
        synthetic: used when ``root`` is null: the generator's parameters (``n_images``,
            ``image_size``, ``ship_image_share``, ``seed``, ...; see
            :func:`imbal.data.segmentation.synthetic.generate`); other keys are refused.
        cache_dir: where the synthetic set is written.
        Others: see :class:`SegmentationDataModule`.
    """

    name = "airbus"
    class_names = ["background", "ship"]

    def __init__(
        self,
        *,
        root: str | None = None,
        csv: str = "train_ship_segmentations_v2.csv",
        images: str = "train_v2",
        image_size: int | str = AUTO,
        crop: int | str | None = AUTO,
        samples_per_epoch: int | str | None = REAL["samples_per_epoch"],
        empty_share: float | str | None = AUTO,
        resize: int | None = None,
        max_images: int | None = None,
        target: str = MASK_TARGET,
        presence_size: int | str | None = AUTO,
        group: str | None = None,
        block_size: int | str = AUTO,
        block_min_std: float = scenes.MIN_STD,
        synthetic: Mapping[str, Any] | None = None,
        cache_dir: str | None = None,
        **kwargs,
    ):
        root_path = None if root in (None, "") else Path(root).expanduser()
        defaults = SYNTHETIC if root_path is None else REAL
        if target not in TARGETS:
            raise ImbalError(f"data.target={target!r}: expected one of {', '.join(TARGETS)} "
                             f"(ship masks, or one ship / no-ship label per image)")
        self.target = str(target)
        if group not in (None, "none", scenes.SCENE):
            raise ImbalError(f"data.group={group!r}: expected null (image-level split) or {scenes.SCENE} "
                             f"(tiles that share a block in one split)")
        self.group = None if group in (None, "none") else str(group)
        if self.target == PRESENCE_TARGET:
            given = {k: v for k, v in (("crop", crop), ("samples_per_epoch", samples_per_epoch),
                                       ("empty_share", empty_share), ("resize", resize))
                     if v is not None and not _is_auto(v)}
            if given:
                k, v = next(iter(given.items()))
                use = ("data.presence_size" if k in ("crop", "resize")
                       else "sampler=class_balanced (or another sampler=)")
                raise ImbalError(
                    f"data.{k}={v} applies to data.target=mask; data.target=presence trains on whole images, "
                    f"each once per epoch: leave data.{k}=auto (or null) and use {use}"
                )
            crop, samples_per_epoch, empty_share = None, None, None
            self.task, self.modality, self.class_names = BINARY, IMAGE, list(PRESENCE_CLASSES)
        elif not _is_auto(presence_size) and presence_size is not None:
            raise ImbalError(f"data.presence_size={presence_size} applies to data.target=presence; "
                             f"leave it auto with data.target=mask (data.resize resizes mask images)")
        super().__init__(
            crop=defaults["crop"] if _is_auto(crop) else crop,
            samples_per_epoch=defaults["samples_per_epoch"] if _is_auto(samples_per_epoch) else samples_per_epoch,
            empty_share=EMPTY_SHARE if _is_auto(empty_share) else empty_share,
            resize=resize,
            **kwargs,
        )
        self.root = root_path
        self.csv_name, self.images_name = csv, images
        self.max_images = None if max_images is None else int(max_images)
        self.synthetic = dict(synthetic or {})
        unknown = sorted(set(self.synthetic) - set(_generator_keys()))
        if unknown:
            raise ImbalError(
                f"data.synthetic got unknown key(s) {unknown}; it takes the generator's {', '.join(_generator_keys())} "
                f"(the crop and the samples per epoch of a run are data.crop and data.samples_per_epoch)"
            )
        self.cache_dir = cache_dir
        self.is_synthetic = self.root is None
        if self.is_synthetic:
            size = int(self.synthetic.get("image_size", SYNTHETIC["image_size"]))
            if not _is_auto(image_size) and int(image_size) != size:
                raise ImbalError(
                    f"data.image_size={image_size} is not used without data.root: the synthetic images are "
                    f"data.synthetic.image_size={size} px; set data.synthetic.image_size={image_size} "
                    f"(or data.image_size=auto) to change them"
                )
            self.image_size = size
        else:
            self.image_size = REAL["image_size"] if _is_auto(image_size) else int(image_size)
        if _is_auto(presence_size):
            presence_size = self.image_size if self.is_synthetic else REAL["presence_size"]
        self.presence_size = None if presence_size is None else int(presence_size)
        if self.presence_size is not None and self.presence_size < 8:
            raise ImbalError(f"data.presence_size must be null, auto or a side of at least 8 pixels, got {presence_size}")
        self.block_size = self.image_size // 3 if _is_auto(block_size) else int(block_size)
        if not 8 <= self.block_size <= self.image_size:
            raise ImbalError(f"data.block_size={block_size}: expected auto or a side in [8, {self.image_size}] "
                             f"pixels (the image side is {self.image_size})")
        self.block_min_std = float(block_min_std)
        self._presence_cache: dict[int, np.ndarray] = {}
        self._announced = False

    def prepare_data(self) -> None:
        if self.root is None:
            self._synthetic_root()

    def _synthetic_root(self) -> Path:
        params = dict(self.synthetic)
        params.setdefault("image_size", SYNTHETIC["image_size"])
        path, generated = synthetic_set.cached(self.cache_dir, **params)
        if not self._announced or generated:
            self._announced = True
            _announce(
                f"data.root is not set: {'generated' if generated else 'using'} a synthetic Airbus-layout data "
                f"set in {path} ({params.get('n_images', 200)} images of {params['image_size']}px); "
                f"set data.root to the Kaggle folder for the real data"
            )
        return path

    def index(self) -> list[SegItem]:
        import pandas as pd

        root = self.root if self.root is not None else self._synthetic_root()
        self.data_root = root
        csv = root / self.csv_name
        if not csv.is_file():
            raise ImbalError(
                f"data 'airbus': CSV {csv} not found; expected Kaggle's {self.csv_name} "
                f"(ImageId,EncodedPixels) under data.root={root}"
            )
        try:
            df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        except Exception as exc:  # pandas raises many kinds for a malformed file
            raise ImbalError(f"data 'airbus': cannot parse CSV {csv}: {exc}") from None
        missing = [c for c in ("ImageId", "EncodedPixels") if c not in df.columns]
        if missing:
            raise ImbalError(f"data 'airbus': CSV {csv} lacks column(s) {missing}; expected ImageId,EncodedPixels")
        s = self.image_size
        shape = (s, s)
        by_id: dict[str, list[str]] = {}
        first_row: dict[str, int] = {}
        for row, (image_id, rle) in enumerate(zip(df.ImageId, df.EncodedPixels), start=2):
            if image_id not in by_id:
                by_id[image_id] = []
                first_row[image_id] = row
            if rle.strip():
                try:
                    check_rle(rle, shape, image_id=image_id)
                except ImbalError as exc:
                    raise ImbalError(f"data 'airbus': {csv} row {row}: {exc}") from None
                by_id[image_id].append(rle)
        ids = sorted(by_id)
        img_dir = root / self.images_name
        paths: dict[str, Path] = {}
        for image_id in ids:  # every name is checked before any file is read
            row = first_row[image_id]
            path = safe_child(img_dir, image_id, what=f"data 'airbus': {csv} row {row}: ImageId", within=root,
                              example="00003e153.jpg")
            if not (path.is_file() or path.is_symlink()):
                raise ImbalError(
                    f"data 'airbus': image {path} for {csv.name} row {row} (ImageId {image_id}) does not exist"
                )
            paths[image_id] = path
        items = [
            SegItem(i, bool(by_id[i]), sum(check_rle(r, shape) for r in by_id[i]), s * s, {"rles": by_id[i]})
            for i in ids
        ]
        if self.max_images is not None and self.max_images < len(items):
            items = self._subset(items)
        good = []
        for it in items:  # the images in use: header, size and data.on_bad_image (imbal/data/images.py)
            size = self.bad_images.check(paths[it.image_id], f"data 'airbus': {csv.name} row {first_row[it.image_id]}")
            if size is None:
                continue
            if size != shape:
                raise ImbalError(
                    f"data 'airbus': image {paths[it.image_id]} is {size[0]}x{size[1]}, expected {s}x{s} "
                    f"(set data.image_size)"
                )
            good.append(it)
        items = good
        self.image_shape = shape
        self.manifest.update({"root": str(root), "synthetic": self.is_synthetic, "csv": str(csv)})
        return items

    def _subset(self, items: list[SegItem]) -> list[SegItem]:
        """``max_images`` of ``items``: a seeded subset with the same share of ship images as the whole."""
        has = np.array([it.has_fg for it in items])
        rng = np.random.default_rng(self.seed)
        n_fg = int(round(self.max_images * has.mean()))
        keep = np.concatenate([
            rng.choice(np.flatnonzero(has), min(n_fg, int(has.sum())), replace=False),
            rng.choice(np.flatnonzero(~has), min(self.max_images - n_fg, int((~has).sum())), replace=False),
        ])
        return [items[i] for i in np.sort(keep)]

    def load_image(self, item: SegItem) -> np.ndarray:
        return read_rgb(self.data_root / self.images_name / item.image_id, where="data 'airbus'", size=self.image_shape)

    def load_instances(self, item: SegItem) -> np.ndarray:
        return rle_decode_instances(item.extra["rles"], self.image_shape, image_id=item.image_id)

    # -- the split: image-level (base class) or by scene ---------------------
    def split_indices(self, has_fg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``group=scene``: the tiles sharing a hashed block form one group, and groups are split whole."""
        if self.group is None:
            return super().split_indices(has_fg)
        img_dir = self.data_root / self.images_name
        groups, info = scenes.scene_groups(
            [img_dir / it.image_id for it in self.items], self.image_size, block_size=self.block_size,
            min_std=self.block_min_std, cache_dir=self.cache_dir, where=f"data '{self.name}'",
        )
        self._scene_timing = info.pop("timing")
        self.manifest["scene_groups"] = info  # compared on resume: no timings
        return scenes.grouped_split(has_fg, groups, self.val_fraction, self.test_fraction, self.seed)

    def setup(self, stage: str | None = None) -> None:
        if self._stats is not None:
            return
        self._scene_timing = None
        super().setup(stage)
        if self._scene_timing is not None:  # how long the block signatures took (summary.json data_extra)
            self._stats.extra["scene_signatures"] = self._scene_timing
        self.manifest.update({
            "target": self.target,
            "group": self.group,
            "split": {"seed": self.seed, "val_fraction": self.val_fraction, "test_fraction": self.test_fraction,
                      "max_images": self.max_images, "group": self.group,
                      **({"block_size": self.block_size, "block_min_std": self.block_min_std} if self.group else {})},
        })
        if self.target != PRESENCE_TARGET:
            return
        tr = self.split_idx["train"]
        ships = int(sum(self.items[i].has_fg for i in tr))
        counts = [len(tr) - ships, ships]
        side = self.presence_size or self.image_shape[0]
        self._stats = DataStats(
            task=BINARY,
            num_classes=2,
            class_counts=counts,
            class_names=list(PRESENCE_CLASSES),
            modality=IMAGE,
            input_shape=(3, side, side),
            num_train=len(tr),
            extra=dict(self._stats.extra),
        )
        self.manifest.update({"class_counts": counts, "presence_size": self.presence_size})

    # -- the presence target: whole images, one label each ---------------------
    def _load_presence(self, i: int) -> np.ndarray:
        hit = self._presence_cache.get(i)
        if hit is None:
            hit = presence_image(self.load_image(self.items[i]), self.presence_size)
            if len(self.items) <= self.cache_images:  # small data: decode and resize each JPEG once
                self._presence_cache[i] = hit
        return hit

    def _presence_dataset(self, split: str, augment: bool) -> PresenceDataset:
        idx = self.split_idx[split]
        return PresenceDataset(lambda j: self._load_presence(int(idx[j])), [self.items[i].has_fg for i in idx],
                               augment=augment)

    def train_dataset(self):
        if self.target == PRESENCE_TARGET:
            return self._presence_dataset("train", self.augment)
        return super().train_dataset()

    def eval_dataset(self, split: str):
        """Mask: ``(x, y, instances)`` per image; presence: ``(presence_input(image, presence_size), label)``."""
        if self.target == PRESENCE_TARGET:
            return self._presence_dataset(split, False)
        return super().eval_dataset(split)

