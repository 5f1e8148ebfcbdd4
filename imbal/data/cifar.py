"""``data=cifar10_lt`` / ``data=cifar100_lt``: long-tailed CIFAR (Cao et al. 2019; Cui et al. 2019).

Reads torchvision's CIFAR python format from ``root``::

    root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    root/cifar-100-python/{train, test, meta}

The training split is subsampled to the long-tail profile of
:func:`imbal.data.profile.longtail_counts` (class 0 the head, classes in label
order) with a fixed ``subset_seed``; the test split is untouched (balanced).
Validation (``val_from``):

* ``test``: the test set itself, the protocol of the LDAM / CB / LA papers'
  reference code (model selection on test; comparable to their tables);
* ``train``: ``val_per_class`` images per class held out from the training
  files *before* the long-tail subset is drawn from the rest (balanced,
  disjoint from train and test, as the balanced validation set of ImageNet-LT,
  Liu et al. 2019).  The head class then has ``5000 - val_per_class`` images
  (CIFAR-10) to give, so the default ``n_max`` and the training counts are
  smaller than the papers' (recorded in the manifest).

Augmentation of the training split (``data.augment``, :mod:`imbal.data.augment`):
``basic`` = pad 4 + random 32x32 crop + horizontal flip + normalise (the LDAM
reference code's ``transform_train``); ``autoaugment`` adds AutoAugment's CIFAR-10
policy, ``randaugment`` RandAugment, ``trivialaugment`` TrivialAugmentWide, after the
flip; ``data.cutout`` a square of zeros after the normalisation.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import TensorDataset

from imbal.data.base import InMemoryDataModule, balanced_holdout
from imbal.data.profile import check_n_max, indices_hash, longtail_counts, longtail_indices
from imbal.errors import ImbalError
from imbal.kinds import IMAGE, MULTICLASS

#: Normalisation of the LDAM reference code (``cifar_train.py``), used there for
#: CIFAR-10 and CIFAR-100 alike; kept for both so the paper recipes match it.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
VAL_FROM = ("test", "train")


class TransformTensorDataset(TensorDataset):
    """A :class:`TensorDataset` of (uint8 images ``[N, C, H, W]``, labels) that transforms each image.

    Keeps ``.tensors`` (the base data module reads labels and shapes there).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None):
        super().__init__(images, labels)
        self.transform = transform

    def __getitem__(self, index: int):
        x, y = self.tensors[0][index], self.tensors[1][index]
        return (self.transform(x) if self.transform is not None else x), y


def cifar_transforms(mean=CIFAR_MEAN, std=CIFAR_STD, *, augment: bool | str = True, size: int = 32,
                     cutout: int | None = None, randaugment_n: int = 2, randaugment_m: int = 9):
    """(train, eval) transforms on uint8 CHW tensors (torchvision.transforms.v2); ``augment`` is a
    :mod:`imbal.data.augment` name (true = ``basic``, false = ``none``)."""
    from torchvision.transforms import v2

    from imbal.data.augment import train_transform

    finish = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    train = train_transform(augment, size=size, padding=4, mean=mean, std=std, cifar=True, cutout=cutout,
                            randaugment_n=randaugment_n, randaugment_m=randaugment_m)
    return train, v2.Compose(finish)


