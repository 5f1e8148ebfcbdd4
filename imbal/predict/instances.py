"""Ship instances from a probability map: threshold, connected components (or a watershed split), min size.

The instances of one image are one label image (0 = background, k = instance k,
numbered 1..K in raster order of their first pixel), so they never overlap; each
becomes one RLE row of a submission (:func:`instance_rles`).

Watershed (``watershed=True``) splits touching ships: markers are the parts of each
connected component whose distance to the background is at least ``marker_frac`` of
the component's largest distance (a narrow neck between two hulls falls below it), and
the flooding of the negated distance transform from them assigns every pixel of the
component to one marker.  It uses ``skimage.segmentation.watershed`` when
scikit-image is installed, else a flooding of the same order in scipy (:func:`_flood`).
"""

from __future__ import annotations

import numpy as np

from imbal.data.segmentation.rle import rle_encode
from imbal.errors import ImbalError
from imbal.metrics.segmentation import label_components


def check_probability(value: float, flag: str) -> float:
    """``value`` when it lies in (0, 1); else one line naming ``flag``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ImbalError(f"{flag} {value!r}: expected a probability in (0, 1)")
    return float(value)


def check_min_size(value: int, flag: str = "--min-size") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ImbalError(f"{flag} {value!r}: expected a whole number of pixels >= 0")
    return int(value)


def relabel(labels: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels ``k`` with ``keep[k]`` renumbered 1..K in order, the others set to 0."""
    lut = np.zeros(len(keep), dtype=np.int32)
    kept = np.flatnonzero(keep)
    kept = kept[kept > 0]
    lut[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
    return lut[labels], len(kept)


def drop_small(labels: np.ndarray, n: int, min_size: int) -> tuple[np.ndarray, int]:
    """Remove the instances of fewer than ``min_size`` pixels; the rest renumbered 1..K."""
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= max(int(min_size), 1)
    keep[0] = False
    return relabel(labels, keep)


def watershed_split(mask: np.ndarray, *, marker_frac: float = 0.5) -> tuple[np.ndarray, int]:
    """Instance labels of a 0/1 mask with touching blobs split by a watershed on the distance transform."""
    from scipy import ndimage

    m = np.asarray(mask) != 0
    cc, n = label_components(m)
    if n == 0:
        return cc.astype(np.int32), 0
    dist = ndimage.distance_transform_edt(m)
    peak = np.zeros(n + 1)
    peak[1:] = ndimage.maximum(dist, cc, index=np.arange(1, n + 1))
    markers, n_markers = label_components(m & (dist >= marker_frac * peak[cc]))
    try:
        from skimage.segmentation import watershed
    except ImportError:
        watershed = None
    if watershed is not None:
        lab = watershed(-dist, markers, mask=m)
    else:
        lab = _flood(dist, markers, m)
    lab = np.asarray(lab, dtype=np.int32)
    return relabel(lab, np.bincount(lab.ravel(), minlength=n_markers + 1) > 0)


def _flood(dist: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Marker-controlled flooding (scipy only): by decreasing distance level, each marker's region grows
    (8-connected steps) into the unlabelled mask pixels at or above the level, until none changes."""
    from scipy import ndimage

    lab = markers.astype(np.int32)
    footprint = np.ones((3, 3), dtype=bool)
    for level in np.unique(dist[mask])[::-1]:
        region = mask & (dist >= level)
        while True:
            grown = ndimage.grey_dilation(lab, footprint=footprint)
            new = region & (lab == 0) & (grown > 0)
            if not new.any():
                break
            lab[new] = grown[new]
    return lab


def instances(prob: np.ndarray, *, threshold: float = 0.5, min_size: int = 0,
              watershed: bool = False) -> tuple[np.ndarray, int]:
    """(label image int32, count) of the instances of a probability map: pixels with ``prob > threshold``,
    8-connected components (or :func:`watershed_split`), those below ``min_size`` pixels dropped."""
    mask = np.asarray(prob) > threshold
    if watershed:
        lab, n = watershed_split(mask)
    else:
        lab, n = label_components(mask)
        lab = lab.astype(np.int32)
    return drop_small(lab, n, min_size) if min_size > 1 else (lab, n)


def instance_rles(labels: np.ndarray, n: int, *, image_id: str | None = None) -> list[str]:
    """One Kaggle RLE string per instance 1..n of a label image (disjoint by construction)."""
    return [rle_encode(labels == k, image_id=image_id) for k in range(1, n + 1)]
