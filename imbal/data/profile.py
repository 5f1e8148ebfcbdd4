"""Long-tail class profiles and the subsampling that applies them."""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np

from imbal.errors import ImbalError

PROFILES = ("exp", "step")


def check_n_max(n_max) -> None:
    """``data.n_max`` (training samples of the head class): a whole number >= 1 (0 would train on nothing)."""
    if isinstance(n_max, bool) or not isinstance(n_max, (int, float)) or n_max != int(n_max) or n_max < 1:
        raise ImbalError(f"data.n_max must be a whole number >= 1 (training samples of the head class), got {n_max!r}")


def longtail_counts(
    n_max: int, num_classes: int, ratio: float, profile: str = "exp", *, step_minor_frac: float = 0.5
) -> list[int]:
    """Per-class sample counts of a long-tailed split, head class first.

    ``exp`` (Cao et al. 2019, Cui et al. 2019): ``n_i = int(n_max * ratio^(-i/(C-1)))``.
    ``step`` (Buda et al. 2018): the first ``(1 - step_minor_frac) * C`` classes
    keep ``n_max``, the rest get ``int(n_max / ratio)``.

    The exponent is evaluated in float64 and truncated as the reference code
    does (``int(...)``); CIFAR-10 with n_max=5000 and ratio 100 gives 12,406
    images in total, CIFAR-100 with n_max=500 gives 10,847.
    """
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio)) or ratio < 1:
        raise ImbalError(f"imbalance ratio must be a number >= 1 (n_max / n_min), got {ratio!r}")
    if num_classes < 1:
        raise ImbalError(f"num_classes must be >= 1, got {num_classes}")
    check_n_max(n_max)
    if profile == "exp":
        if num_classes == 1:
            return [int(n_max)]
        return [int(n_max * (1.0 / ratio) ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    if profile == "step":
        n_major = num_classes - int(num_classes * step_minor_frac)
        return [int(n_max) if i < n_major else int(n_max / ratio) for i in range(num_classes)]
    raise ImbalError(f"long-tail profile '{profile}' is not one of {', '.join(PROFILES)}")


def longtail_indices(
    labels: Sequence[int] | np.ndarray,
    counts: Sequence[int],
    *,
    seed: int,
) -> np.ndarray:
    """Indices of a subset with ``counts[c]`` samples of class ``c``, drawn with a fixed seed.

    Classes are taken in label order (class 0 is the head).  The indices are
    returned sorted, so the subset does not depend on the order of classes.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c, n in enumerate(counts):
        idx = np.flatnonzero(labels == c)
        if n > len(idx):
            raise ImbalError(f"class {c} has {len(idx)} samples, but the long-tail profile asks for {n}")
        chosen.append(rng.permutation(idx)[:n])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def indices_hash(indices: np.ndarray) -> str:
    """A short fingerprint of a subset, saved in the manifest and checked on resume."""
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]
