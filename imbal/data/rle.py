"""Run-length encoding of binary masks in the Kaggle (Airbus Ship Detection) convention.

``EncodedPixels`` is a space-separated list of ``start length`` pairs.  Starts
are 1-based positions in the image flattened **column-major** (top to bottom,
then left to right), i.e. ``mask.ravel(order="F")``.  Runs are sorted and do
not overlap; an empty string is an empty mask.

Both directions are vectorised NumPy: decoding builds the pixel indices of all
runs with one ``np.repeat`` (cost proportional to the ship pixels, not to the
number of runs times a Python loop), encoding finds run boundaries with one
comparison of the column-major flattening against itself shifted by one.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from imbal.errors import ImbalError

#: Image shape of the Airbus Ship Detection competition.
AIRBUS_SHAPE = (768, 768)


def _where(image_id: str | None) -> str:
    return f"ImageId {image_id}" if image_id else "RLE"


def is_empty_rle(rle) -> bool:
    """True for an empty ``EncodedPixels`` value ("", whitespace, None or a pandas NaN)."""
    if rle is None:
        return True
    if isinstance(rle, float):  # pandas reads an empty CSV cell as NaN
        return bool(np.isnan(rle))
    return not str(rle).strip()


def parse_rle(rle, shape: tuple[int, int] = AIRBUS_SHAPE, *, image_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validated 0-based run starts and lengths (int64 arrays) of an RLE string.

    Raises:
        ImbalError: a non-integer token, an odd token count, a start < 1, a
            length < 1, a run past the last pixel, or runs that are unsorted or
            overlap; the message names ``image_id`` and the offending pair.
    """
    where = _where(image_id)
    if is_empty_rle(rle):
        z = np.zeros(0, dtype=np.int64)
        return z, z
    text = str(rle)
    try:
        tokens = np.array(text.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next(t for t in text.split() if not t.lstrip("-").isdigit())
        raise ImbalError(f"{where}: EncodedPixels token {bad!r} is not an integer; expected 'start length' pairs") from None
    if len(tokens) % 2:
        raise ImbalError(
            f"{where}: EncodedPixels has {len(tokens)} numbers (odd); expected 'start length' pairs"
        )
    starts, lengths = tokens[0::2], tokens[1::2]
    n_pixels = int(shape[0]) * int(shape[1])

    def pair(i: int) -> str:
        return f"pair {i + 1} ({starts[i]} {lengths[i]})"

    bad = np.flatnonzero(starts < 1)
    if len(bad):
        raise ImbalError(f"{where}: {pair(bad[0])} has start < 1; starts are 1-based pixel positions")
    bad = np.flatnonzero(lengths < 1)
    if len(bad):
        raise ImbalError(f"{where}: {pair(bad[0])} has non-positive length; expected a length >= 1")
    ends = starts - 1 + lengths  # exclusive, 0-based
    bad = np.flatnonzero(ends > n_pixels)
    if len(bad):
        raise ImbalError(
            f"{where}: {pair(bad[0])} runs past the image (ends at pixel {ends[bad[0]]}, "
            f"image {shape[0]}x{shape[1]} has {n_pixels})"
        )
    # Runs must be sorted and disjoint (touching runs are accepted: they decode the same).
    bad = np.flatnonzero(starts[1:] - 1 < ends[:-1])
    if len(bad):
        i = int(bad[0])
        kind = "is not after" if starts[i + 1] < starts[i] else "overlaps"
        raise ImbalError(f"{where}: {pair(i + 1)} {kind} {pair(i)}; runs must be sorted and disjoint")
    return starts - 1, lengths


def check_rle(rle, shape: tuple[int, int] = AIRBUS_SHAPE, *, image_id: str | None = None) -> int:
    """Validate an RLE string without building the mask; returns its pixel count."""
    _, lengths = parse_rle(rle, shape, image_id=image_id)
    return int(lengths.sum())


def rle_decode(rle, shape: tuple[int, int] = AIRBUS_SHAPE, *, image_id: str | None = None) -> np.ndarray:
    """Decode a Kaggle RLE string to a ``uint8`` 0/1 mask of ``shape`` (rows, columns).

    An empty value (``""``, None, NaN) gives an all-zero mask.  The array is
    Fortran-ordered (the column-major pixels, viewed as rows x columns without
    a copy); ``np.ascontiguousarray`` gives a C-ordered copy.  Raises
    :class:`ImbalError` for a malformed string (see :func:`parse_rle`).
    """
    h, w = int(shape[0]), int(shape[1])
    starts, lengths = parse_rle(rle, (h, w), image_id=image_id)
    flat = np.zeros(h * w, dtype=np.uint8)
    if len(starts):
        # Index of every pixel of every run, without a Python loop: pixel k of
        # the concatenated runs lies at  k + (start of its run - pixels before its run).
        before = np.cumsum(lengths) - lengths
        idx = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - before, lengths)
        flat[idx] = 1
    # column-major: pixel p is (row p % h, column p // h).  The transpose is a
    # view (Fortran-ordered, writable): no copy of the image.
    return flat.reshape((w, h)).T


def rle_encode(mask: np.ndarray, *, image_id: str | None = None) -> str:
    """Encode a 2-D 0/1 (or boolean) mask as a Kaggle RLE string ('' for an empty mask).

    Raises:
        ImbalError: the mask is not 2-D or holds values other than 0 and 1.
    """
    m = np.asarray(mask)
    where = _where(image_id)
    if m.ndim != 2:
        raise ImbalError(f"{where}: mask to encode has shape {m.shape}; expected a 2-D (rows, columns) array")
    if m.dtype != np.bool_:
        bad = (m != 0) & (m != 1)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ImbalError(f"{where}: mask value {m[r, c].item()!r} at (row {r}, column {c}); expected 0 or 1")
    pixels = np.zeros(m.size + 2, dtype=np.bool_)
    pixels[1:-1] = m.T.ravel() != 0  # column-major flattening
    # positions (1-based in the image) where the value changes: run starts and run ends
    changes = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    if changes.size == 0:
        return ""
    changes[1::2] -= changes[0::2]
    return " ".join(map(str, changes.tolist()))


def rle_decode_instances(
    rles: Iterable, shape: tuple[int, int] = AIRBUS_SHAPE, *, image_id: str | None = None
) -> np.ndarray:
    """Instance label image (``int32``, 0 = background, k = the k-th non-empty RLE) of one image.

    Where instances overlap (the competition removed overlaps; other data may
    not have), the later one wins.
    """
    h, w = int(shape[0]), int(shape[1])
    flat = np.zeros(h * w, dtype=np.int32)
    k = 0
    for rle in rles:
        starts, lengths = parse_rle(rle, (h, w), image_id=image_id)
        if not len(starts):
            continue
        k += 1
        before = np.cumsum(lengths) - lengths
        flat[np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - before, lengths)] = k
    return flat.reshape((w, h)).T  # a Fortran-ordered view, as rle_decode
