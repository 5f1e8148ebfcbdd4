"""A Lightning callback that saves image / truth / prediction overlays of a few validation images each epoch."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from imbal.data.segmentation.transforms import denormalize
from imbal.kinds import SEGMENTATION


def overlay(rgb: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], alpha: float = 0.6) -> np.ndarray:
    """``rgb`` (uint8 [H, W, 3]) with ``mask`` pixels blended towards ``color``."""
    out = rgb.astype(np.float32).copy()
    m = mask.astype(bool)
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color, np.float32)
    return out.astype(np.uint8)


def overlay_grid(images: torch.Tensor, truth: torch.Tensor, pred: torch.Tensor, *, gap: int = 4) -> np.ndarray:
    """One row per image: the image, the truth in red, the prediction in green (uint8 [H', W', 3]).

    Args:
        images: ``[N, 3, H, W]`` floats in [0, 1]; truth, pred: ``[N, H, W]`` 0/1.
    """
    rows = []
    for img, t, p in zip(images, truth, pred):
        rgb = (img.permute(1, 2, 0).cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
        if rgb.shape[2] == 1:
            rgb = np.repeat(rgb, 3, axis=2)
        tiles = [rgb, overlay(rgb, t.cpu().numpy() > 0.5, (255, 40, 40)), overlay(rgb, p.cpu().numpy() > 0.5, (40, 255, 40))]
        sep = np.full((rgb.shape[0], gap, 3), 255, np.uint8)
        rows.append(np.concatenate([tiles[0], sep, tiles[1], sep, tiles[2]], axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


class SegmentationOverlay(L.Callback):
    """Saves ``<dirpath>/epoch_<NNN>.png``: image / truth (red) / prediction (green) for ``n_images`` validation images.

    The images are the first validation images with foreground (then others),
    fixed for the run, so epochs can be compared.  Written on rank 0 only.  On a task other than
    ``segmentation`` (``data=airbus data.target=presence`` keeps ``callbacks=segmentation``) it
    saves nothing.

    Args:
        n_images: rows of the grid.
        dirpath: output folder (default ``<run dir>/overlays``).
        every_n_epochs: save every n-th validation epoch.
        threshold: probability above which a pixel is predicted foreground.
        max_side: images are shown down-scaled to at most this side (pixels).
    """

    def __init__(self, *, n_images: int = 4, dirpath: str | None = None, every_n_epochs: int = 1,
                 threshold: float = 0.5, max_side: int = 384):
        super().__init__()
        self.n_images, self.every_n_epochs = int(n_images), max(1, int(every_n_epochs))
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.threshold, self.max_side = float(threshold), int(max_side)
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self.saved: list[Path] = []

    def _pick(self, trainer: L.Trainer):
        dm = trainer.datamodule
        ds = dm.eval_dataset("val") if hasattr(dm, "eval_dataset") else trainer.val_dataloaders.dataset
        with_fg, without = [], []
        for i in range(len(ds)):
            item = ds[i]
            (with_fg if item[1].any() else without).append(item)
            if len(with_fg) >= self.n_images:
                break
        chosen = (with_fg + without)[: self.n_images]
        if not chosen:
            return None
        return torch.stack([c[0] for c in chosen]), torch.stack([c[1] for c in chosen])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if getattr(pl_module, "task_kind", SEGMENTATION) != SEGMENTATION:
            return  # image-level labels: no masks to draw
        if trainer.current_epoch % self.every_n_epochs:
            return
        if self._batch is None:
            self._batch = self._pick(trainer)
            if self._batch is None:
                return
        x, y = self._batch
        with torch.no_grad():
            logits = pl_module(x.to(pl_module.device)).float().cpu()
        pred = (torch.sigmoid(logits[:, 0]) > self.threshold).float()
        images = denormalize(x)
        side = max(x.shape[-2:])
        if side > self.max_side:  # nearest down-scaling keeps the masks binary
            size = [int(round(s * self.max_side / side)) for s in x.shape[-2:]]
            images = torch.nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
            y = torch.nn.functional.interpolate(y[:, None], size=size, mode="nearest")[:, 0]
            pred = torch.nn.functional.interpolate(pred[:, None], size=size, mode="nearest")[:, 0]
        from PIL import Image

        out_dir = self.dirpath or Path(trainer.default_root_dir) / "overlays"
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"epoch_{trainer.current_epoch:03d}.png"
        Image.fromarray(overlay_grid(images, y, pred)).save(path)
        self.saved.append(path)
