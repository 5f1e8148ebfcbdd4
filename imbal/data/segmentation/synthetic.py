"""A synthetic data set in the exact Kaggle Airbus layout, so the real loader runs on a fresh clone.

``<dir>/train_v2/<ImageId>.jpg`` (RGB JPEGs) and
``<dir>/train_ship_segmentations_v2.csv`` (``ImageId,EncodedPixels``, one row
per ship, one empty row per ship-free image), masks written through
:func:`imbal.data.segmentation.rle.rle_encode`.  Images: a sea-like texture (low-frequency
swell, fine chop, a few whitecaps, now and then a bright cloud, the hard
negatives), and on a minority of images 1-4 rotated, elongated, non-overlapping
ships of varied size, brighter than the sea, with a dark shadow on one side.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from imbal.data.segmentation.rle import rle_encode
from imbal.io import write_text_atomic

#: Bump when the generator changes, so stale caches are not reused.
VERSION = 1


def default_cache_root() -> Path:
    from imbal.cache import cache_root

    return cache_root()


def _sea(rng: np.random.Generator, size: int) -> np.ndarray:
    from scipy import ndimage

    base = np.array([rng.uniform(15, 45), rng.uniform(45, 85), rng.uniform(60, 105)])
    swell = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=size / 12)
    swell /= swell.std() + 1e-9
    chop = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=0.8)
    chop /= chop.std() + 1e-9
    img = base[None, None, :] + (6 * swell + 4 * chop)[..., None] * np.array([0.8, 1.0, 1.0])
    # whitecaps: a few tiny bright specks (not ships)
    for _ in range(rng.integers(0, 6)):
        r, c = rng.integers(0, size, 2)
        img[max(r - 1, 0) : r + 1, max(c - 1, 0) : c + 1] += rng.uniform(40, 90)
    if rng.random() < 0.15:  # a cloud: large, soft, bright
        yy, xx = np.mgrid[0:size, 0:size]
        cy, cx = rng.uniform(0, size, 2)
        rad = rng.uniform(0.1, 0.3) * size
        cloud = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rad**2)))
        cloud *= 0.6 + 0.4 * ndimage.gaussian_filter(rng.standard_normal((size, size)), size / 30).clip(-1, 1)
        img += rng.uniform(80, 160) * cloud[..., None]
    return img


def _ship_mask(size: int, cy: float, cx: float, length: float, width: float, angle: float, pad: float = 0.0):
    """Boolean mask of a rotated ship hull (rectangle with a pointed bow), grown by ``pad`` pixels."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)  # along the hull
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)  # across
    a, b = length / 2 + pad, width / 2 + pad
    bow = u > a - width  # taper over the last `width` pixels
    half = np.where(bow, b * np.clip((a - u) / max(width, 1e-6), 0, 1), b)
    return (np.abs(u) <= a) & (np.abs(v) <= half)


def generate(
    root: str | Path,
    *,
    n_images: int = 200,
    image_size: int = 256,
    ship_image_share: float = 0.3,
    max_ships: int = 4,
    ship_length: tuple[float, float] = (0.05, 0.16),
    seed: int = 0,
    quality: int = 92,
) -> Path:
    """Write the data set under ``root`` (which must not exist yet); returns ``root``."""
    from PIL import Image

    root = Path(root)
    (root / "train_v2").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    ids: set[str] = set()
    rows = ["ImageId,EncodedPixels"]
    for i in range(n_images):
        while True:
            image_id = f"{int(rng.integers(16**9)):09x}.jpg"
            if image_id not in ids:
                ids.add(image_id)
                break
        img = _sea(rng, image_size)
        ships: list[np.ndarray] = []
        if rng.random() < ship_image_share:
            occupied = np.zeros((image_size, image_size), bool)
            for _ in range(int(rng.integers(1, max_ships + 1))):
                for _try in range(20):
                    length = rng.uniform(*ship_length) * image_size
                    width = max(3.0, length / rng.uniform(3.0, 6.0))
                    angle = rng.uniform(0, np.pi)
                    m = length / 2 + 2
                    cy, cx = rng.uniform(m, image_size - m, 2)
                    hull = _ship_mask(image_size, cy, cx, length, width, angle)
                    if hull.sum() >= 8 and not (occupied & _ship_mask(image_size, cy, cx, length, width, angle, 2)).any():
                        break
                else:
                    continue
                occupied |= hull
                # shadow: the hull shifted by a couple of pixels, darker than the sea
                dy, dx = int(rng.integers(1, 4)), int(rng.integers(1, 4))
                shadow = np.roll(np.roll(hull, dy, 0), dx, 1) & ~hull
                img[shadow] *= 0.55
                tone = rng.uniform(150, 235)
                img[hull] = tone + rng.normal(0, 8, (int(hull.sum()), 3))
                ships.append(hull)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "train_v2" / image_id, quality=quality)
        if ships:
            rows += [f"{image_id},{rle_encode(s.astype(np.uint8))}" for s in ships]
        else:
            rows.append(f"{image_id},")
    write_text_atomic(root / "train_ship_segmentations_v2.csv", "\n".join(rows) + "\n")
    return root


def cached(cache_dir: str | Path | None = None, **params) -> tuple[Path, bool]:
    """The synthetic data set for ``params``, generated once into the cache; (path, generated_now)."""
    key_src = json.dumps({"version": VERSION, **params}, sort_keys=True, default=list)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:10]
    base = Path(cache_dir) if cache_dir else default_cache_root()
    final = base / f"airbus_synthetic_{key}"
    if (final / "DONE").is_file():
        return final, False
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".airbus_synthetic_{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    generate(tmp, **params)
    (tmp / "params.json").write_text(key_src)
    (tmp / "DONE").write_text("ok\n")
    try:
        # the whole directory in one rename (imbal.io.atomic_path renames single files);
        # another process may have won the race
        os.replace(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / "DONE").is_file():
            raise
    return final, True
