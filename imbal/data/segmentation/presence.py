"""Ship presence (``data=airbus data.target=presence``): whole images and one 0/1 label each.

The image-level stage of the Kaggle winners' two-stage recipe: a classifier says whether an
image holds any ship, a segmenter draws the ships of the images it accepts.  The items are
those of the mask task (the same index, split and manifest ids); the label is "has at least
one RLE row".

:func:`presence_input` is the ONE evaluation-time preprocessing of the presence task: the
validation and test datasets call it, and so does ``imbal predict --gate`` on new images, so
a gate sees at prediction what it saw in validation.

Batches: training ``(x [N,3,s,s] float, y [N] float 0/1)`` with flips and 90-degree
rotations; validation and test ``(x, y)`` on whole images, in the split's order.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from imbal.data.segmentation.transforms import resize_image, to_tensor_image

#: ``data.target`` values of ``data=airbus``: per-pixel ship masks, or one ship / no-ship label per image.
MASK_TARGET, PRESENCE_TARGET = "mask", "presence"
TARGETS = (MASK_TARGET, PRESENCE_TARGET)
#: class names of the presence task (index 1 = ship, the positive class of the binary task)
PRESENCE_CLASSES = ["no_ship", "ship"]


def presence_image(img: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 ``[H, W, 3]`` resized by area (PIL ``BOX``) to ``size`` x ``size`` (None: unchanged)."""
    return img if size is None else resize_image(np.asarray(img), int(size))


def presence_input(img: np.ndarray, size: int | None) -> torch.Tensor:
    """The evaluation input of the presence task: ``img`` (uint8 ``[H, W, 3]``) resized by area to
    ``size`` x ``size`` when ``size`` is given, then normalised as the mask task's images
    (:func:`~imbal.data.segmentation.transforms.to_tensor_image`): float ``[3, s, s]`` in [-1, 1]."""
    return to_tensor_image(presence_image(img, size))


def d4_augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random horizontal flip, vertical flip and 90-degree rotation (the mask task's training draws)."""
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.5:
        img = img[::-1]
    k = int(rng.integers(4))
    return np.rot90(img, k) if k else img


class PresenceDataset(Dataset):
    """``(x [3,s,s] float, y float 0/1)`` per image; ``load(i)`` gives uint8 ``[s, s, 3]`` already at size.

    With ``augment`` (training) each draw is flipped and rotated at random, seeded from torch's RNG
    (which Lightning seeds per run and per worker), as the mask task's crops are.
    """

    def __init__(self, load: Callable[[int], np.ndarray], labels: np.ndarray, *, augment: bool = False):
        self.load, self.labels, self.augment = load, np.asarray(labels, dtype=np.float32), bool(augment)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.load(i)
        if self.augment:
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
            img = d4_augment(img, rng)
        return to_tensor_image(np.ascontiguousarray(img)), torch.tensor(self.labels[i])
