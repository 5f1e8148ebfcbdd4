"""The run-length code of the public Kaggle Airbus kernels: the independent reference for imbal's RLE.

Used by tests/test_rle.py (correctness) and bench/rle.py (speed baseline).  Decoder:
split the string, a Python loop over runs assigning slices, reshape, transpose;
encoder: pad the column-major flattening and compare it with a shifted copy.
"""

from __future__ import annotations

import numpy as np

SHAPE = (768, 768)


def kaggle_decode(rle: str, shape=SHAPE) -> np.ndarray:
    """The straightforward decoder of the public Kaggle kernels."""
    s = rle.split()
    starts, lengths = [np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2])]
    starts -= 1
    ends = starts + lengths
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, ends):
        img[lo:hi] = 1
    return img.reshape((shape[1], shape[0])).T


def kaggle_encode(img: np.ndarray) -> str:
    pixels = img.T.flatten()
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def kaggle_masks_as_image(rles, shape=SHAPE) -> np.ndarray:
    """The kernels' union of an image's ships: decode each ship, OR it into the image."""
    all_masks = np.zeros(shape, dtype=np.uint8)
    for r in rles:
        all_masks |= kaggle_decode(r, shape)
    return all_masks
