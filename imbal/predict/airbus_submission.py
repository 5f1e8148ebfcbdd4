"""A Kaggle Airbus submission CSV (``ImageId,EncodedPixels``) for a folder of images.

With a gate, TTA or watershed instances: :mod:`imbal.predict.pipeline`.

One row per predicted ship (a connected component of the thresholded
probability map, 8-connectivity, so the rows never overlap), one row with an
empty ``EncodedPixels`` for an image without a predicted ship.
:func:`imbal.predict.predict_run` calls :func:`write_submission` with a finished run's model.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from imbal.data.segmentation.rle import rle_encode
from imbal.data.segmentation.transforms import IMAGE_SUFFIXES, read_rgb, resize_image, to_tensor_image
from imbal.errors import ImbalError
from imbal.io import atomic_path
from imbal.metrics.segmentation import label_components


def instance_rles(mask: np.ndarray, *, min_size: int = 0, image_id: str | None = None) -> list[str]:
    """RLE strings of the connected components of a 2-D 0/1 mask (components below ``min_size`` pixels dropped)."""
    lab, n = label_components(mask)
    if n == 0:
        return []
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    return [rle_encode(lab == k, image_id=image_id) for k in range(1, n + 1) if sizes[k] >= max(min_size, 1)]


@torch.no_grad()
def predict_masks(
    model: nn.Module, paths: Sequence[Path], *, threshold: float = 0.5, batch_size: int = 2, device: str | None = None,
    resize: int | None = None,
) -> Iterable[tuple[Path, np.ndarray]]:
    """(path, 0/1 mask) per image: ``sigmoid(model(x)) > threshold`` on the whole image.

    With ``resize`` (the run's ``data.resize``) the model sees the image resized to
    ``resize`` x ``resize`` by area, and the mask is scaled back to the image's size
    (nearest neighbour), so the RLE rows refer to the original pixels.
    """
    dev = torch.device(device) if device else next(model.parameters()).device
    model.eval().to(dev)
    for i in range(0, len(paths), batch_size):
        chunk = list(paths[i : i + batch_size])
        imgs = [read_rgb(p, where="predict") for p in chunk]
        sizes = [im.shape[:2] for im in imgs]
        if resize is not None:
            imgs = [resize_image(im, int(resize)) for im in imgs]
        shapes = {im.shape for im in imgs}
        groups = [imgs] if len(shapes) == 1 else [[im] for im in imgs]
        masks = []
        for g in groups:
            x = torch.stack([to_tensor_image(im) for im in g]).to(dev)
            logits = model(x).float()
            masks += list((torch.sigmoid(logits[:, 0]) > threshold).cpu().numpy().astype(np.uint8))
        if resize is not None:
            masks = [_scale_mask(m, hw) for m, hw in zip(masks, sizes)]
        yield from zip(chunk, masks)


def _scale_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if mask.shape == tuple(size):
        return mask
    return np.asarray(Image.fromarray(mask).resize((size[1], size[0]), Image.Resampling.NEAREST)).astype(np.uint8)


def write_submission(
    model: nn.Module,
    image_dir: str | Path,
    out_csv: str | Path,
    *,
    threshold: float = 0.5,
    min_size: int = 0,
    batch_size: int = 2,
    device: str | None = None,
    resize: int | None = None,
    tta: str = "none",
    gate=None,
    watershed: bool = False,
) -> dict[str, int]:
    """Write ``out_csv`` for every image in ``image_dir``; returns counts (images, ships, rows, and with a
    gate the images it rejected).

    ``tta``, ``gate`` (a :class:`imbal.predict.pipeline.Gate`) and ``watershed``: see
    :mod:`imbal.predict.pipeline`.  ``batch_size`` is kept for callers; images run one at a time
    (with TTA, an image's transformed copies form the batch).
    """
    from imbal.predict.pipeline import Segmenter, Settings, image_instances
    from imbal.predict.instances import instance_rles as label_rles
    from imbal.predict.tta import check_mode

    check_mode(tta)
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise ImbalError(f"predict: image folder {image_dir} not found")
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ImbalError(f"predict: no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
    seg = Segmenter(model, resize, device)
    settings = Settings(threshold, min_size)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    n_ships = n_rows = n_rejected = 0
    with atomic_path(out_csv) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageId", "EncodedPixels"])
        for path in paths:
            img = read_rgb(path, where="predict")
            ok = gate is None or gate.accepts(gate.prob(img))
            n_rejected += not ok
            if ok:
                prob, _ = seg.probs(img, tta, image_id=path.name)
                lab, n = image_instances(prob, settings, watershed=watershed)
            else:
                n = 0
            rles = label_rles(lab, n, image_id=path.name) if n else []
            for rle in rles or [""]:
                w.writerow([path.name, rle])
                n_rows += 1
            n_ships += len(rles)
    counts = {"images": len(paths), "ships": n_ships, "rows": n_rows}
    if gate is not None:
        counts["rejected_by_gate"] = n_rejected
    return counts
