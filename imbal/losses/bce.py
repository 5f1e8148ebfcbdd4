"""Sigmoid binary cross-entropy with an optional positive-class weight."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import BINARY, MULTILABEL, SEGMENTATION, SIGMOID
from imbal.losses.base import ImbalanceLoss, elementwise, check_reduction, counts_tensor, no_autocast


def auto_pos_weight(
    class_counts: Sequence[float], *, task: str, num_samples: int | None = None, loss: str = "bce"
) -> Tensor:
    """``n_neg / n_pos`` per output, from the training counts.

    binary / segmentation: class_counts is ``[n_neg, n_pos]`` (DataStats), one weight.
    multilabel: class_counts holds the positives per label; the negatives are
    ``num_samples - n_pos``, so the training-set size must be given.
    A label with no positive example has no finite ratio: an error naming it.
    """
    counts = counts_tensor(class_counts, loss=loss)
    if task in (BINARY, SEGMENTATION):
        if counts.numel() != 2:
            raise ImbalError(
                f"loss '{loss}': pos_weight 'auto' for task '{task}' needs class_counts [n_neg, n_pos], "
                f"got {list(class_counts)!r}"
            )
        neg, pos = counts[0:1], counts[1:2]
        first = 1  # the positive class's index in class_counts
    else:
        if num_samples is None:
            raise ImbalError(
                f"loss '{loss}': pos_weight 'auto' for multilabel needs num_samples (the training-set size), got None"
            )
        if (counts > num_samples).any():
            raise ImbalError(f"loss '{loss}': num_samples={num_samples} is below a label's positive count")
        pos, neg = counts, float(num_samples) - counts
        first = 0
    zero = (pos == 0).nonzero().flatten().tolist()
    if zero:
        raise ImbalError(
            f"loss '{loss}': pos_weight 'auto' divides by the positive count, but class {zero[0] + first} has none"
        )
    return (neg / pos).float()


class BinaryCrossEntropy(ImbalanceLoss):
    """Sigmoid binary cross-entropy with an optional weight on the positive term.

    ``loss = -(pos_weight * t * log sigmoid(x) + (1 - t) * log(1 - sigmoid(x)))``, as
    ``tf.nn.weighted_cross_entropy_with_logits`` and ``F.binary_cross_entropy_with_logits(pos_weight=)``.

    Args:
        pos_weight: ``None`` (unweighted), ``"auto"`` (n_neg / n_pos from the
            training counts, per label), a number, or a list of one weight per label.
        num_samples: training-set size, needed only for ``pos_weight="auto"`` on multilabel data.
        reduction: ``mean`` (over all elements) | ``sum`` | ``none``.

    Shape:
        binary: ``[N]`` / ``[N]``; multilabel: ``[N, C]`` / ``[N, C]``;
        segmentation (binary): logits ``[N, 1, H, W]``, target ``[N, H, W]`` float.

    Reference:
        ``tf.nn.weighted_cross_entropy_with_logits``.
    """

    tasks = SIGMOID

    def __init__(
        self,
        *,
        pos_weight: str | float | Sequence[float] | None = None,
        num_samples: int | None = None,
        reduction: str = "mean",
        task: str = BINARY,
        class_counts: Sequence[int] | None = None,
        num_classes: int | None = None,
    ):
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.task = task
        weight: Tensor | None
        if pos_weight is None:
            weight = None
        elif isinstance(pos_weight, str):
            if pos_weight != "auto":
                raise ImbalError(f"loss 'bce': pos_weight must be None, 'auto', a number or a list, got {pos_weight!r}")
            if class_counts is None:
                raise ImbalError("loss 'bce' with pos_weight 'auto' needs class_counts from the data")
            weight = auto_pos_weight(class_counts, task=task, num_samples=num_samples)
        else:
            weight = torch.as_tensor(pos_weight, dtype=torch.float32).reshape(-1)
            if not torch.isfinite(weight).all() or (weight < 0).any():
                raise ImbalError(f"loss 'bce': pos_weight must be finite and >= 0, got {pos_weight!r}")
        if weight is not None and task in (BINARY, SEGMENTATION):
            if weight.numel() != 1:
                raise ImbalError(f"loss 'bce': task '{task}' takes one pos_weight, got {weight.numel()}")
            weight = weight.reshape(())
        n_labels = num_classes if task == MULTILABEL else None
        if weight is not None and n_labels is not None and weight.numel() not in (1, n_labels):
            raise ImbalError(
                f"loss 'bce': {weight.numel()} pos_weight values for {n_labels} labels, expected 1 or {n_labels}"
            )
        self.register_buffer("pos_weight", weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            x, t = elementwise(logits, target)
            # the fused reduction of F.binary_cross_entropy_with_logits (same values as "none" + mean)
            return F.binary_cross_entropy_with_logits(x, t, pos_weight=self.pos_weight, reduction=self.reduction)
