"""``data=gaussian_lt``: long-tailed Gaussian classes whose Bayes-optimal balanced error is known."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import TensorDataset

from imbal.data.base import InMemoryDataModule
from imbal.data.profile import indices_hash, longtail_counts
from imbal.kinds import MULTICLASS, VECTOR


def _phi(z: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def bayes_balanced_error(num_classes: int, spacing: float, sigma: float) -> float:
    """Balanced error of the Bayes classifier for isotropic Gaussians with means on a line.

    With equal weight per class (the balanced error), the optimal rule is the
    nearest mean; only the coordinate along the line matters, so an interior
    class errs with probability ``2 Phi(-spacing / (2 sigma))`` and each of the
    two end classes with ``Phi(-spacing / (2 sigma))``.
    """
    if num_classes == 1:
        return 0.0
    p = _phi(-spacing / (2.0 * sigma))
    return (2.0 * (num_classes - 2) * p + 2.0 * p) / num_classes


class GaussianLTDataModule(InMemoryDataModule):
    """Isotropic Gaussian classes, means on a line in a random class order, long-tailed training split.

    Class ``c`` has mean ``spacing * pos(c) * e_1`` in ``dim`` dimensions and
    covariance ``sigma^2 I``, where ``pos`` is a seeded permutation (so head
    and tail classes are neighbours).  Training counts follow the exponential
    profile from ``n_max`` down to ``n_max / ratio``; validation and test are
    balanced.  ``bayes_balanced_error`` is logged in ``summary.json``.
    """

    name = "gaussian_lt"
    modality = VECTOR
    task = MULTICLASS

    def __init__(
        self,
        *,
        num_classes: int = 10,
        dim: int = 2,
        spacing: float = 3.0,
        sigma: float = 1.0,
        ratio: float = 100.0,
        n_max: int = 2000,
        val_per_class: int = 300,
        test_per_class: int = 500,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.dim = int(dim)
        self.spacing = float(spacing)
        self.sigma = float(sigma)
        self.ratio = ratio
        self.n_max = int(n_max)
        self.val_per_class = int(val_per_class)
        self.test_per_class = int(test_per_class)
        longtail_counts(self.n_max, self.num_classes, ratio)  # validate early

    def build(self) -> None:
        rng = np.random.default_rng(self.seed)
        c = self.num_classes
        pos = rng.permutation(c).astype(np.float64)
        means = np.zeros((c, self.dim))
        means[:, 0] = self.spacing * (pos - (c - 1) / 2.0)
        counts = longtail_counts(self.n_max, c, self.ratio)

        def sample(per_class: list[int]) -> TensorDataset:
            y = np.repeat(np.arange(c), per_class)
            x = means[y] + self.sigma * rng.standard_normal((len(y), self.dim))
            return TensorDataset(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64)))

        self.splits = {
            "train": sample(counts),
            "val": sample([self.val_per_class] * c),
            "test": sample([self.test_per_class] * c),
        }
        self.class_names = [f"class_{i}" for i in range(c)]
        self.extra = {
            "bayes_balanced_error": bayes_balanced_error(c, self.spacing, self.sigma),
            "means": means[:, 0].tolist(),
        }
        self.manifest = {
            "ratio": self.ratio,
            "n_max": self.n_max,
            "class_counts": counts,
            "train_indices_hash": indices_hash(np.arange(sum(counts))),
        }
