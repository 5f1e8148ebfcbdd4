"""Evaluation metrics, built on torchmetrics (which also syncs them across DDP ranks).

Names are fixed (``summary.json`` readers rely on them): ``accuracy``,
``balanced_accuracy`` (mean per-class recall), ``macro_f1``, ``log_loss`` and
the vector ``per_class_recall``.  Added for long-tail data: ``ece`` (expected
calibration error, 15 equal-width bins, multiclass and binary) and, when the
data has training class counts, ``many_shot_accuracy`` / ``medium_shot_accuracy``
/ ``few_shot_accuracy`` (mean per-class recall over classes with >100, 20-100,
<20 training samples; a group with no class is left out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassRecall,
    MultilabelAccuracy,
    MultilabelF1Score,
    MultilabelRecall,
)

from imbal.data.stats import DataStats

SCALAR_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")

#: Shot groups of Liu et al. (2019, OLTR) / Kang et al. (2020): name -> (min, max) training samples, inclusive.
SHOT_GROUPS = {"many_shot_accuracy": (101, None), "medium_shot_accuracy": (20, 100), "few_shot_accuracy": (0, 19)}
ECE_BINS = 15


def shot_groups(class_counts) -> dict[str, list[int]]:
    """Class ids of each non-empty shot group (many: >100, medium: 20-100, few: <20 training samples)."""
    out = {}
    for name, (lo, hi) in SHOT_GROUPS.items():
        ids = [i for i, n in enumerate(class_counts) if n >= lo and (hi is None or n <= hi)]
        if ids:
            out[name] = ids
    return out


def hard_predictions(logits: Tensor, task: str, threshold: float = 0.5) -> Tensor:
    """Class ids (multiclass, binary) or 0/1 label indicators (multilabel)."""
    if task == "multiclass":
        return logits.argmax(dim=-1)
    return (torch.sigmoid(logits.float()) > threshold).long()


def per_sample_log_loss(logits: Tensor, target: Tensor, task: str) -> Tensor:
    """Negative log-likelihood of the true label(s), per sample."""
    if task == "multiclass":
        return F.cross_entropy(logits.float(), target, reduction="none")
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return loss.reshape(loss.shape[0], -1).mean(dim=1) if loss.ndim > 1 else loss


class ClassificationMetrics(nn.Module):
    """Accumulates predictions of one split (val or test) and computes the named metrics."""

    def __init__(self, stats: DataStats):
        super().__init__()
        self.task = stats.task
        if stats.task == "multilabel":
            k = dict(num_labels=stats.num_classes)
            self.collection = MetricCollection(
                {
                    "accuracy": MultilabelAccuracy(average="micro", **k),
                    "balanced_accuracy": MultilabelRecall(average="macro", **k),
                    "macro_f1": MultilabelF1Score(average="macro", **k),
                    "per_class_recall": MultilabelRecall(average="none", **k),
                }
            )
        else:
            # binary tasks are scored as two-class problems on hard predictions,
            # so "balanced accuracy" is the mean of the two recalls as usual.
            k = dict(num_classes=stats.num_classes)
            self.collection = MetricCollection(
                {
                    "accuracy": MulticlassAccuracy(average="micro", **k),
                    "balanced_accuracy": MulticlassRecall(average="macro", **k),
                    "macro_f1": MulticlassF1Score(average="macro", **k),
                    "per_class_recall": MulticlassRecall(average="none", **k),
                }
            )
        self.log_loss = MeanMetric()
        # Long-tail additions: calibration and shot-group accuracy (computed
        # from the per-class recalls, so they sync across ranks with them).
        self.calibration = None
        if stats.task == "multiclass":
            from torchmetrics.classification import MulticlassCalibrationError

            self.calibration = MulticlassCalibrationError(num_classes=stats.num_classes, n_bins=ECE_BINS, norm="l1")
        elif stats.task == "binary":
            from torchmetrics.classification import BinaryCalibrationError

            self.calibration = BinaryCalibrationError(n_bins=ECE_BINS, norm="l1")
        counts = stats.class_counts
        self.shot_groups = shot_groups(counts) if (counts is not None and stats.task == "multiclass") else {}

    def update(self, logits: Tensor, target: Tensor) -> None:
        preds = hard_predictions(logits, self.task)
        tgt = target.long()
        self.collection.update(preds, tgt)
        self.log_loss.update(per_sample_log_loss(logits, target, self.task))
        if self.calibration is not None:
            # probabilities, not logits: torchmetrics would only guess from the value range
            if self.task == "multiclass":
                probs = torch.softmax(logits.float(), dim=-1)
            else:
                probs = torch.sigmoid(logits.float().reshape(-1))
            self.calibration.update(probs, tgt.reshape(-1) if self.task == "binary" else tgt)

    def compute(self) -> dict:
        out = {k: v for k, v in self.collection.compute().items()}
        out["log_loss"] = self.log_loss.compute()
        result = {k: float(v) for k, v in out.items() if k != "per_class_recall"}
        result["per_class_recall"] = [float(x) for x in out["per_class_recall"]]
        if self.calibration is not None:
            result["ece"] = float(self.calibration.compute())
        recall = result["per_class_recall"]
        for name, ids in self.shot_groups.items():
            result[name] = sum(recall[i] for i in ids) / len(ids)
        return result

    def reset(self) -> None:
        self.collection.reset()
        self.log_loss.reset()
        if self.calibration is not None:
            self.calibration.reset()


def build_metrics(stats: DataStats) -> nn.Module:
    """The metric accumulator for a task kind (``update(logits, target)``, ``compute() -> dict``, ``reset()``)."""
    if stats.task == "segmentation":
        from imbal.metrics_seg import SegmentationMetrics  # the segmentation issue's module

        return SegmentationMetrics(stats)
    return ClassificationMetrics(stats)


from imbal.metrics_seg import airbus_f2  # noqa: E402,F401  (public: imbal.metrics.airbus_f2)
