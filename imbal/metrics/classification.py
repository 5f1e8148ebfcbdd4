"""Classification metrics, built on torchmetrics (which also syncs them across DDP ranks).

Names are fixed (``summary.json`` readers rely on them): ``accuracy``,
``balanced_accuracy`` (mean per-class recall), ``macro_f1``, ``log_loss`` and
the vector ``per_class_recall``.  Added for long-tail data: ``ece`` (expected
calibration error, :mod:`imbal.metrics.calibration`, multiclass and binary) and,
when the data has training class counts, ``many_shot_accuracy`` /
``medium_shot_accuracy`` / ``few_shot_accuracy`` (mean per-class recall over the
shot groups of :data:`imbal.metrics.shots.SHOT_GROUPS`; a group with no class is left out).

Macro averages are taken over the classes *present* in the split's targets
(:func:`macro_scores`): a class with no sample in the split has no recall, so it
is neither counted as 0 nor as 1 (torchmetrics' ``average="macro"`` counts such a
class as 0 whenever it was predicted).  Its ``per_class_recall`` entry is NaN
(``null`` in ``summary.json``), and a shot group whose classes are all absent is
left out.  All of it is computed from one confusion matrix, so it syncs across
DDP ranks as one torchmetrics state.

Multilabel tasks add ``micro_f1`` (over all label cells, at the 0.5 rule as ``macro_f1``; the post-hoc
``threshold`` reports both at a threshold tuned on validation) and the ranking metrics of
:mod:`imbal.metrics.multilabel`: ``mAP``, ``per_class_ap``, ``head_ap`` / ``medium_ap`` / ``tail_ap``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix, MultilabelConfusionMatrix

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


def macro_scores(tp: Tensor, support: Tensor, predicted: Tensor) -> dict:
    """Per-class recall and the macro averages over the classes present (``support > 0``).

    ``tp``, ``support`` (true samples of each class) and ``predicted`` (samples predicted as
    it) are per-class counts.  Returns ``balanced_accuracy`` (mean recall), ``macro_f1``,
    ``macro_precision`` (a present class never predicted has precision 0), each over the
    present classes (NaN when none is), and ``per_class_recall`` (NaN for an absent class).
    Targets ``[0, 0, 1, 1]`` predicted ``[0, 0, 1, 2]`` with 3 classes give recalls
    ``[1.0, 0.5, nan]`` and a balanced accuracy of 0.75, not 0.5.
    """
    tp, support, predicted = tp.double(), support.double(), predicted.double()
    present = support > 0
    nan = torch.full_like(tp, float("nan"))
    recall = torch.where(present, tp / support.clamp(min=1), nan)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    f1 = 2 * tp / (support + predicted).clamp(min=1)

    def mean(v: Tensor) -> float:
        return float(v[present].mean()) if bool(present.any()) else float("nan")

    return {
        "balanced_accuracy": mean(recall),
        "macro_f1": mean(f1),
        "macro_precision": mean(precision),
        "per_class_recall": [float(x) for x in recall],
    }


def absent_classes(per_class_recall, class_names) -> list[str]:
    """Names of the classes a split has no sample of: the NaN (or, read back from JSON, null) recalls."""
    return [
        str(class_names[i]) if i < len(class_names) else str(i)
        for i, r in enumerate(per_class_recall or [])
        if r is None or r != r
    ]


class ClassificationMetrics(nn.Module):
    """Accumulates predictions of one split (val or test) and computes the named metrics."""

    def __init__(self, stats: DataStats):
        super().__init__()
        self.task = stats.task
        # binary tasks are scored as two-class problems on hard predictions, so "balanced
        # accuracy" is the mean of the two recalls as usual
        if stats.task == MULTILABEL:
            self.confusion = MultilabelConfusionMatrix(num_labels=stats.num_classes)
        else:
            self.confusion = MulticlassConfusionMatrix(num_classes=stats.num_classes)
        self.log_loss = MeanMetric()
        # Long-tail additions: calibration and shot-group accuracy (computed
        # from the per-class recalls, so they sync across ranks with them).
        self.calibration = CalibrationError(stats.task, ECE_BINS) if stats.task in (MULTICLASS, BINARY) else None
        counts = stats.class_counts
        self.shot_groups = shot_groups(counts) if (counts is not None and stats.task == MULTICLASS) else {}
        self.ranking = None
        if stats.task == MULTILABEL:
            from imbal.metrics.multilabel import AveragePrecision

            self.ranking = AveragePrecision(stats.num_classes, counts)

    def update(self, logits: Tensor, target: Tensor) -> None:
        preds = hard_predictions(logits, self.task)
        self.confusion.update(preds, target.long())
        self.log_loss.update(per_sample_log_loss(logits, target, self.task))
        if self.calibration is not None:
            self.calibration.update(logits, target)
        if self.ranking is not None:
            self.ranking.update(logits, target)

    def compute(self) -> dict:
        cm = self.confusion.compute().cpu().double()  # float64 on the CPU (MPS has no float64)
        if self.task == MULTILABEL:  # [L, 2, 2]: [[tn, fp], [fn, tp]] per label
            tp, support, predicted = cm[:, 1, 1], cm[:, 1].sum(-1), cm[:, :, 1].sum(-1)
            correct, total = cm[:, 0, 0].sum() + tp.sum(), cm.sum()  # micro accuracy over all label cells
        else:  # [C, C]: rows are targets, columns predictions
            tp, support, predicted = cm.diagonal(), cm.sum(1), cm.sum(0)
            correct, total = tp.sum(), cm.sum()
        scores = macro_scores(tp, support, predicted)
        result = {
            "accuracy": float(correct / total) if total > 0 else float("nan"),
            "balanced_accuracy": scores["balanced_accuracy"],
            "macro_f1": scores["macro_f1"],
            "log_loss": float(self.log_loss.compute()),
            "per_class_recall": scores["per_class_recall"],
        }
        if self.calibration is not None:
            result["ece"] = float(self.calibration.compute())
        if self.ranking is not None:
            pooled = float(support.sum() + predicted.sum())
            result["micro_f1"] = float(2 * tp.sum() / pooled) if pooled > 0 else float("nan")
            result.update(self.ranking.compute(support))
        recall = result["per_class_recall"]
        for name, ids in self.shot_groups.items():
            seen = [recall[i] for i in ids if recall[i] == recall[i]]  # NaN: class absent from the split
            if seen:
                result[name] = sum(seen) / len(seen)
        return result

    def reset(self) -> None:
        self.confusion.reset()
        self.log_loss.reset()
        if self.calibration is not None:
            self.calibration.reset()
        if self.ranking is not None:
            self.ranking.reset()
