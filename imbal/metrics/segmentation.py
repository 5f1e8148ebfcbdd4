"""Segmentation metrics: pixel Dice / IoU, and the Airbus Ship Detection F2 score over ship instances.

Names in ``summary.json`` (``val`` / ``test``): ``dice``, ``iou``, ``precision``,
``recall`` (pixel-level, over the whole split), ``accuracy`` and
``balanced_accuracy`` (pixel-level; the latter is the mean of the background
and foreground recalls, kept so checkpointing on ``val/balanced_accuracy``
works for every task), ``airbus_f2`` (mean over images of the competition
score) and ``image_accuracy`` (ship / no-ship decision per image: "ship" when
any pixel is predicted).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import SumMetric
from torchmetrics.classification import BinaryStatScores

#: IoU thresholds of the competition: 0.50, 0.55, ..., 0.95 (rounded so that
#: ``iou > t`` compares with the exact decimal value: IoU 0.6 does not pass 0.6).
AIRBUS_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))

#: 8-connectivity for predicted instances (scikit-image's default for 2-D labels).
_STRUCTURE_8 = np.ones((3, 3), dtype=bool)


def label_components(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Connected components of a 2-D 0/1 mask (``scipy.ndimage.label``): label image and count."""
    from scipy import ndimage

    structure = _STRUCTURE_8 if connectivity == 8 else None  # None: 4-connectivity
    lab, n = ndimage.label(np.asarray(mask) != 0, structure=structure)
    return lab, int(n)


def instance_ious(pred_labels: np.ndarray, n_pred: int, true_instances: Sequence[np.ndarray]) -> np.ndarray:
    """IoU matrix ``[n_pred, n_true]`` between labelled predicted components and true instance masks."""
    pred_area = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)[1:].astype(np.float64)
    out = np.zeros((n_pred, len(true_instances)), dtype=np.float64)
    for j, inst in enumerate(true_instances):
        t = np.asarray(inst) != 0
        area_t = float(t.sum())
        # intersections with every predicted component, from the labels under this ship only
        inter = np.bincount(pred_labels[t], minlength=n_pred + 1)[1:].astype(np.float64)
        union = pred_area + area_t - inter
        out[:, j] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return out


def f2_from_ious(ious: np.ndarray, thresholds: Sequence[float] = AIRBUS_THRESHOLDS, beta: float = 2.0) -> float:
    """Airbus score of one image from its IoU matrix ``[n_pred, n_true]``.

    Per threshold t: a true ship is a TP when some prediction has IoU > t with
    it, FN otherwise; a prediction matching no ship is a FP.  F_beta =
    (1+b^2) TP / ((1+b^2) TP + b^2 FN + FP), averaged over thresholds.  No
    ships and no prediction scores 1; otherwise an empty side scores 0.
    """
    n_pred, n_true = ious.shape
    if n_true == 0 and n_pred == 0:
        return 1.0
    if n_true == 0 or n_pred == 0:
        return 0.0
    b2 = beta * beta
    scores = []
    for t in thresholds:
        hit = ious > t  # for t >= 0.5 and disjoint ships, each ship matches at most one prediction
        tp = int(hit.any(axis=0).sum())
        fn = n_true - tp
        fp = n_pred - int(hit.any(axis=1).sum())
        scores.append((1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp))
    return float(np.mean(scores))


def airbus_f2(
    pred_mask: np.ndarray,
    true_instances: Sequence[np.ndarray],
    *,
    thresholds: Sequence[float] = AIRBUS_THRESHOLDS,
    connectivity: int = 8,
) -> float:
    """Airbus Ship Detection score of one image.

    Args:
        pred_mask: 2-D 0/1 predicted mask; its connected components
            (8-connectivity by default) are the predicted ships.
        true_instances: one 2-D 0/1 mask per true ship (empty list: no ship).
        thresholds: IoU thresholds (default 0.50:0.05:0.95); a match needs IoU > t.

    Returns:
        The mean over thresholds of F2 = 5TP / (5TP + 4FN + FP).

    Reference:
        Kaggle, Airbus Ship Detection Challenge (2018), "Evaluation".
    """
    lab, n = label_components(pred_mask, connectivity)
    return f2_from_ious(instance_ious(lab, n, list(true_instances)), thresholds)


