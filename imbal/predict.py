"""Prediction export: a Kaggle Airbus submission CSV (``ImageId,EncodedPixels``) for a folder of images.

One row per predicted ship (a connected component of the thresholded
probability map, 8-connectivity, so the rows never overlap), one row with an
empty ``EncodedPixels`` for an image without a predicted ship.

    from imbal.predict import predict_run
    predict_run("outputs/2026-01-01/12-00-00", "test_v2", "submission.csv")
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from imbal.data.airbus import read_rgb, resize_image, to_tensor_image
from imbal.data.rle import rle_encode
from imbal.errors import ImbalError
from imbal.metrics_seg import label_components

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


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
) -> dict[str, int]:
    """Write ``out_csv`` for every image in ``image_dir``; returns counts (images, ships, rows)."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise ImbalError(f"predict: image folder {image_dir} not found")
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ImbalError(f"predict: no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_csv.with_name(f".{out_csv.name}.tmp")
    n_ships = n_rows = 0
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageId", "EncodedPixels"])
        for path, mask in predict_masks(model, paths, threshold=threshold, batch_size=batch_size, device=device,
                                        resize=resize):
            rles = instance_rles(mask, min_size=min_size, image_id=path.name)
            for rle in rles or [""]:
                w.writerow([path.name, rle])
                n_rows += 1
            n_ships += len(rles)
    tmp.replace(out_csv)
    return {"images": len(paths), "ships": n_ships, "rows": n_rows}


def load_run_model(run_dir: str | Path, checkpoint: str | Path | None = None) -> nn.Module:
    """The trained model of a run directory (its ``summary.json`` config and best checkpoint).

    Rebuilds the parts with :func:`imbal.run.build_parts` (the data module is
    set up, as in training, for its statistics) and loads the checkpoint's weights.
    """
    from omegaconf import OmegaConf

    from imbal.run import build_parts

    run_dir = Path(run_dir)
    info = _run_summary(run_dir)
    cfg = OmegaConf.create(info["config"])
    ckpt = Path(checkpoint) if checkpoint else Path(info.get("best_checkpoint") or run_dir / "checkpoints" / "last.ckpt")
    if not ckpt.is_file():
        raise ImbalError(f"predict: checkpoint {ckpt} not found")
    _, _, task = build_parts(cfg)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    task.load_state_dict(state)
    return task.eval()


def _run_summary(run_dir: Path) -> dict:
    summary = run_dir / "summary.json"
    if not summary.is_file():
        raise ImbalError(f"predict: {summary} not found; expected the directory of a finished run")
    return json.loads(summary.read_text())


def predict_run(run_dir: str | Path, image_dir: str | Path, out_csv: str | Path, **kwargs) -> dict[str, int]:
    """:func:`write_submission` with the model of a finished run (and its ``data.resize``)."""
    if "resize" not in kwargs:
        kwargs["resize"] = ((_run_summary(Path(run_dir)).get("config") or {}).get("data") or {}).get("resize")
    return write_submission(load_run_model(run_dir), image_dir, out_csv, **kwargs)
