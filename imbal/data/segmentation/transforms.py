"""Image I/O and pixel transforms shared by the segmentation data modules and ``imbal predict``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from imbal.data.images import read_image
from imbal.errors import ImbalError

#: Images are scaled to [-1, 1]: x = (pixel / 255 - MEAN) / STD.
MEAN, STD = 0.5, 0.5

#: File suffixes read as images (mask folders, prediction folders), compared lower-cased.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


def to_tensor_image(img: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, C]`` -> float ``[C, H, W]`` scaled to [-1, 1].

    In NumPy, one fused pass per channel-first copy: in a DataLoader worker (or the main
    process between steps) torch's intra-op threads would each wake for a tiny tensor
    op, which on a busy 2-core machine cost 10-40 ms per crop instead of ~0.1 ms.
    """
    x = np.multiply(np.asarray(img).transpose(2, 0, 1), np.float32(1.0 / (255.0 * STD)), dtype=np.float32)
    x -= np.float32(MEAN / STD)
    return torch.from_numpy(x)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_tensor_image` (float in [0, 1])."""
    return (x * STD + MEAN).clamp(0, 1)


def read_rgb(path: Path, *, where: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as uint8 ``[H, W, 3]`` (16-bit images scaled, :func:`imbal.data.images.read_image`);
    a one-line ImbalError if unreadable or of the wrong size."""
    arr = read_image(path, where=where, mode="RGB")
    if size is not None and arr.shape[:2] != tuple(size):
        raise ImbalError(
            f"{where}: image {path} is {arr.shape[0]}x{arr.shape[1]}, expected {size[0]}x{size[1]} "
            f"(set data.image_size)"
        )
    return arr


def resize_image(img: np.ndarray, side: int) -> np.ndarray:
    """A uint8 ``[H, W, 3]`` image resized to ``side`` x ``side`` by area (PIL ``BOX``)."""
    from PIL import Image

    if img.shape[:2] == (side, side):
        return img
    return np.asarray(Image.fromarray(img).resize((side, side), Image.Resampling.BOX))


def resize_pair(img: np.ndarray, inst: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """An image (area resampling) and its instance labels (nearest neighbour) resized to ``side`` x ``side``."""
    from PIL import Image

    if inst.shape[:2] != (side, side):
        inst = np.asarray(Image.fromarray(inst.astype(np.int32)).resize((side, side), Image.Resampling.NEAREST))
    return resize_image(img, side), inst.astype(np.int32, copy=False)