def airbus_f2_labels(pred_mask: np.ndarray, true_labels: np.ndarray, **kwargs) -> float:
    """:func:`airbus_f2` with the true ships given as one label image (0 = background, k = ship k)."""
    true_labels = np.asarray(true_labels)
    ids = np.flatnonzero(np.bincount(true_labels.ravel())[1:]) + 1  # labels present (a bincount, not a sort)
    return airbus_f2(pred_mask, [true_labels == k for k in ids], **kwargs)


class SegmentationMetrics(nn.Module):
    """Accumulates one split's binary-segmentation metrics (torchmetrics states: synced under DDP).

    ``update(logits, target, instances=None)``: logits ``[N, 1, H, W]`` (or
    ``[N, H, W]``), target ``[N, H, W]`` 0/1, optional ``instances`` ``[N, H, W]``
    integer labels of the true ships (0 = background).  Without instances the
    connected components of the target stand in for them (touching ships then
    count as one).  A pixel is predicted positive when ``sigmoid(logit) > threshold``.
    """

    def __init__(self, stats=None, *, threshold: float = 0.5, connectivity: int = 8):
        super().__init__()
        self.threshold = float(threshold)
        self.connectivity = connectivity
        self.pixels = BinaryStatScores(threshold=threshold, multidim_average="global")
        self.f2_sum = SumMetric()
        self.image_correct = SumMetric()
        self.n_images = SumMetric()

    def update(self, logits: Tensor, target: Tensor, instances: Tensor | None = None) -> None:
        x = logits.detach().float()
        if x.ndim == 4:
            if x.shape[1] != 1:
                raise ValueError(f"SegmentationMetrics expects one logit channel, got logits of shape {tuple(x.shape)}")
            x = x[:, 0]
        t = (target.detach() > 0.5).long()
        if t.ndim == 4:
            t = t[:, 0]
        if t.shape != x.shape:
            raise ValueError(f"logits of shape {tuple(logits.shape)} do not match target of shape {tuple(target.shape)}")
        probs = torch.sigmoid(x)
        self.pixels.update(probs, t)
        pred = (probs > self.threshold).cpu().numpy()
        true = t.cpu().numpy()
        inst = instances.detach().cpu().numpy() if instances is not None else None
        f2, correct = 0.0, 0
        for i in range(pred.shape[0]):
            if inst is not None:
                lab = inst[i]
            else:
                lab, _ = label_components(true[i], self.connectivity)
            f2 += airbus_f2_labels(pred[i], lab, connectivity=self.connectivity)
            correct += int(bool(pred[i].any()) == bool(true[i].any()))
        dev = self.n_images.device
        self.f2_sum.update(torch.tensor(f2, dtype=torch.float64, device=dev))
        self.image_correct.update(torch.tensor(float(correct), device=dev))
        self.n_images.update(torch.tensor(float(pred.shape[0]), device=dev))

    def compute(self) -> dict[str, float]:
        tp, fp, tn, fn, _ = (float(v) for v in self.pixels.compute())
        n = float(self.n_images.compute())

        def ratio(a: float, b: float, empty: float) -> float:
            # empty: the value when nothing is positive, neither predicted nor true (perfect)
            return a / b if b > 0 else empty

        return {
            "dice": ratio(2 * tp, 2 * tp + fp + fn, 1.0),
            "iou": ratio(tp, tp + fp + fn, 1.0),
            "precision": ratio(tp, tp + fp, 1.0),
            "recall": ratio(tp, tp + fn, 1.0),
            "accuracy": ratio(tp + tn, tp + tn + fp + fn, 1.0),
            "balanced_accuracy": 0.5 * (ratio(tp, tp + fn, 1.0) + ratio(tn, tn + fp, 1.0)),
            "airbus_f2": ratio(float(self.f2_sum.compute()), n, float("nan")),
            "image_accuracy": ratio(float(self.image_correct.compute()), n, float("nan")),
        }

    def reset(self) -> None:
        for m in (self.pixels, self.f2_sum, self.image_correct, self.n_images):
            m.reset()
