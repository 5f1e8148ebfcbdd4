"""Classification metrics, built on torchmetrics (which also syncs them across DDP ranks).

Names are fixed (``summary.json`` readers rely on them): ``accuracy``,
``balanced_accuracy`` (mean per-class recall), ``macro_f1``, ``log_loss`` and
the vector ``per_class_recall``.  Added for long-tail data: ``ece`` (expected
calibration error, :mod:`imbal.metrics.calibration`, multiclass and binary) and,
when the data has training class counts, ``many_shot_accuracy`` /
``medium_shot_accuracy`` / ``few_shot_accuracy`` (mean per-class recall over the
shot groups of :data:`imbal.metrics.shots.SHOT_GROUPS`; a group with no class is left out).
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
from imbal.kinds import BINARY, MULTICLASS, MULTILABEL
from imbal.metrics.calibration import ECE_BINS, CalibrationError
from imbal.metrics.shots import shot_groups

SCALAR_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")


def hard_predictions(logits: Tensor, task: str, threshold: float = 0.5) -> Tensor:
    """Class ids (multiclass, binary) or 0/1 label indicators (multilabel)."""
    if task == MULTICLASS:
        return logits.argmax(dim=-1)
    return (torch.sigmoid(logits.float()) > threshold).long()


def per_sample_log_loss(logits: Tensor, target: Tensor, task: str) -> Tensor:
    """Negative log-likelihood of the true label(s), per sample."""
    if task == MULTICLASS:
        return F.cross_entropy(logits.float(), target, reduction="none")
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return loss.reshape(loss.shape[0], -1).mean(dim=1) if loss.ndim > 1 else loss


class ClassificationMetrics(nn.Module):
    """Accumulates predictions of one split (val or test) and computes the named metrics."""

    def __init__(self, stats: DataStats):
        super().__init__()
        self.task = stats.task
        if stats.task == MULTILABEL:
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
        self.calibration = CalibrationError(stats.task, ECE_BINS) if stats.task in (MULTICLASS, BINARY) else None
        counts = stats.class_counts
        self.shot_groups = shot_groups(counts) if (counts is not None and stats.task == MULTICLASS) else {}

    def update(self, logits: Tensor, target: Tensor) -> None:
        preds = hard_predictions(logits, self.task)
        self.collection.update(preds, target.long())
        self.log_loss.update(per_sample_log_loss(logits, target, self.task))
        if self.calibration is not None:
            self.calibration.update(logits, target)

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
