"""Lovasz hinge loss (Berman, Rannen Triki, Blaschko 2018): a convex surrogate of the Jaccard loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import BINARY, SEGMENTATION
from imbal.losses.base import ImbalanceLoss, as_elementwise, check_reduction, no_autocast, reduce


def lovasz_hinge(logits: Tensor, target: Tensor, *, per_image: bool = True, reduction: str = "mean") -> Tensor:
    """Binary Lovasz hinge on logits, as the authors' ``lovasz_hinge`` (Alg. 1 of the paper).

    Hinge errors ``1 - logit * sign`` (sign = +1 ship, -1 background) are sorted
    in decreasing order and weighted by the increments of the Jaccard loss
    along that order (the Lovasz extension's gradient).  Vectorised over images:
    one sort of ``[N, H*W]`` instead of the reference's Python loop.

    Empty mask: the Jaccard loss is 1 for any false positive, so the weights
    are ``(1, 0, 0, ...)`` and the loss is ``relu(1 + max logit)``: the hinge of the
    most confident pixel, whose gradient pushes it below -1.
    """
    x, t = as_elementwise(logits, target)
    if per_image and x.ndim >= 2:
        x, t = x.reshape(x.shape[0], -1), t.reshape(t.shape[0], -1)
    else:
        x, t = x.reshape(1, -1), t.reshape(1, -1)
    signs = 2.0 * t - 1.0
    errors = 1.0 - x * signs
    errors_sorted, perm = torch.sort(errors, dim=1, descending=True)
    gt_sorted = t.gather(1, perm)
    gts = gt_sorted.sum(1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(1)
    union = gts + (1.0 - gt_sorted).cumsum(1)  # >= 1 at every position
    jaccard = 1.0 - intersection / union
    grad = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)
    loss = (F.relu(errors_sorted) * grad).sum(1)
    if not per_image:
        return loss.squeeze(0) if reduction != "none" else loss
    return reduce(loss, reduction)


class LovaszHingeLoss(ImbalanceLoss):
    """Lovasz hinge loss for binary segmentation, on logits.

    Args:
        per_image: one loss per image, averaged (the authors' default for
            ``lovasz_hinge``); ``False`` treats the batch as one image (smp's default).
        reduction: over images when ``per_image``: ``mean`` | ``sum`` | ``none``.

    Shape:
        logits ``[N, 1, H, W]`` (or ``[N]`` binary), target ``[N, H, W]`` 0/1.

    Reference:
        Berman, Rannen Triki, Blaschko. The Lovasz-Softmax loss: a tractable
        surrogate for the optimization of the intersection-over-union measure
        in neural networks. CVPR 2018.
    """

    tasks = (SEGMENTATION, BINARY)

    def __init__(self, *, per_image: bool = True, reduction: str = "mean"):
        super().__init__()
        self.per_image = bool(per_image)
        self.reduction = check_reduction(reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.ndim == 4 and logits.shape[1] != 1:
            raise ImbalError(f"loss 'lovasz' is binary: expected logits [N, 1, H, W], got {tuple(logits.shape)}")
        with no_autocast(logits.device.type):  # float32 cumsums whatever the autocast dtype
            return lovasz_hinge(logits, target, per_image=self.per_image, reduction=self.reduction)
