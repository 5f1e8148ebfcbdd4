"""``data=image_folder_lt``: a user's own ``root/<class>/*.png|jpg`` tree (torchvision ImageFolder).

Classes are the sub-folders in sorted order (ImageFolder's rule; class 0 is
the first name).  Validation and test come from ``val_root`` / ``test_root``
(trees with the same class folders) when given, else ``val_per_class`` and
``test_per_class`` images of every class are held out of ``root`` (balanced).
With ``ratio`` set, the remaining training images are subsampled to the
long-tail profile (classes in label order, fixed ``subset_seed``); with
``ratio: null`` the tree's own class counts are kept.  Images are decoded
lazily (a tree may not fit in memory), resized to ``image_size`` squares.
Training augmentation: ``data.augment`` / ``data.cutout`` (:mod:`imbal.data.augment`;
``autoaugment`` uses AutoAugment's ImageNet policy here).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imbal.data.base import DataModuleBase, balanced_holdout
from imbal.data.images import BadImages, open_image
from imbal.data.profile import indices_hash, longtail_counts, longtail_indices
from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.kinds import IMAGE, MULTICLASS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Samples(Dataset):
    """Rows ``indices`` of an ImageFolder, with their own transform (one scan of the tree for all splits)."""

    def __init__(self, folder, indices: np.ndarray, transform: Callable):
        self.folder, self.indices, self.transform = folder, np.asarray(indices, np.int64), transform
        self.targets = torch.as_tensor([folder.targets[i] for i in self.indices], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        path, target = self.folder.samples[int(self.indices[i])]
        return self.transform(self.folder.loader(path)), target


def folder_transforms(size: int, mean, std, *, augment: bool | str = True, cutout: int | None = None,
                      randaugment_n: int = 2, randaugment_m: int = 9):
    """(train, eval) transforms: resize to ``size`` x ``size``; training adds pad-crop and flip, and the
    ``augment`` policy and ``cutout`` of :func:`imbal.data.augment.train_transform`."""
    from torchvision.transforms import v2

    from imbal.data.augment import train_transform

    resize = [v2.ToImage(), v2.Resize((size, size), antialias=True)]
    finish = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    train = train_transform(augment, size=size, padding=max(1, size // 8), mean=mean, std=std, cifar=False,
                            cutout=cutout, randaugment_n=randaugment_n, randaugment_m=randaugment_m, pre=resize)
    return train, v2.Compose(resize + finish)


def load_rgb(path: str):
    """The ImageFolder loader: a PIL RGB image, 16-bit images scaled to 8 bits (:mod:`imbal.data.images`)."""
    return open_image(path, where="data 'image_folder_lt'", mode="RGB")


def scan_folder(root: str, key: str = "data.root", bad: BadImages | None = None):
    """torchvision ImageFolder over ``root``, refusing a missing root, no class folder or an empty class folder.

    With ``bad``, every file's header is checked (:func:`imbal.data.images.probe_image`) and
    ``data.on_bad_image`` applied: an unreadable file is refused, or dropped from the samples.
    """
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if not os.path.isdir(root):
        raise ImbalError(f"{key}={root} is not a directory; expected a tree {root}/<class>/*.png|jpg")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise ImbalError(f"{key}={root} has no class sub-folders; expected a tree {root}/<class>/*.png|jpg")
    for c in classes:
        folder = os.path.join(root, c)
        has_image = any(
            f.lower().endswith(IMG_EXTENSIONS) for _, _, files in os.walk(folder, followlinks=True) for f in files
        )
        if not has_image:
            raise ImbalError(
                f"class folder {folder} has no image (expected files ending in {', '.join(IMG_EXTENSIONS)}); "
                f"add images or remove the folder"
            )
    folder = ImageFolder(root, loader=load_rgb)
    if bad is not None:
        keep = [(p, t) for p, t in folder.samples if bad.check(p) is not None]
        if len(keep) < len(folder.samples):
            folder.samples = folder.imgs = keep
            folder.targets = [t for _, t in keep]
    return folder


class ImageFolderLTDataModule(DataModuleBase):
    """Long-tailed (or naturally imbalanced) image classification from class folders.

    Args:
        root: training tree ``root/<class>/*``.
        val_root, test_root: optional trees with the same class folders.
        val_per_class, test_per_class: images held out of ``root`` per class when
            ``val_root`` / ``test_root`` is not given.
        ratio: long-tail ratio n_max / n_min for subsampling the training
            images (>= 1), or null to keep them all.
        profile: ``exp`` or ``step``.  n_max: head-class size (default: the
            smallest class's available images).
        subset_seed: seed of the hold-out and the long-tail subset.
        image_size: side of the square the images are resized to.
        augment: ``basic`` (pad-crop + flip on training images), ``autoaugment`` (+ the ImageNet
            policy), ``randaugment``, ``trivialaugment`` or ``none``; true = basic, false = none.
        cutout: null, or the side in pixels of the square zeroed per training image.
        randaugment_n, randaugment_m: RandAugment's ops per image and magnitude (0..30).
        mean, std: normalisation (ImageNet's by default).
        on_device: decode and resize every image once into a uint8 tensor on the Trainer's
            device, then crop/flip/normalise whole batches there (:mod:`imbal.data.on_device`);
            for trees that fit in (device) memory: N x 3 x image_size^2 bytes.
        on_bad_image: ``error`` refuses an unreadable image (empty, truncated, dangling symlink,
            decompression bomb; a header check of every file at setup); ``skip`` leaves it out and
            counts it in ``DataStats.extra`` (:class:`imbal.data.images.BadImages`).
    """

    name = "image_folder_lt"
    modality = IMAGE
    task = MULTICLASS
    #: ``data.augment`` takes the policy names (:func:`imbal.data.augment.check_config`)
    augment_policies = True

    def __init__(
        self,
        *,
        root: str,
        val_root: str | None = None,
        test_root: str | None = None,
        val_per_class: int = 10,
        test_per_class: int = 10,
        ratio: float | None = None,
        profile: str = "exp",
        n_max: int | None = None,
        subset_seed: int = 0,
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
        on_device: bool = False,
        on_bad_image: str = "error",
    ):
        super().__init__()
        self.bad_images = BadImages(on_bad_image, where="data 'image_folder_lt'")
        self.on_device = bool(on_device)
        self._decoded: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._device_splits = None
        self.root = os.path.expanduser(str(root))
        self.val_root = os.path.expanduser(str(val_root)) if val_root else None
        self.test_root = os.path.expanduser(str(test_root)) if test_root else None
        self.val_per_class, self.test_per_class = int(val_per_class), int(test_per_class)
        self.ratio, self.profile, self.n_max = ratio, profile, n_max
        self.subset_seed = int(subset_seed)
        self.image_size = int(image_size)
        self.augment, self.cutout = augment, cutout
        self.randaugment_n, self.randaugment_m = randaugment_n, randaugment_m
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.sampler_cfg = sampler
        self.splits: dict[str, _Samples] = {}
        self.manifest: dict[str, Any] = {}
        self._stats: DataStats | None = None

    def _other_tree(self, path: str, key: str, classes: list[str]):
        folder = scan_folder(path, key, self.bad_images)
        if folder.classes != classes:
            raise ImbalError(
                f"{key}={path} has class folders {folder.classes[:5]}..., but data.root has {classes[:5]}...; "
                f"both trees must have the same class folders"
            )
        return folder

    def check_options(self) -> None:
        """Refuse bad options before scanning (in ``setup``: an error raised in ``__init__`` would
        reach the user wrapped by Hydra's instantiate over several lines)."""
        if self.ratio is not None:
            longtail_counts(1, 2, self.ratio, self.profile)  # ratio >= 1, known profile
        if self.image_size < 8:
            raise ImbalError(f"data.image_size must be >= 8 pixels, got {self.image_size}")
        from imbal.data.augment import augment_name, check_cutout, check_randaugment

        self.augment, self.cutout = augment_name(self.augment), check_cutout(self.cutout)
        self.randaugment_n, self.randaugment_m = check_randaugment(self.randaugment_n, self.randaugment_m)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.check_options()
        self.bad_images.skipped.clear()
        base = scan_folder(self.root, bad=self.bad_images)
        classes = list(base.classes)
        c = len(classes)
        y = np.asarray(base.targets, np.int64)
        rng = np.random.default_rng(self.subset_seed)
        pool = np.arange(len(y))
        held: dict[str, tuple[Any, np.ndarray, str]] = {}
        for split, other, per in (("test", self.test_root, self.test_per_class), ("val", self.val_root, self.val_per_class)):
            if other:
                f = self._other_tree(other, f"data.{split}_root", classes)
                held[split] = (f, np.arange(len(f)), other)
                continue
            for k in range(c):
                n = int((y[pool] == k).sum())
                if n <= per:
                    raise ImbalError(
                        f"class folder {os.path.join(self.root, classes[k])} has {n} images left, not more than "
                        f"data.{split}_per_class={per}; lower it or give data.{split}_root"
                    )
            rel_held, rel_rest = balanced_holdout(y[pool], per, rng)
            held[split] = (base, pool[rel_held], f"{per} per class held out of data.root")
            pool = pool[rel_rest]
        extra = self.bad_images.report()  # one line when unreadable images were skipped
        available = np.bincount(y[pool], minlength=c)
        counts = available.tolist()
        n_max = None
        if self.ratio is not None:
            n_max = int(self.n_max) if self.n_max is not None else int(available.min())
            counts = longtail_counts(n_max, c, self.ratio, self.profile)
            pool = pool[longtail_indices(y[pool], counts, seed=self.subset_seed)]
        train_tf, eval_tf = folder_transforms(self.image_size, self.mean, self.std, augment=self.augment,
                                              cutout=self.cutout, randaugment_n=self.randaugment_n,
                                              randaugment_m=self.randaugment_m)
        self.splits = {
            "train": _Samples(base, pool, train_tf),
            "val": _Samples(held["val"][0], held["val"][1], eval_tf),
            "test": _Samples(held["test"][0], held["test"][1], eval_tf),
        }
        self.class_names = classes
        self._stats = DataStats(
            task=self.task,
            num_classes=c,
            class_counts=[int(n) for n in counts],
            class_names=classes,
            modality=self.modality,
            input_shape=(3, self.image_size, self.image_size),
            num_train=int(sum(counts)),
            val_from="val_root" if self.val_root else "train",
            extra=extra,
        )
        self.manifest = {
            "root": os.path.abspath(self.root),
            "classes": classes,
            "ratio": self.ratio,
            "profile": self.profile if self.ratio is not None else None,
            "n_max": n_max,
            "class_counts": [int(n) for n in counts],
            "subset_seed": self.subset_seed,
            "train_indices_hash": indices_hash(pool),
            "val": held["val"][2],
            "val_indices_hash": indices_hash(held["val"][1]),
            "test": held["test"][2],
            "test_indices_hash": indices_hash(held["test"][1]),
            "image_size": self.image_size,
            **extra,
        }

    # -- data.on_device ---------------------------------------------------
    def decoded(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 ``[N, 3, S, S]`` images resized as the eval transform does, labels) of ``split``, decoded once."""
        if split not in self._decoded:
            from torchvision.transforms import v2

            ds = self.splits[split]
            resize = v2.Compose([v2.ToImage(), v2.Resize((self.image_size, self.image_size), antialias=True)])
            raw = _Samples(ds.folder, ds.indices, lambda img: resize(img).as_subclass(torch.Tensor))
            xs = [x for x, _ in DataLoader(raw, batch_size=64, num_workers=self.num_workers)]
            self._decoded[split] = (torch.cat(xs), ds.targets.clone())
        return self._decoded[split]

    def device_tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoded(split)

    def device_transform(self, split: str):
        from imbal.data.augment import augment_name, policy_transform
        from imbal.data.on_device import PadCropFlipNormalize

        train, name = split == "train", augment_name(self.augment)
        policy = policy_transform(name, cifar=False, randaugment_n=self.randaugment_n,
                                  randaugment_m=self.randaugment_m) if train else None
        return PadCropFlipNormalize(self.mean, self.std, padding=max(1, self.image_size // 8),
                                    augment=train and name != "none", policy=policy,
                                    cutout=self.cutout if train else None)

    def labels(self, split: str) -> torch.Tensor:
        return self.splits[split].targets
