"""Soft F-beta loss from probability sums."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import BINARY, MULTILABEL, SIGMOID
from imbal.losses.base import ImbalanceLoss, elementwise, check_reduction, no_autocast, reduce


def soft_fbeta_loss(
    logits: Tensor, target: Tensor, *, beta: float = 1.0, per_label: bool = True, reduction: str = "mean"
) -> Tensor:
    """``1 - F_beta`` per class with TP, FP, FN summed over the batch from probabilities.

    ``F = (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP) = (1 + b^2) TP / (b^2 P + sum p)``,
    with ``P = sum t`` the positives in the batch.  Empty class (P = 0, F undefined):
    its loss is the mean predicted probability, the soft false-positive rate
    ``FP / M`` over its M elements: 0 when nothing is predicted positive, 1 when
    everything is, and a gradient that pushes its probabilities down.

    ``per_label``: the last axis holds separate labels (multilabel ``[N, C]``);
    otherwise every element is one class (binary ``[N]``, segmentation ``[N, 1, H, W]``).
    Returns the ``[C]`` class losses reduced by ``reduction`` (``mean`` over classes).
    """
    x, t = elementwise(logits, target)
    if per_label and x.ndim >= 2:
        x, t = x.reshape(-1, x.shape[-1]), t.reshape(-1, t.shape[-1])
    else:
        x, t = x.reshape(-1, 1), t.reshape(-1, 1)
    p = torch.sigmoid(x)
    b2 = beta * beta
    tp = (p * t).sum(0)
    pos = t.sum(0)
    sum_p = p.sum(0)
    empty = pos <= 0
    f = (1 + b2) * tp / (b2 * pos + sum_p).clamp_min(torch.finfo(p.dtype).tiny)
    # the empty class's loss, the mean probability, from the sum already taken
    loss = torch.where(empty, sum_p / p.shape[0], 1 - f)
    return reduce(loss, reduction)


class SoftFBetaLoss(ImbalanceLoss):
    """Soft F-beta loss: ``1 - F_beta`` computed from sigmoid probabilities instead of hard counts.

    A batch-level loss (the sums run over the whole batch, and for segmentation
    over every pixel), so it optimises the F-score directly under imbalance;
    multilabel: one F per label, averaged.  See :func:`soft_fbeta_loss` for the
    empty-class rule.

    Args:
        beta: weight of recall over precision, > 0 (default 1: F1; Airbus: 2).
        reduction: ``mean`` (over classes) | ``sum`` | ``none`` (``[C]``).

    Shape:
        binary: ``[N]`` / ``[N]``; multilabel: ``[N, C]`` / ``[N, C]``;
        segmentation (binary): logits ``[N, 1, H, W]``, target ``[N, H, W]`` float.

    Reference:
        Lipton, Elkan, Naryanaswamy. Optimal Thresholding of Classifiers to Maximize
        F1 Measure. ECML 2014; the soft (probabilistic) F-score as in Milletari et
        al.'s soft Dice (F1 = Dice).
    """

    tasks = SIGMOID

    def __init__(self, *, beta: float = 1.0, reduction: str = "mean", task: str = BINARY):
        super().__init__()
        if not (float(beta) > 0 and math.isfinite(float(beta))):
            raise ImbalError(f"loss 'fbeta': beta must be a finite number > 0, got {beta!r}")
        self.beta = float(beta)
        self.task = task
        self.reduction = check_reduction(reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            return soft_fbeta_loss(
                logits, target, beta=self.beta, per_label=self.task == MULTILABEL, reduction=self.reduction
            )
