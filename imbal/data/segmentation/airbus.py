"""``data=airbus``: Kaggle Airbus Ship Detection (RLE ship masks on 768x768 JPEGs), or a synthetic twin.

Splits, crops, augmentation and batches are those of
:class:`imbal.data.segmentation.base.SegmentationDataModule`; validation and
test batches carry the ship instances the Airbus F2 metric needs.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from imbal.data.paths import safe_child
from imbal.data.segmentation import synthetic as synthetic_set
from imbal.data.segmentation.base import SegmentationDataModule
from imbal.data.segmentation.datasets import SegItem
from imbal.data.segmentation.rle import check_rle, rle_decode_instances
from imbal.data.segmentation.transforms import read_rgb
from imbal.errors import ImbalError

#: The value of ``data.image_size``, ``data.crop`` and ``data.samples_per_epoch`` that picks the
#: default of the data in use (conf/data/airbus.yaml's default): :data:`REAL` with ``data.root``,
#: :data:`SYNTHETIC` without.
AUTO = "auto"
REAL = {"image_size": 768, "crop": 256, "samples_per_epoch": None}
#: ``image_size`` of the synthetic set is its generator's (``data.synthetic.image_size``).
SYNTHETIC = {"image_size": 128, "crop": 64, "samples_per_epoch": 32}


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
        crop: int | str | None = REAL["crop"],
        samples_per_epoch: int | str | None = REAL["samples_per_epoch"],
        max_images: int | None = None,
        synthetic: Mapping[str, Any] | None = None,
        cache_dir: str | None = None,
        **kwargs,
    ):
        root_path = None if root in (None, "") else Path(root).expanduser()
        defaults = SYNTHETIC if root_path is None else REAL
        super().__init__(
            crop=defaults["crop"] if _is_auto(crop) else crop,
            samples_per_epoch=defaults["samples_per_epoch"] if _is_auto(samples_per_epoch) else samples_per_epoch,
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
