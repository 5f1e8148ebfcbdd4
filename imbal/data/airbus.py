"""``data=airbus``: Kaggle Airbus Ship Detection (RLE ship masks on 768x768 JPEGs), or a synthetic twin.

Also the shared machinery of binary-mask data modules (:class:`SegmentationDataModule`):
seeded image-level splits stratified by "has foreground", a per-epoch share of
foreground-free images, random crops (biased towards foreground on request),
flips and 90-degree rotations applied to image and mask together, and
``class_counts = [background pixels, foreground pixels]`` of the training split.

Batches: training ``(x [N,3,c,c] float, y [N,c,c] float 0/1)``; validation and
test ``(x [N,3,H,W], y [N,H,W], instances [N,H,W] int32)`` on whole images,
``instances`` labelling each true ship (0 = background) for the Airbus F2 metric.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from imbal.data.loaders import eval_loader, train_loader
from imbal.data.rle import check_rle, rle_decode_instances
from imbal.data.base import DataModuleBase
from imbal.data.stats import DataStats
from imbal.errors import ImbalError

#: Images are scaled to [-1, 1]: x = (pixel / 255 - MEAN) / STD.
MEAN, STD = 0.5, 0.5


def to_tensor_image(img: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, C]`` -> float ``[C, H, W]`` scaled to [-1, 1].

    In NumPy, one fused pass per channel-first copy: in a DataLoader worker (or the main
    process between steps) torch's intra-op threads would each wake for a tiny tensor
    op, which on a busy 2-core machine cost 10-40 ms per crop instead of ~0.1 ms.
    """
    x = np.multiply(np.asarray(img).transpose(2, 0, 1), np.float32(1.0 / (255.0 * STD)), dtype=np.float32)
    x -= np.float32(MEAN / STD)
    return torch.from_numpy(x)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_tensor_image` (float in [0, 1])."""
    return (x * STD + MEAN).clamp(0, 1)


def read_rgb(path: Path, *, where: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as uint8 ``[H, W, 3]``; a one-line ImbalError if unreadable or of the wrong size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.array(im.convert("RGB"))  # a writable copy
    except FileNotFoundError:
        raise ImbalError(f"{where}: image {path} does not exist") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ImbalError(f"{where}: cannot read image {path} ({exc}); expected a readable RGB image") from None
    if size is not None and arr.shape[:2] != tuple(size):
        raise ImbalError(
            f"{where}: image {path} is {arr.shape[0]}x{arr.shape[1]}, expected {size[0]}x{size[1]} "
            f"(set data.image_size)"
        )
    return arr


@dataclass
class SegItem:
    """One image of a segmentation data set."""

    image_id: str
    has_fg: bool
    fg_pixels: int
    n_pixels: int
    extra: Mapping[str, Any] = field(default_factory=dict)


def stratified_split(
    has_fg: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, val, test), split per stratum (with / without foreground) with a seeded permutation.

    Each stratum of at least 3 images gives at least one image to val and to test.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ImbalError(
            f"val_fraction {val_fraction} and test_fraction {test_fraction} must be in [0, 1) with a sum below 1"
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for value in (True, False):
        idx = rng.permutation(np.flatnonzero(has_fg == value))
        n = len(idx)
        n_val = int(round(val_fraction * n))
        n_test = int(round(test_fraction * n))
        if n >= 3:
            n_val = max(n_val, 1 if val_fraction > 0 else 0)
            n_test = max(n_test, 1 if test_fraction > 0 else 0)
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val : n_val + n_test])
        parts["train"].append(idx[n_val + n_test :])
    return tuple(np.sort(np.concatenate(parts[k])).astype(np.int64) for k in ("train", "val", "test"))


class EmptyShareSampler(Sampler[int]):
    """Training images of one epoch with a given share of foreground-free ("empty") images.

    ``share`` is the fraction of empty images in an epoch.  Without
    ``num_samples`` every image with foreground is used once plus
    ``k = n_fg * share / (1 - share)`` empties (capped at the number available);
    with ``num_samples`` that many images are drawn, ``round(num_samples * share)``
    of them empty (with replacement only where a group is too small).  A fresh
    draw each epoch (``set_epoch``, which Lightning calls), seeded by ``(seed, epoch)``.
    ``share=None`` keeps the data's own share (a uniform draw).
    """

    def __init__(self, has_fg: Sequence[bool], share: float | None, *, seed: int = 0, num_samples: int | None = None):
        if share is not None and not 0.0 <= share < 1.0:
            raise ImbalError(f"data.empty_share must be in [0, 1) or null, got {share}")
        if num_samples is not None and int(num_samples) < 1:
            raise ImbalError(f"data.samples_per_epoch must be >= 1 or null, got {num_samples}")
        has = np.asarray(has_fg, dtype=bool)
        self.fg, self.empty = np.flatnonzero(has), np.flatnonzero(~has)
        self.share, self.num_samples = share, None if num_samples is None else int(num_samples)
        if self.num_samples is not None:
            n = self.num_samples
            if share is None or not len(self.fg) or not len(self.empty):
                self.k_fg, self.k_empty = None, n  # uniform over all images
            else:
                self.k_empty = int(round(n * share))
                self.k_fg = n - self.k_empty
        elif share is None or not len(self.fg):
            self.k_fg, self.k_empty = None, len(has)
        else:
            self.k_fg = len(self.fg)
            self.k_empty = min(int(round(len(self.fg) * share / (1.0 - share))), len(self.empty))
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.k_empty + (self.k_fg or 0)

    @staticmethod
    def _draw(rng: np.random.Generator, pool: np.ndarray, k: int) -> np.ndarray:
        if k == len(pool):
            return pool
        return rng.choice(pool, k, replace=k > len(pool))

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.k_fg is None:
            chosen = self._draw(rng, np.concatenate([self.fg, self.empty]), self.k_empty)
        else:
            chosen = np.concatenate([self._draw(rng, self.fg, self.k_fg), self._draw(rng, self.empty, self.k_empty)])
        return iter(rng.permutation(chosen).tolist())


def resize_image(img: np.ndarray, side: int) -> np.ndarray:
    """A uint8 ``[H, W, 3]`` image resized to ``side`` x ``side`` by area (PIL ``BOX``)."""
    from PIL import Image

    if img.shape[:2] == (side, side):
        return img
    return np.asarray(Image.fromarray(img).resize((side, side), Image.Resampling.BOX))


def resize_pair(img: np.ndarray, inst: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """An image (area resampling) and its instance labels (nearest neighbour) resized to ``side`` x ``side``."""
    from PIL import Image

    if inst.shape[:2] != (side, side):
        inst = np.asarray(Image.fromarray(inst.astype(np.int32)).resize((side, side), Image.Resampling.NEAREST))
    return resize_image(img, side), inst.astype(np.int32, copy=False)


def stack_collate(batch: Sequence[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """``default_collate`` for tuples of same-shape CPU tensors, stacked by NumPy.

    ``torch.stack`` of a batch of crops parallelises a memory copy over torch's
    intra-op threads; on a busy 2-core machine waking them cost ~100 ms per batch of
    16 crops (measured), against ~1 ms for NumPy's single-threaded copy.
    """
    return tuple(torch.from_numpy(np.stack([item[k].numpy() for item in batch])) for k in range(len(batch[0])))


class SegTrainDataset(Dataset):
    """Random crops with flips and 90-degree rotations, image and mask together.

    ``load(i) -> (uint8 [H,W,3], int32 instance labels [H,W])``.  With
    probability ``fg_crop_p`` (and foreground present) the crop is centred, with
    jitter, on a random foreground pixel; otherwise it is uniform.
    """

    def __init__(self, load: Callable[[int], tuple[np.ndarray, np.ndarray]], n: int, *, crop: int | None,
                 augment: bool = True, fg_crop_p: float = 0.5):
        self.load, self.n, self.crop, self.augment, self.fg_crop_p = load, n, crop, augment, float(fg_crop_p)
        self._fg: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        img, inst = self.load(i)
        mask = inst > 0
        # torch's RNG is seeded per run and per worker by Lightning (seed_everything(workers=True))
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        h, w = mask.shape
        c = self.crop
        if c is not None and (c < h or c < w):
            ch, cw = min(c, h), min(c, w)
            fg = self._fg.get(i)
            if fg is None:
                fg = self._fg[i] = np.nonzero(mask)  # foreground pixels of image i, found once
            ys, xs = fg
            if len(ys) and rng.random() < self.fg_crop_p:
                j = rng.integers(len(ys))
                r0 = int(ys[j]) - ch // 2 + int(rng.integers(-ch // 4, ch // 4 + 1))
                c0 = int(xs[j]) - cw // 2 + int(rng.integers(-cw // 4, cw // 4 + 1))
            else:
                r0, c0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            r0, c0 = min(max(r0, 0), h - ch), min(max(c0, 0), w - cw)
            img, mask = img[r0 : r0 + ch, c0 : c0 + cw], mask[r0 : r0 + ch, c0 : c0 + cw]
        if self.augment:
            if rng.random() < 0.5:
                img, mask = img[:, ::-1], mask[:, ::-1]
            if rng.random() < 0.5:
                img, mask = img[::-1], mask[::-1]
            k = int(rng.integers(4))
            if k:
                img, mask = np.rot90(img, k), np.rot90(mask, k)
        return to_tensor_image(img), torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))


class SegEvalDataset(Dataset):
    """Whole images: ``(x, y, instances)``."""

    def __init__(self, load: Callable[[int], tuple[np.ndarray, np.ndarray]], n: int):
        self.load, self.n = load, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        img, inst = self.load(i)
        return to_tensor_image(img), torch.from_numpy(inst > 0).float(), torch.from_numpy(inst.astype(np.int32))


class SegmentationDataModule(DataModuleBase):
    """Base of binary-mask data modules; subclasses implement :meth:`index` and :meth:`load_item`.

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
            null: every image, as in the data (then ``sampler=`` may pick images).
        samples_per_epoch: training crops per epoch (null: every foreground
            image once plus its share of empties); see :class:`EmptyShareSampler`.
        fg_crop_p: probability that a crop of an image with foreground is centred on it.
        augment: flips and 90-degree rotations of the training crops.
        cache_images: keep decoded images in memory when there are at most this many.
        batch_size, eval_batch_size, num_workers, seed, sampler: as every data module.
    """

    name = "segmentation"
    modality = "mask"
    task = "segmentation"
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
    ):
        super().__init__()
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
        sampler_name = dict(sampler or {}).get("name", "none")
        if self.empty_share is not None and sampler_name not in (None, "none"):
            raise ImbalError(
                f"data.empty_share={self.empty_share} and sampler={sampler_name} both choose the training images; "
                f"set data.empty_share=null to use sampler {sampler_name}"
            )
        if self.empty_share is not None and not 0 <= self.empty_share < 1:
            raise ImbalError(f"data.empty_share must be in [0, 1) or null, got {self.empty_share}")
        self.items: list[SegItem] = []
        self.split_idx: dict[str, np.ndarray] = {}
        self.image_shape: tuple[int, int] = (0, 0)
        self.manifest: dict[str, Any] = {}
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._stats: DataStats | None = None

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

    def _subset_loader(self, idx: np.ndarray) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
        idx = np.asarray(idx)
        return lambda j: self._load(int(idx[j]))

    def setup(self, stage: str | None = None) -> None:
        if self._stats is not None:
            return
        self.items = self.index()
        if not self.items:
            raise ImbalError(f"data '{self.name}': no images found")
        has = np.array([it.has_fg for it in self.items])
        tr, va, te = stratified_split(has, self.val_fraction, self.test_fraction, self.seed)
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
        )
        self.manifest.update(
            {
                "images": {k: len(v) for k, v in self.split_idx.items()},
                "images_with_foreground": {k: int(has[v].sum()) for k, v in self.split_idx.items()},
                "image_shape": list(self.image_shape),
                "resize": self.resize,
                "crop": self.crop,
                "empty_share": self.empty_share,
                "class_counts": counts,
                "val_ids": [self.items[i].image_id for i in va],
                "test_ids": [self.items[i].image_id for i in te],
            }
        )

    def train_dataset(self) -> SegTrainDataset:
        tr = self.split_idx["train"]
        return SegTrainDataset(self._subset_loader(tr), len(tr), crop=self.crop, augment=self.augment, fg_crop_p=self.fg_crop_p)

    def eval_dataset(self, split: str) -> SegEvalDataset:
        idx = self.split_idx[split]
        return SegEvalDataset(self._subset_loader(idx), len(idx))

    def train_dataloader(self) -> DataLoader:
        ds = self.train_dataset()
        has = [self.items[i].has_fg for i in self.split_idx["train"]]
        if self.empty_share is not None or self.samples_per_epoch is not None:
            return DataLoader(
                ds,
                batch_size=self.batch_size,
                sampler=EmptyShareSampler(has, self.empty_share, seed=self.seed, num_samples=self.samples_per_epoch),
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
                collate_fn=stack_collate,
            )
        return train_loader(
            ds, labels=torch.tensor(has, dtype=torch.long), batch_size=self.batch_size, seed=self.seed,
            sampler_cfg=self.sampler_cfg, num_workers=self.num_workers, collate_fn=stack_collate,
        )

    def val_dataloader(self) -> DataLoader:
        return eval_loader(self.eval_dataset("val"), batch_size=self.eval_batch_size, num_workers=self.num_workers,
                           collate_fn=stack_collate)

    def test_dataloader(self) -> DataLoader:
        return eval_loader(self.eval_dataset("test"), batch_size=self.eval_batch_size, num_workers=self.num_workers,
                           collate_fn=stack_collate)


def _announce(msg: str) -> None:
    """One warning line on stderr (Hydra sends logging to the run's log file only)."""
    import logging

    if logging.getLogger().handlers:  # e.g. Hydra's run log file
        logging.getLogger("imbal").warning(msg)
    print(f"imbal: warning: {msg}", file=sys.stderr, flush=True)


#: Keys of ``data.synthetic`` that set the run (replacing the data-level value) rather than the generator.
SYNTHETIC_RUN_KEYS = ("crop", "samples_per_epoch")


class AirbusDataModule(SegmentationDataModule):
    """Kaggle Airbus Ship Detection: ``<root>/<images>/*.jpg`` and ``<root>/<csv>`` (``ImageId,EncodedPixels``).

    One CSV row per ship (run-length encoded, see :mod:`imbal.data.rle`) and
    one row with an empty value per ship-free image.  The training target is
    the union of an image's ships; validation and test also carry the
    instance labels the Airbus F2 metric needs.

    Without ``root`` a synthetic data set in the same layout is generated once
    into a cache directory (``cache_dir``, else ``$IMBAL_CACHE`` or
    ``~/.cache/imbal``) and read by the same code; its ``image_size`` and
    ``crop`` replace the real ones.

    Args:
        root: folder with the Kaggle files, or null for the synthetic set.
        csv, images: names of the CSV and of the image folder under ``root``.
        image_size: side of the images (768 on Kaggle); every JPEG is checked.
        max_images: use only this many images (a stratified, seeded subset), for quick runs.
        synthetic: used when ``root`` is null: generator parameters (``n_images``,
            ``image_size``, ``ship_image_share``, ``seed``, see
            :func:`imbal.data.synth_airbus.generate`) and ``crop`` and
            ``samples_per_epoch``, which replace the data-level values.
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
        image_size: int = 768,
        max_images: int | None = None,
        synthetic: Mapping[str, Any] | None = None,
        cache_dir: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.root = None if root in (None, "") else Path(root).expanduser()
        self.csv_name, self.images_name = csv, images
        self.image_size = int(image_size)
        self.max_images = None if max_images is None else int(max_images)
        self.synthetic = dict(synthetic or {})
        self.cache_dir = cache_dir
        self.is_synthetic = self.root is None
        self._announced = False

    def prepare_data(self) -> None:
        if self.root is None:
            self._synthetic_root()

    def _synthetic_root(self) -> Path:
        from imbal.data import synth_airbus

        params = {k: v for k, v in self.synthetic.items() if k not in SYNTHETIC_RUN_KEYS}
        params.setdefault("image_size", 128)
        path, generated = synth_airbus.cached(self.cache_dir, **params)
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

        root = self.root
        if root is None:
            root = self._synthetic_root()
            self.image_size = int(self.synthetic.get("image_size", 128))
            if "crop" in self.synthetic:
                self.crop = None if self.synthetic["crop"] is None else int(self.synthetic["crop"])
            if "samples_per_epoch" in self.synthetic:
                spe = self.synthetic["samples_per_epoch"]
                self.samples_per_epoch = None if spe is None else int(spe)
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
        for image_id in ids:
            if not (img_dir / image_id).is_file():
                raise ImbalError(
                    f"data 'airbus': image {img_dir / image_id} for {csv.name} row {first_row[image_id]} "
                    f"(ImageId {image_id}) does not exist"
                )
        items = [
            SegItem(i, bool(by_id[i]), sum(check_rle(r, shape) for r in by_id[i]), s * s, {"rles": by_id[i]})
            for i in ids
        ]
        if self.max_images is not None and self.max_images < len(items):
            has = np.array([it.has_fg for it in items])
            rng = np.random.default_rng(self.seed)
            # stratified subset: the same share of ship images as the whole
            n_fg = int(round(self.max_images * has.mean()))
            keep = np.concatenate([
                rng.choice(np.flatnonzero(has), min(n_fg, int(has.sum())), replace=False),
                rng.choice(np.flatnonzero(~has), min(self.max_images - n_fg, int((~has).sum())), replace=False),
            ])
            items = [items[i] for i in np.sort(keep)]
        self.image_shape = shape
        self.manifest.update({"root": str(root), "synthetic": self.is_synthetic, "csv": str(csv)})
        return items

    def load_image(self, item: SegItem) -> np.ndarray:
        return read_rgb(self.data_root / self.images_name / item.image_id, where="data 'airbus'", size=self.image_shape)

    def load_instances(self, item: SegItem) -> np.ndarray:
        return rle_decode_instances(item.extra["rles"], self.image_shape, image_id=item.image_id)
