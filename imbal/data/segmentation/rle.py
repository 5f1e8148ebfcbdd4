"""Run-length encoding of binary masks in the Kaggle (Airbus Ship Detection) convention.

``EncodedPixels`` is a space-separated list of ``start length`` pairs.  Starts
are 1-based positions in the image flattened **column-major** (top to bottom,
then left to right), i.e. ``mask.ravel(order="F")``.  Runs are sorted and do
not overlap; an empty string is an empty mask.

Decoding parses the numbers with NumPy's C parser.  A mask of a few runs (a
ship: tens of runs) is then checked in one Python pass over the runs and
filled by one memoryview copy per run; a mask of many runs is checked by a few
array reductions and filled through one ``np.repeat``-built pixel index (cost
proportional to the mask's pixels, see ``bench/rle.py``).  Encoding finds run
boundaries with one comparison of the column-major flattening against itself
shifted by one.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from imbal.errors import ImbalError

_OLD_NUMPY = int(np.__version__.split(".")[0]) < 2

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
    starts, lengths = _runs(rle, shape, image_id)
    return np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)


#: Up to this many runs, the runs are checked and filled in a Python loop (a ship:
#: median 22 runs in the real sample); beyond, by array reductions and one
#: ``np.repeat``-built pixel index, which have a fixed cost of a few NumPy calls.
_LOOP_RUNS = 48


def _runs(rle, shape: tuple[int, int], image_id: str | None):
    """:func:`parse_rle`'s validated (0-based starts, lengths): Python lists for up to
    ``_LOOP_RUNS`` runs (cheapest to check and fill in a loop), int64 arrays beyond."""
    if is_empty_rle(rle):
        return [], []
    text = str(rle)
    # NumPy's C parser (``fromstring`` with a separator, not the deprecated binary
    # mode) reads the numbers ~10x faster than ``split`` + ``int``.  NumPy >= 2 raises
    # at a bad token; older NumPy warns and stops there, which the token count catches.
    try:
        tokens = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:
        return _parse_slow(text, shape, image_id)
    if tokens.size % 2 or (_OLD_NUMPY and tokens.size != len(text.split())):
        return _parse_slow(text, shape, image_id)
    n_pixels = int(shape[0]) * int(shape[1])
    if tokens.size <= 2 * _LOOP_RUNS:
        # Python ints (no overflow); one pass checks every run against the previous end.
        values = tokens.tolist()
        starts, lengths = values[0::2], values[1::2]
        end = 0
        for s, n in zip(starts, lengths):
            if s <= end or n < 1:  # start < 1, unsorted or overlapping, or an empty run
                return _parse_slow(text, shape, image_id)
            end = s - 1 + n
        if end > n_pixels:
            return _parse_slow(text, shape, image_id)
        return [s - 1 for s in starts], lengths
    starts, lengths = tokens[0::2], tokens[1::2]
    # Fast acceptance test: with lengths >= 1 and every gap >= 0 the runs are sorted and
    # disjoint, so the last run ends last.  Anything else goes to the slow path, which
    # names the offending pair.  Bounds on start and length first: no int64 overflow.
    if (
        int(starts[0]) >= 1
        and int(lengths.min()) >= 1
        and int(starts[-1]) <= n_pixels
        and int(lengths.max()) <= n_pixels
        and int(starts[-1]) - 1 + int(lengths[-1]) <= n_pixels
        and int((starts[1:] - starts[:-1] - lengths[:-1]).min()) >= 0
    ):
        return starts - 1, lengths
    return _parse_slow(text, shape, image_id)


def _parse_slow(text: str, shape: tuple[int, int], image_id: str | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`parse_rle` for strings the fast path refused: find and name the first problem."""
    where = _where(image_id)
    words = text.split()
    bad = next((t for t in words if not (t.lstrip("+-").isdigit() and t.lstrip("+-").isascii())), None)
    if bad is not None:
        raise ImbalError(f"{where}: EncodedPixels token {bad!r} is not an integer; expected 'start length' pairs")
    if len(words) % 2:
        raise ImbalError(f"{where}: EncodedPixels has {len(words)} numbers (odd); expected 'start length' pairs")
    values = [int(t) for t in words]  # Python ints: no overflow in the checks below
    starts, lengths = values[0::2], values[1::2]
    n_pixels = int(shape[0]) * int(shape[1])

    def pair(i: int) -> str:
        return f"pair {i + 1} ({starts[i]} {lengths[i]})"

    for i, (s, n) in enumerate(zip(starts, lengths)):
        if s < 1:
            raise ImbalError(f"{where}: {pair(i)} has start < 1; starts are 1-based pixel positions")
        if n < 1:
            raise ImbalError(f"{where}: {pair(i)} has non-positive length; expected a length >= 1")
        if s - 1 + n > n_pixels:
            raise ImbalError(
                f"{where}: {pair(i)} runs past the image (ends at pixel {s - 1 + n}, "
                f"image {shape[0]}x{shape[1]} has {n_pixels})"
            )
        # Runs must be sorted and disjoint (touching runs are accepted: they decode the same).
        if i and s - 1 < starts[i - 1] - 1 + lengths[i - 1]:
            kind = "is not after" if s < starts[i - 1] else "overlaps"
            raise ImbalError(f"{where}: {pair(i)} {kind} {pair(i - 1)}; runs must be sorted and disjoint")
    # Unreachable for strings the fast path refused; kept so the function is total.
    return np.asarray(starts, dtype=np.int64) - 1, np.asarray(lengths, dtype=np.int64)


