"""Evaluation metrics: one accumulator per task kind (:func:`build_metrics`) and the definitions behind them.

* :mod:`~imbal.metrics.classification`: :class:`ClassificationMetrics` (accuracy, balanced
  accuracy, macro-F1, log loss, per-class recall, ECE, shot-group accuracy);
* :mod:`~imbal.metrics.segmentation`: :class:`SegmentationMetrics` (Dice, IoU, the Airbus F2);
* :mod:`~imbal.metrics.calibration`: expected calibration error and its reliability bins;
* :mod:`~imbal.metrics.shots`: the many / medium / few-shot groups.

Names are loaded on first use, so reading :data:`SHOT_GROUPS` (``imbal report``) imports
neither torch nor torchmetrics.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from imbal.kinds import SEGMENTATION

if TYPE_CHECKING:
    from torch import nn

    from imbal.data.stats import DataStats
    from imbal.metrics.calibration import (
        ECE_BINS,
        CalibrationError,
        calibration_inputs,
        expected_calibration_error,
        reliability_bins,
    )
    from imbal.metrics.classification import (
        SCALAR_METRICS,
        ClassificationMetrics,
        absent_classes,
        hard_predictions,
        macro_scores,
        per_sample_log_loss,
    )
    from imbal.metrics.segmentation import SegmentationMetrics, airbus_f2, airbus_f2_labels, label_components
    from imbal.metrics.shots import MEDIUM_MAX, MEDIUM_MIN, SHOT_GROUPS, shot_groups

_WHERE = {
    **dict.fromkeys(
        ("ECE_BINS", "CalibrationError", "calibration_inputs", "expected_calibration_error", "reliability_bins"),
        "calibration",
    ),
    **dict.fromkeys(("SCALAR_METRICS", "ClassificationMetrics", "absent_classes", "hard_predictions", "macro_scores",
                     "per_sample_log_loss"), "classification"),
    **dict.fromkeys(("SegmentationMetrics", "airbus_f2", "airbus_f2_labels", "label_components"), "segmentation"),
    **dict.fromkeys(("MEDIUM_MAX", "MEDIUM_MIN", "SHOT_GROUPS", "shot_groups"), "shots"),
}

__all__ = [
    "CalibrationError",
    "ClassificationMetrics",
    "ECE_BINS",
    "MEDIUM_MAX",
    "MEDIUM_MIN",
    "SCALAR_METRICS",
    "SHOT_GROUPS",
    "SegmentationMetrics",
    "absent_classes",
    "airbus_f2",
    "airbus_f2_labels",
    "build_metrics",
    "calibration_inputs",
    "expected_calibration_error",
    "hard_predictions",
    "label_components",
    "macro_scores",
    "per_sample_log_loss",
    "reliability_bins",
    "shot_groups",
]


def build_metrics(stats: DataStats) -> nn.Module:
    """The metric accumulator for a task kind (``update(logits, target)``, ``compute() -> dict``, ``reset()``)."""
    if stats.task == SEGMENTATION:
        from imbal.metrics.segmentation import SegmentationMetrics

        return SegmentationMetrics(stats)
    from imbal.metrics.classification import ClassificationMetrics

    return ClassificationMetrics(stats)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'imbal.metrics' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"imbal.metrics.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
