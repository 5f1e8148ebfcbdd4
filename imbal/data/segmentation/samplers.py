"""Which images a segmentation run trains and evaluates on: stratified splits and the empty-share sampler."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch.utils.data import Sampler

from imbal.errors import ImbalError


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