class CIFARLTDataModule(InMemoryDataModule):
    """Long-tailed CIFAR-10/100 training split, balanced test split, validation per ``val_from``.

    Args:
        root: directory holding ``cifar-10-batches-py/`` or ``cifar-100-python/``.
        download: fetch the archive with torchvision when the files are missing.
        ratio: imbalance ratio n_max / n_min (>= 1; 1 keeps the balanced set).
        profile: ``exp`` (``n_i = int(n_max * ratio^(-i/(C-1)))``) or ``step``.
        n_max: head-class size (default: all, 5000 for CIFAR-10, 500 for CIFAR-100).
        subset_seed: seed of the long-tail subset and the held-out validation
            images; fixed (0) by default so every run seed trains on the same subset.
        val_from: ``test`` or ``train`` (see the module docstring).
        val_per_class: validation images per class when ``val_from=train``
            (default 100 for CIFAR-10, 50 for CIFAR-100).
        augment: ``basic`` (pad-crop-flip), ``autoaugment`` (+ the CIFAR-10 policy), ``randaugment``,
            ``trivialaugment`` or ``none``; true = basic, false = none (:mod:`imbal.data.augment`).
        cutout: null, or the side in pixels of the square zeroed per training image (16: DeVries & Taylor).
        randaugment_n, randaugment_m: RandAugment's ops per image and magnitude (0..30).
        on_device: the splits as uint8 tensors on the Trainer's device, augmented per batch
            there (:mod:`imbal.data.on_device`); default off.
        check_md5: also compare the files with torchvision's published MD5 sums
            (off by default so small files in the same format, e.g. in tests, load).
        batch_size, num_workers, seed, sampler: as in :class:`InMemoryDataModule`.
    """

    name = "cifar_lt"
    modality = IMAGE
    task = MULTICLASS
    #: set by the subclasses
    num_classes_: int = 0
    title = ""
    archive_url = ""
    default_val_per_class = 100
    #: ``data.augment`` takes the policy names (:func:`imbal.data.augment.check_config`)
    augment_policies = True

    def __init__(
        self,
        *,
        root: str = "data",
        download: bool = False,
        ratio: float = 100.0,
        profile: str = "exp",
        n_max: int | None = None,
        subset_seed: int = 0,
        val_from: str = "test",
        val_per_class: int | None = None,
        augment: bool | str = "basic",
        cutout: int | None = None,
        randaugment_n: int = 2,
        randaugment_m: int = 9,
        check_md5: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.root = os.path.expanduser(str(root))
        self.download = bool(download)
        self.ratio = ratio
        self.profile = profile
        if n_max is not None:
            check_n_max(n_max)  # before any file is read
        self.n_max = n_max
        self.subset_seed = int(subset_seed)
        self.val_from = val_from
        self.val_per_class = int(val_per_class if val_per_class is not None else self.default_val_per_class)
        self.augment, self.cutout = augment, cutout
        self.randaugment_n, self.randaugment_m = randaugment_n, randaugment_m
        self.check_md5 = bool(check_md5)

    # -- files -----------------------------------------------------------
    def _tv_class(self):
        from torchvision.datasets import CIFAR10, CIFAR100

        return CIFAR10 if self.num_classes_ == 10 else CIFAR100

    def _reader(self):
        """torchvision's CIFAR reader; without ``check_md5`` its integrity check is file existence."""
        base = self._tv_class()
        if self.check_md5:
            return base

        class _Reader(base):  # same files, same parser; md5=None makes check_integrity test existence only
            train_list = [[f, None] for f, _ in base.train_list]
            test_list = [[f, None] for f, _ in base.test_list]
            meta = {**base.meta, "md5": None}

        return _Reader

    def expected_files(self) -> list[str]:
        base = self._tv_class()
        return [f for f, _ in base.train_list + base.test_list] + [base.meta["filename"]]

    def folder(self) -> str:
        return os.path.join(self.root, self._tv_class().base_folder)

    def _missing(self) -> list[str]:
        return [f for f in self.expected_files() if not os.path.isfile(os.path.join(self.folder(), f))]

    def prepare_data(self) -> None:
        """With ``download``: fetch and extract the archive with torchvision (MD5-checked) if files are missing."""
        if not self.download or not self._missing():
            return
        from torchvision.datasets import utils as tv_utils

        base = self._tv_class()
        try:
            tv_utils.download_and_extract_archive(base.url, self.root, filename=base.filename, md5=base.tgz_md5)
        except Exception as exc:  # network, disk, checksum
            raise ImbalError(
                f"data '{self.name}': download of {self.archive_url} into {self.root} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _check_files(self) -> None:
        expected = self.expected_files()
        missing = self._missing()
        if missing:
            what = f"expected {', '.join(expected)}" if len(missing) == len(expected) else f"missing: {', '.join(missing)}"
            raise ImbalError(
                f"data '{self.name}': {self.title} files not found in {self.folder()} ({what}); "
                f"set data.root to the directory holding "
                f"{self._tv_class().base_folder}/, or get them with data.download=true, or download "
                f"{self.archive_url} and extract it into data.root"
            )

    def _explain_corrupt(self, exc: Exception) -> ImbalError:
        """One line naming the first file that does not parse as a CIFAR pickle."""
        base = self._tv_class()
        for f in self.expected_files():
            path = os.path.join(self.folder(), f)
            try:
                with open(path, "rb") as fh:
                    entry = pickle.load(fh, encoding="latin1")
                if f == base.meta["filename"]:
                    key = base.meta["key"]
                    if key not in entry or len(entry[key]) != self.num_classes_:
                        return ImbalError(
                            f"data '{self.name}': {path} is not a {self.title} meta file "
                            f"(expected key '{key}' with {self.num_classes_} class names)"
                        )
                    continue
                data = np.asarray(entry["data"])
                labels = entry.get("labels", entry.get("fine_labels"))
                if labels is None or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                    return ImbalError(
                        f"data '{self.name}': {path} is not a {self.title} batch (expected 'data' of shape "
                        f"[N, 3072] uint8 and N '{'labels' if self.num_classes_ == 10 else 'fine_labels'}')"
                    )
            except Exception as err:  # unpickling errors come in many types
                return ImbalError(
                    f"data '{self.name}': cannot read {path} ({type(err).__name__}: {err}); expected the "
                    f"{self.title} python pickle format; re-download {self.archive_url}"
                )
        return ImbalError(f"data '{self.name}': cannot read {self.folder()}: {type(exc).__name__}: {exc}")

    def _load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
        if self.download:
            self.prepare_data()
        self._check_files()
        reader = self._reader()
        try:
            tr = reader(self.root, train=True)
            te = reader(self.root, train=False)
        except RuntimeError as exc:
            if self.check_md5 and "corrupted" in str(exc):
                raise ImbalError(
                    f"data '{self.name}': files in {self.folder()} do not match torchvision's MD5 sums "
                    f"(data.check_md5=true); re-download {self.archive_url}"
                ) from exc
            raise self._explain_corrupt(exc) from exc
        except Exception as exc:
            raise self._explain_corrupt(exc) from exc
        if len(tr.classes) != self.num_classes_:
            raise self._explain_corrupt(ValueError("class names"))
        # torchvision gives HWC uint8; the model takes CHW
        x_tr = np.ascontiguousarray(tr.data.transpose(0, 3, 1, 2))
        x_te = np.ascontiguousarray(te.data.transpose(0, 3, 1, 2))
        return x_tr, np.asarray(tr.targets, np.int64), x_te, np.asarray(te.targets, np.int64), list(tr.classes)

    # -- splits ----------------------------------------------------------
    def check_options(self) -> None:
        """Refuse bad options before reading any file.  Called from ``build`` (inside ``setup``), not
        ``__init__``: Hydra's instantiate would wrap the error into a multi-line InstantiationException."""
        longtail_counts(1, self.num_classes_, self.ratio, self.profile)  # ratio >= 1, known profile
        if self.val_from not in VAL_FROM:
            raise ImbalError(f"data.val_from must be one of {', '.join(VAL_FROM)}, got {self.val_from!r}")
        from imbal.data.augment import augment_name, check_cutout, check_randaugment

        self.augment, self.cutout = augment_name(self.augment), check_cutout(self.cutout)
        self.randaugment_n, self.randaugment_m = check_randaugment(self.randaugment_n, self.randaugment_m)

    def build(self) -> None:
        self.check_options()
        x_tr, y_tr, x_te, y_te, classes = self._load()
        c = self.num_classes_
        for split, y in (("train", y_tr), ("test", y_te)):
            bad = (y < 0) | (y >= c)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ImbalError(
                    f"data '{self.name}': {split} label {int(y[i])} at row {i} in {self.folder()} is outside [0, {c})"
                )
        val_idx = None
        pool = np.arange(len(y_tr))
        if self.val_from == "train":
            # balanced held-out images first, then the long-tail subset of the rest
            rng = np.random.default_rng(self.subset_seed + 1)
            for k in range(c):
                if (y_tr == k).sum() <= self.val_per_class:
                    raise ImbalError(
                        f"data '{self.name}': class {k} has {(y_tr == k).sum()} training images, not more than "
                        f"data.val_per_class={self.val_per_class}; lower data.val_per_class or use data.val_from=test"
                    )
            val_idx, pool = balanced_holdout(y_tr, self.val_per_class, rng)
        available = np.bincount(y_tr[pool], minlength=c)
        n_max = int(self.n_max) if self.n_max is not None else int(available.min())
        counts = longtail_counts(n_max, c, self.ratio, self.profile)
        if any(n > a for n, a in zip(counts, available)):
            k = next(i for i, (n, a) in enumerate(zip(counts, available)) if n > a)
            raise ImbalError(
                f"data '{self.name}': data.n_max={n_max} asks for {counts[k]} images of class {k}, but only "
                f"{available[k]} are available{' after the validation hold-out' if val_idx is not None else ''}"
            )
        train_idx = pool[longtail_indices(y_tr[pool], counts, seed=self.subset_seed)]

        train_tf, eval_tf = cifar_transforms(augment=self.augment, cutout=self.cutout,
                                             randaugment_n=self.randaugment_n, randaugment_m=self.randaugment_m)

        def ds(x: np.ndarray, y: np.ndarray, tf) -> TransformTensorDataset:
            return TransformTensorDataset(torch.from_numpy(x), torch.from_numpy(y), tf)

        test = ds(x_te, y_te, eval_tf)
        self.splits = {
            "train": ds(x_tr[train_idx], y_tr[train_idx], train_tf),
            "val": test if val_idx is None else ds(x_tr[val_idx], y_tr[val_idx], eval_tf),
            "test": test,
        }
        self.class_names = classes
        self.stats_fields = {"val_from": self.val_from, "num_train": int(sum(counts))}
        self.manifest = {
            "dataset": self.title,
            "root": os.path.abspath(self.root),
            "ratio": self.ratio,
            "profile": self.profile,
            "n_max": n_max,
            "class_counts": counts,
            "num_train": int(sum(counts)),
            "subset_seed": self.subset_seed,
            "train_indices_hash": indices_hash(train_idx),
            "val_from": self.val_from,
            "val_per_class": self.val_per_class if val_idx is not None else None,
            "val_indices_hash": indices_hash(val_idx) if val_idx is not None else None,
            "num_test": int(len(y_te)),
        }


    def device_transform(self, split: str):
        """``data.on_device``: pad-4 crop + flip (+ the policy per image) + normalise (+ cutout) of whole
        uint8 batches (training, with ``augment``), normalisation only otherwise; the same distribution
        and float ops as :func:`cifar_transforms`."""
        from imbal.data.augment import augment_name, policy_transform
        from imbal.data.on_device import PadCropFlipNormalize

        train, name = split == "train", augment_name(self.augment)
        policy = policy_transform(name, cifar=True, randaugment_n=self.randaugment_n,
                                  randaugment_m=self.randaugment_m) if train else None
        return PadCropFlipNormalize(CIFAR_MEAN, CIFAR_STD, padding=4, augment=train and name != "none",
                                    policy=policy, cutout=self.cutout if train else None)


class CIFAR10LTDataModule(CIFARLTDataModule):
    __doc__ = CIFARLTDataModule.__doc__
    name = "cifar10_lt"
    num_classes_ = 10
    title = "CIFAR-10"
    archive_url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class CIFAR100LTDataModule(CIFARLTDataModule):
    __doc__ = CIFARLTDataModule.__doc__
    name = "cifar100_lt"
    num_classes_ = 100
    default_val_per_class = 50
    title = "CIFAR-100"
    archive_url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
