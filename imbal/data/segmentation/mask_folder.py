"""``data=mask_folder``: images and binary PNG masks in two folders, paired by file name (stem).

For users whose masks are not run-length encoded, e.g. the ISBI 2012 membrane
sample (``image/0.png`` with ``label/0.png``, membrane = label value 0:
``data.foreground=0``).  Splits, crops, augmentation and batches are those of
:class:`imbal.data.segmentation.base.SegmentationDataModule`; the "instances" of the
evaluation batches are the connected components of each mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imbal.data.segmentation.base import SegmentationDataModule
from imbal.data.segmentation.datasets import SegItem
from imbal.data.segmentation.transforms import IMAGE_SUFFIXES, read_rgb
from imbal.errors import ImbalError


class MaskFolderDataModule(SegmentationDataModule):
    """Images under ``<root>/<images>``, masks under ``<root>/<masks>`` with the same stem.

    Args:
        root: the folder holding both sub-folders.
        images, masks: sub-folder names.
        foreground: mask value that marks foreground; null: any non-zero value
            (the mask must then hold only 0 and one other value, e.g. 0/1 or 0/255).
        Others: see :class:`imbal.data.segmentation.base.SegmentationDataModule`.
    """

    name = "mask_folder"

    def __init__(self, *, root: str | None = None, images: str = "image", masks: str = "label",
                 foreground: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if root in (None, ""):
            raise ImbalError(
                "data 'mask_folder' needs data.root: a folder with an image folder and a mask folder "
                "(data.images, data.masks), e.g. data.root=../shared/data/isbi2012_membrane"
            )
        self.root = Path(root).expanduser()
        self.images_name, self.masks_name = images, masks
        self.foreground = None if foreground is None else int(foreground)
        self._mask_paths: dict[str, Path] = {}

    def _binary(self, path: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as im:
                m = np.array(im.convert("L") if im.mode not in ("L", "1", "P", "I", "I;16") else im)
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImbalError(f"data 'mask_folder': cannot read mask {path} ({exc}); expected a PNG mask") from None
        if m.ndim != 2:
            raise ImbalError(f"data 'mask_folder': mask {path} has shape {m.shape}; expected one channel")
        if self.foreground is not None:
            return m == self.foreground
        values = np.unique(m)
        if len(values) > 2 or (len(values) == 2 and values[0] != 0):
            raise ImbalError(
                f"data 'mask_folder': mask {path} holds values {values[:6].tolist()}; expected 0 and one "
                f"foreground value (or set data.foreground)"
            )
        return m != 0

    def index(self) -> list[SegItem]:
        from PIL import Image

        img_dir, mask_dir = self.root / self.images_name, self.root / self.masks_name
        for d in (img_dir, mask_dir):
            if not d.is_dir():
                raise ImbalError(f"data 'mask_folder': folder {d} not found (data.root={self.root})")
        images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        items, shapes = [], set()
        for p in images:
            if p.stem not in masks:
                raise ImbalError(f"data 'mask_folder': image {p} has no mask {mask_dir / p.stem}.* ; expected one per image")
            m = self._binary(masks[p.stem])
            try:
                with Image.open(p) as im:
                    size = (im.height, im.width)
            except (OSError, ValueError, SyntaxError) as exc:
                raise ImbalError(f"data 'mask_folder': cannot read image {p} ({exc})") from None
            if size != m.shape:
                raise ImbalError(f"data 'mask_folder': image {p} is {size[0]}x{size[1]} but its mask is {m.shape[0]}x{m.shape[1]}")
            shapes.add(size)
            self._mask_paths[p.name] = masks[p.stem]
            items.append(SegItem(p.name, bool(m.any()), int(m.sum()), m.size))
        if len(shapes) > 1:
            self.eval_batch_size = 1  # whole images of different sizes cannot be stacked
        self.image_shape = max(shapes) if shapes else (0, 0)
        self.manifest.update({"root": str(self.root), "foreground": self.foreground})
        return items

    def load_image(self, item: SegItem) -> np.ndarray:
        return read_rgb(self.root / self.images_name / item.image_id, where="data 'mask_folder'")

    def load_instances(self, item: SegItem) -> np.ndarray:
        from imbal.metrics.segmentation import label_components

        lab, _ = label_components(self._binary(self._mask_paths[item.image_id]))
        return lab.astype(np.int32)