#: Source of the ones written into uint8 masks: slice assignment between memoryviews is
#: a plain memcpy, ~2x cheaper per run than NumPy's ``flat[s:e] = 1`` (which broadcasts a scalar).
_ONES = memoryview(b"\x01" * (AIRBUS_SHAPE[0] * AIRBUS_SHAPE[1]))


def _fill(flat: np.ndarray, starts, lengths, value: int) -> None:
    """Set the runs (0-based ``starts``, ``lengths``, as :func:`_runs` gives them) of the flat image to ``value``."""
    if isinstance(starts, list):
        # A loop over runs, not pixels: each assignment is one memset/memcpy.
        if value == 1 and flat.dtype == np.uint8 and flat.size <= len(_ONES):
            view, ones = memoryview(flat), _ONES
            for s, n in zip(starts, lengths):
                view[s : s + n] = ones[:n]
        else:
            for s, n in zip(starts, lengths):
                flat[s : s + n] = value
        return
    # Many short runs (noisy masks): the index of every pixel of every run without a
    # Python loop: pixel k of the concatenated runs lies at k + (its run's start - pixels before it).
    before = np.cumsum(lengths) - lengths
    flat[np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - before, lengths)] = value


def check_rle(rle, shape: tuple[int, int] = AIRBUS_SHAPE, *, image_id: str | None = None) -> int:
    """Validate an RLE string without building the mask; returns its pixel count."""
    _, lengths = _runs(rle, shape, image_id)
    return int(sum(lengths)) if isinstance(lengths, list) else int(lengths.sum())


def rle_decode(rle, shape: tuple[int, int] = AIRBUS_SHAPE, *, image_id: str | None = None) -> np.ndarray:
    """Decode a Kaggle RLE string to a ``uint8`` 0/1 mask of ``shape`` (rows, columns).

    An empty value (``""``, None, NaN) gives an all-zero mask.  The array is
    Fortran-ordered (the column-major pixels, viewed as rows x columns without
    a copy); ``np.ascontiguousarray`` gives a C-ordered copy.  Raises
    :class:`ImbalError` for a malformed string (see :func:`parse_rle`).
    """
    h, w = int(shape[0]), int(shape[1])
    starts, lengths = _runs(rle, (h, w), image_id)
    flat = np.zeros(h * w, dtype=np.uint8)
    _fill(flat, starts, lengths, 1)
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


def rle_decode_union(rles: Iterable, shape: tuple[int, int] = AIRBUS_SHAPE, *, image_id: str | None = None) -> np.ndarray:
    """The union of several RLE masks of one image (Kaggle kernels' ``masks_as_image``), ``uint8`` 0/1.

    Every ship is decoded into the same image: one allocation per image, not one per ship.
    """
    h, w = int(shape[0]), int(shape[1])
    flat = np.zeros(h * w, dtype=np.uint8)
    for rle in rles:
        starts, lengths = _runs(rle, (h, w), image_id)
        _fill(flat, starts, lengths, 1)
    return flat.reshape((w, h)).T


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
        starts, lengths = _runs(rle, (h, w), image_id)
        if not len(starts):
            continue
        k += 1
        _fill(flat, starts, lengths, k)
    return flat.reshape((w, h)).T  # a Fortran-ordered view, as rle_decode
