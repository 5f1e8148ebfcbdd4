"""``data=digits_lt``: scikit-learn's bundled 8x8 digits, long-tailed. Runs on a fresh clone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from imbal.data.base import InMemoryDataModule, balanced_holdout
from imbal.data.profile import check_n_max, indices_hash, longtail_counts, longtail_indices
from imbal.errors import ImbalError
from imbal.kinds import IMAGE, MULTICLASS


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The UCI handwritten digits bundled with scikit-learn: images ``[1797, 8, 8]`` (0-16) and labels.

    Read straight from scikit-learn's own data file (``sklearn/datasets/data/digits.csv.gz``:
    64 pixel values and the label per row, as ``sklearn.datasets.load_digits`` reads it),
    located without importing scikit-learn, whose import (with pandas and scipy) costs
    1-2 s of every default run's start-up.
    """
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for base in locations:
        path = Path(base) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as f:
                data = np.loadtxt(f, delimiter=",", dtype=np.float64)
            if data.ndim != 2 or data.shape[1] != 65:
                raise ImbalError(f"data 'digits_lt': {path} has {data.shape} values; expected rows of 64 pixels + label")
            return data[:, :64].reshape(-1, 8, 8), data[:, 64].astype(np.int64)
    raise ImbalError("data 'digits_lt' reads scikit-learn's bundled digits.csv.gz, which was not found; "
                     "install scikit-learn (pip install scikit-learn)")


class DigitsLTDataModule(InMemoryDataModule):
    """Long-tailed training split of ``sklearn.datasets.load_digits`` (1,797 images, 10 classes).

    Balanced validation and test splits (``val_per_class``, ``test_per_class``
    images of every class) are held out first; the rest is subsampled with the
    exponential profile ``n_i = floor(n_max * ratio^(-i/(C-1)))`` (class 0 is
    the head; ``n_max`` defaults to the smallest remaining class size).

    Args:
        ratio: imbalance ratio n_max / n_min (>= 1).
        profile: ``exp`` or ``step``.
        n_max: head-class size (default: all that every class can give).
        val_per_class, test_per_class: sizes of the balanced splits.
        on_device (of :class:`InMemoryDataModule`): the splits (float, normalised, no
            augmentation) held on the Trainer's device and batched there by index.
    """

    name = "digits_lt"
    modality = IMAGE
    task = MULTICLASS

    def __init__(
        self,
        *,
        ratio: float = 10.0,
        profile: str = "exp",
        n_max: int | None = None,
        val_per_class: int = 30,
        test_per_class: int = 40,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.ratio = ratio
        self.profile = profile
        if n_max is not None:
            check_n_max(n_max)  # before any file is read
        self.n_max = n_max
        self.val_per_class = int(val_per_class)
        self.test_per_class = int(test_per_class)
        longtail_counts(1, 10, ratio, profile)  # validate early, before any work

    def build(self) -> None:
        images, target = load_digits_arrays()
        x = images.astype(np.float32) / 16.0  # [N, 8, 8] in [0, 1]
        x = (x - 0.5) / 0.5
        y = target.astype(np.int64)
        rng = np.random.default_rng(self.seed)
        test_idx, rest = balanced_holdout(y, self.test_per_class, rng)
        val_rel, train_pool_rel = balanced_holdout(y[rest], self.val_per_class, rng)
        val_idx, pool = rest[val_rel], rest[train_pool_rel]
        available = np.bincount(y[pool], minlength=10)
        n_max = int(self.n_max) if self.n_max is not None else int(available.min())
        counts = longtail_counts(n_max, 10, self.ratio, self.profile)
        train_rel = longtail_indices(y[pool], counts, seed=self.seed)
        train_idx = pool[train_rel]

        def split(idx: np.ndarray) -> TensorDataset:
            return TensorDataset(torch.from_numpy(x[idx]).unsqueeze(1), torch.from_numpy(y[idx]))

        self.splits = {"train": split(train_idx), "val": split(val_idx), "test": split(test_idx)}
        self.class_names = [str(i) for i in range(10)]
        self.manifest = {
            "ratio": self.ratio,
            "profile": self.profile,
            "n_max": n_max,
            "class_counts": counts,
            "train_indices_hash": indices_hash(train_idx),
            "val_per_class": self.val_per_class,
            "test_per_class": self.test_per_class,
        }
