"""The shared machinery of binary-mask data modules (:class:`SegmentationDataModule`).

Seeded image-level splits stratified by "has foreground", a per-epoch share of
foreground-free images, random crops (biased towards foreground on request),
flips and 90-degree rotations applied to image and mask together, and
``class_counts = [background pixels, foreground pixels]`` of the training split.

Batches: training ``(x [N,3,c,c] float, y [N,c,c] float 0/1)``; validation and
test ``(x [N,3,H,W], y [N,H,W], instances [N,H,W] int32)`` on whole images,
``instances`` labelling each true object (0 = background), e.g. for the Airbus F2 metric.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from imbal.data.base import DataModuleBase
from imbal.data.images import BadImages
from imbal.data.loaders import EpochWorkerSeed, eval_loader, train_loader
from imbal.data.segmentation.datasets import SegEvalDataset, SegItem, SegTrainDataset, stack_collate
from imbal.data.segmentation.samplers import EmptyShareSampler, stratified_split
from imbal.data.segmentation.transforms import resize_pair
from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.kinds import MASK, SEGMENTATION


class SegmentationDataModule(DataModuleBase):
    """Base of binary-mask data modules; subclasses implement :meth:`index`, :meth:`load_image`, :meth:`load_instances`.

    Args:
        crop: side of the random training crops (None: whole images).
        resize: side to which every image is resized before cropping, for training and
            evaluation (None: native size).  Images are resampled by area (PIL ``BOX``),
            instance masks by nearest neighbour; validation/test metrics (Dice, IoU, F2)
            are then computed at this resolution.  ``imbal predict`` resizes its inputs
            the same way and scales the predicted masks back to each image's size.
        val_fraction, test_fraction: shares of images held out, per stratum
            (with / without foreground).
        empty_share: share of foreground-free images in each training epoch
            (all foreground images are used every epoch, empties are redrawn);
            null: every image, as in the data.
        samples_per_epoch: training crops per epoch (null: every foreground
            image once plus its share of empties); see :class:`EmptyShareSampler`.
        fg_crop_p: probability that a crop of an image with foreground is centred on it.
        augment: flips and 90-degree rotations of the training crops.
        cache_images: keep decoded images in memory when there are at most this many.
        on_bad_image: ``error`` refuses an unreadable image found while indexing (empty, truncated,
            dangling symlink, decompression bomb); ``skip`` leaves it out and counts it in
            ``DataStats.extra`` (see :class:`imbal.data.images.BadImages`).
        batch_size, eval_batch_size, num_workers, seed, sampler: as every data module.  A
            ``sampler=`` other than ``none`` picks the training images only when both
            ``empty_share`` and ``samples_per_epoch`` are null; otherwise it is refused.
    """

    name = "segmentation"
    modality = MASK
    task = SEGMENTATION
    class_names = ["background", "foreground"]

    def __init__(
        self,
        *,
        crop: int | None = 256,
        resize: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        empty_share: float | None = 0.5,
        samples_per_epoch: int | None = None,
        fg_crop_p: float = 0.5,
        augment: bool = True,
        cache_images: int = 512,
        batch_size: int = 8,
        eval_batch_size: int = 2,
        num_workers: int = 0,
        seed: int = 0,
        sampler: Any = None,
        on_bad_image: str = "error",
    ):
        super().__init__()
        self.bad_images = BadImages(on_bad_image, where=f"data '{self.name}'")
        self.crop = None if crop is None else int(crop)
        self.resize = None if resize is None else int(resize)
        if self.resize is not None and self.resize < 8:
            raise ImbalError(f"data.resize must be null or a side of at least 8 pixels, got {resize}")
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.empty_share = None if empty_share is None else float(empty_share)
        self.samples_per_epoch = None if samples_per_epoch is None else int(samples_per_epoch)
        self.fg_crop_p, self.augment = float(fg_crop_p), bool(augment)
        self.cache_images = int(cache_images)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.num_workers, self.seed, self.sampler_cfg = int(num_workers), int(seed), sampler
        self._refuse_two_samplers(dict(sampler or {}).get("name", "none"))
        if self.empty_share is not None and not 0 <= self.empty_share < 1:
            raise ImbalError(f"data.empty_share must be in [0, 1) or null, got {self.empty_share}")
        self.items: list[SegItem] = []
        self.split_idx: dict[str, np.ndarray] = {}
        self.image_shape: tuple[int, int] = (0, 0)
        self.manifest: dict[str, Any] = {}
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._stats: DataStats | None = None

    def _refuse_two_samplers(self, sampler_name: Any) -> None:
        """The empty-share sampler draws the training images whenever empty_share or samples_per_epoch is set."""
        if sampler_name in (None, "none"):
            return
        given = {k: v for k, v in (("empty_share", self.empty_share), ("samples_per_epoch", self.samples_per_epoch))
                 if v is not None}
        if given:
            keys = " and ".join([*(f"data.{k}={v}" for k, v in given.items()), f"sampler={sampler_name}"])
            nulls = " ".join(f"data.{k}=null" for k in given)
            raise ImbalError(
                f"{keys} {'both' if len(given) == 1 else 'all'} choose the training images; "
                f"set {nulls} to use sampler {sampler_name}"
            )

    # -- to implement ----------------------------------------------------
    def index(self) -> list[SegItem]:
        """List the images (validating files); set ``self.image_shape``."""
        raise NotImplementedError

    def load_image(self, item: SegItem) -> np.ndarray:
        """uint8 image ``[H, W, 3]`` of one item."""
        raise NotImplementedError

    def load_instances(self, item: SegItem) -> np.ndarray:
        """int32 instance labels ``[H, W]`` (0 = background) of one item."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------
    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        hit = self._cache.get(i)
        if hit is not None:
            return hit
        item = self.items[i]
        pair = self.load_image(item), self.load_instances(item)
        if self.resize is not None:
            pair = resize_pair(*pair, self.resize)
        if len(self.items) <= self.cache_images:  # small data: decode each JPEG and its masks once
            self._cache[i] = pair
        return pair

    def split_indices(self, has_fg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, val, test) indices of ``self.items``: stratified by ``has_fg``, seeded (a subclass may group)."""
        return stratified_split(has_fg, self.val_fraction, self.test_fraction, self.seed)

    def _subset_loader(self, idx: np.ndarray) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
        idx = np.asarray(idx)
        return lambda j: self._load(int(idx[j]))

    def setup(self, stage: str | None = None) -> None:
        if self._stats is not None:
            return
        self.bad_images.skipped.clear()
        self.items = self.index()
        extra = self.bad_images.report()  # one line when unreadable images were skipped
        if not self.items:
            raise ImbalError(f"data '{self.name}': no images found")
        has = np.array([it.has_fg for it in self.items])
        tr, va, te = self.split_indices(has)
        if len(tr) == 0 or len(va) == 0:
            raise ImbalError(f"data '{self.name}': {len(self.items)} images are too few for a train and a val split")
        self.split_idx = {"train": tr, "val": va, "test": te if len(te) else va}
        h, w = self.image_shape if self.resize is None else (self.resize, self.resize)
        fg = int(sum(self.items[i].fg_pixels for i in tr))
        counts = [int(sum(self.items[i].n_pixels for i in tr)) - fg, fg]
        c = self.crop if self.crop is not None else None
        in_shape = (3, min(c, h), min(c, w)) if c else (3, h, w)
        self._stats = DataStats(
            task=self.task,
            num_classes=2,
            class_counts=counts,
            class_names=list(self.class_names),
            modality=self.modality,
            input_shape=in_shape,
            extra=extra,
        )
        self.manifest.update(
            {
                "images": {k: len(v) for k, v in self.split_idx.items()},
                "images_with_foreground": {k: int(has[v].sum()) for k, v in self.split_idx.items()},
                "image_shape": list(self.image_shape),
                "resize": self.resize,
                **extra,
                "crop": self.crop,
                "empty_share": self.empty_share,
                "class_counts": counts,
                "val_ids": [self.items[i].image_id for i in va],
                "test_ids": [self.items[i].image_id for i in te],
            }
        )

    def train_dataset(self) -> SegTrainDataset:
        tr = self.split_idx["train"]
        return SegTrainDataset(self._subset_loader(tr), len(tr), crop=self.crop, augment=self.augment,
                               fg_crop_p=self.fg_crop_p)

    def eval_dataset(self, split: str) -> SegEvalDataset:
        idx = self.split_idx[split]
        return SegEvalDataset(self._subset_loader(idx), len(idx))

    def split_ids(self, split: str) -> list[str]:
        """The image ids of a split (Airbus ImageIds, mask-folder file names), in the eval loader's order."""
        if split not in self.split_idx:
            raise ImbalError(f"data '{self.name}': split '{split}' unknown; expected one of: "
                             f"{', '.join(self.split_idx) or '(setup() not run yet)'}")
        return [self.items[i].image_id for i in self.split_idx[split]]

    def labels(self, split: str) -> torch.Tensor:
        """1 for an image with foreground, else 0 (what a class-aware ``sampler=`` weighs)."""
        return torch.tensor([self.items[i].has_fg for i in self.split_idx[split]], dtype=torch.long)

    def loader(self, split: str) -> DataLoader:
        """Training: the empty-share sampler (or ``sampler=``) over random crops; val/test: whole images in order."""
        if split != "train":
            return eval_loader(self.eval_dataset(split), batch_size=self.eval_batch_size, num_workers=self.num_workers,
                               collate_fn=stack_collate)
        ds, has = self.train_dataset(), self.labels("train")
        if self.empty_share is not None or self.samples_per_epoch is not None:
            sampler = EmptyShareSampler(has.bool().tolist(), self.empty_share, seed=self.seed,
                                        num_samples=self.samples_per_epoch)
            # fresh workers seeded by (seed, epoch) each epoch, as train_loader's: a resumed run crops alike
            return DataLoader(
                ds,
                batch_size=self.batch_size,
                sampler=sampler,
                num_workers=self.num_workers,
                persistent_workers=False,
                worker_init_fn=EpochWorkerSeed(self.seed, sampler) if self.num_workers > 0 else None,
                collate_fn=stack_collate,
            )
        return train_loader(ds, labels=has, batch_size=self.batch_size, seed=self.seed, sampler_cfg=self.sampler_cfg,
                            num_workers=self.num_workers, collate_fn=stack_collate)
