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

from imbal.data.images import BadImageError, read_mask_values
from imbal.data.paths import safe_child
from imbal.data.segmentation.base import SegmentationDataModule
from imbal.data.segmentation.datasets import SegItem
from imbal.data.segmentation.transforms import IMAGE_SUFFIXES, read_rgb
from imbal.errors import ImbalError


class MaskFolderDataModule(SegmentationDataModule):
    """Images under ``<root>/<images>``, masks under ``<root>/<masks>`` with the same stem.

    Args:
        root: the folder holding both sub-folders.
        images, masks: sub-folder names.
        foreground: mask value that marks foreground, compared with the stored values (a 16-bit
            mask's are not rescaled: e.g. 65535); null: any non-zero value (the mask must then hold
            only 0 and one other value, e.g. 0/1, 0/255 or 0/65535).
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
        """The 0/1 mask of a mask file, from its stored values (a 16-bit mask is not rescaled, so 0/65535
        and 0/1 give the same mask as 0/255)."""
        m = read_mask_values(path, where="data 'mask_folder'")
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
        img_dir, mask_dir = self.root / self.images_name, self.root / self.masks_name
        for d in (img_dir, mask_dir):
            if not d.is_dir():
                raise ImbalError(f"data 'mask_folder': folder {d} not found (data.root={self.root})")
        # a file name found in a folder is plain; safe_child refuses a symlink that leads out of data.root
        images = sorted(safe_child(img_dir, p.name, what="data 'mask_folder': image", within=self.root)
                        for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        masks = {p.stem: safe_child(mask_dir, p.name, what="data 'mask_folder': mask", within=self.root)
                 for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        items, shapes = [], set()
        for p in images:
            if p.stem not in masks:
                raise ImbalError(f"data 'mask_folder': image {p} has no mask {mask_dir / p.stem}.* ; expected one per image")
            size = self.bad_images.check(p)
            if size is None or self.bad_images.check(masks[p.stem]) is None:
                continue
            try:
                m = self._binary(masks[p.stem])
            except BadImageError as exc:  # passed the header check, fails to decode
                if self.bad_images.policy == "error":
                    raise
                self.bad_images.skipped.append((str(masks[p.stem]), str(exc)))
                continue
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
