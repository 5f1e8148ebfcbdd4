"""Multi-label ranking metrics: mAP, per-class AP and the head / medium / tail APs of Wu et al. (2020).

``mAP`` is the mean of torchmetrics' ``MultilabelAveragePrecision`` (exact, ``thresholds=None``: the
non-interpolated AP of ``sklearn.metrics.average_precision_score``) over the classes with a positive
in the split; a class without one has no AP (NaN in ``per_class_ap``, ``null`` in ``summary.json``).
``head_ap`` / ``medium_ap`` / ``tail_ap`` average the APs of the classes with more than 100, 20 to 100,
and fewer than 20 training positives (the thresholds of :data:`imbal.metrics.shots.SHOT_GROUPS`, as Wu et
al. 2020 split COCO-MLT and VOC-MLT); a group with no class (or none present in the split) is left out.
The AP state is every score and target of the split, gathered across DDP ranks by torchmetrics.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import Tensor, nn

from imbal.metrics.shots import shot_groups

#: ``summary.json`` names of the AP of each training-frequency group, by shot group
AP_GROUPS = {"many_shot_accuracy": "head_ap", "medium_shot_accuracy": "medium_ap", "few_shot_accuracy": "tail_ap"}
#: scalar metrics a multilabel run adds (``optimized_metric`` may name them)
MULTILABEL_METRICS = ("mAP", "micro_f1", "head_ap", "medium_ap", "tail_ap")


def ap_groups(class_counts: Sequence[int] | None) -> dict[str, list[int]]:
    """``{head_ap|medium_ap|tail_ap: class ids}`` of the non-empty groups (by training positives)."""
    if class_counts is None:
        return {}
    return {AP_GROUPS[name]: ids for name, ids in shot_groups(class_counts).items()}


class AveragePrecision(nn.Module):
    """mAP, per-class AP and the group APs of one split (``update(logits, target)``, ``compute()``)."""

    def __init__(self, num_classes: int, class_counts: Sequence[int] | None = None):
        super().__init__()
        from torchmetrics.classification import MultilabelAveragePrecision

        self.ap = MultilabelAveragePrecision(num_labels=num_classes, average=None, thresholds=None)
        self.groups = ap_groups(class_counts)

    def update(self, logits: Tensor, target: Tensor) -> None:
        # probabilities, not logits: torchmetrics applies a sigmoid only to a batch with a value outside
        # [0, 1], so a batch of small logits would be read as probabilities; float64 delays ties at 0 and 1
        self.ap.update(torch.sigmoid(logits.detach().double()), target.long())

    def compute(self, support: Tensor) -> dict:
        """The metrics, given ``support``: the split's positives per class, synced across ranks (the
        caller's confusion matrix; after ``compute`` torchmetrics restores this rank's own state)."""
        with warnings.catch_warnings():  # a class without positive: "recall is undefined"; NaN below
            warnings.simplefilter("ignore", UserWarning)
            ap = self.ap.compute().cpu().double()
        present = support.cpu() > 0
        ap = torch.where(present, ap, torch.full_like(ap, float("nan")))
        out = {
            "mAP": float(ap[present].mean()) if bool(present.any()) else float("nan"),
            "per_class_ap": [float(v) for v in ap],
        }
        for name, ids in self.groups.items():
            seen = [float(ap[i]) for i in ids if bool(present[i])]
            if seen:
                out[name] = sum(seen) / len(seen)
        return out

    def reset(self) -> None:
        self.ap.reset()
