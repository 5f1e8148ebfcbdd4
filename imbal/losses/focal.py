"""Focal loss (Lin et al. 2017), softmax and sigmoid forms."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.losses.base import ImbalanceLoss, check_reduction, reduce


def softmax_focal_loss(
    logits: Tensor, target: Tensor, *, gamma: float = 2.0, alpha: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Multiclass focal loss: ``-alpha_t (1 - p_t)^gamma log p_t``.

    ``alpha`` is an optional ``[C]`` tensor of class weights; ``mean`` divides
    by N (not by the sum of alpha), as the paper's normalisation by the
    number of samples.  With ``gamma=0`` and no alpha this is cross-entropy.
    """
    log_pt = F.log_softmax(logits.float(), dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    # 1 - p_t as -expm1(log p_t): exact near p_t = 1 where 1 - exp() cancels.
    one_minus_pt = (-torch.expm1(log_pt)).clamp_min(0.0)
    loss = -(one_minus_pt.pow(gamma)) * log_pt if gamma != 0 else -log_pt
    if alpha is not None:
        loss = alpha.to(loss.dtype)[target] * loss
    return reduce(loss, reduction)


def sigmoid_focal_loss(
    logits: Tensor, target: Tensor, *, gamma: float = 2.0, alpha: float | None = None, reduction: str = "mean"
) -> Tensor:
    """Sigmoid focal loss per element; equals ``torchvision.ops.sigmoid_focal_loss``.

    ``alpha`` weights positives by alpha and negatives by 1 - alpha; ``None``
    (torchvision's ``alpha=-1``) disables it.  ``mean`` averages over elements.
    """
    x = logits.float()
    t = target.to(x.dtype)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p = torch.sigmoid(x)
    one_minus_pt = p * (1 - t) + (1 - p) * t
    loss = ce * one_minus_pt.pow(gamma) if gamma != 0 else ce
    if alpha is not None:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return reduce(loss, reduction)


class FocalLoss(ImbalanceLoss):
    """Focal loss, Lin et al. 2017: down-weights easy examples by ``(1 - p_t)^gamma``.

    Softmax form for ``multiclass``; sigmoid (per-element) form for ``binary``,
    ``multilabel`` and ``segmentation``.

    Args:
        gamma: focusing parameter, >= 0 (paper: 2).
        alpha: sigmoid form: weight of positives in [0, 1] (paper: 0.25;
            default ``None`` = unweighted, torchvision's ``alpha=-1``).
            Softmax form: a list of C class weights or ``None``.
        reduction: ``mean`` | ``sum`` | ``none``.

    Shape:
        multiclass: logits ``[N, C]``, target ``[N]`` int64.
        binary / multilabel / segmentation: logits and float target of the same shape.

    Reference:
        Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection. ICCV 2017.
    """

    tasks = ("multiclass", "binary", "multilabel", "segmentation")

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        reduction: str = "mean",
        task: str = "multiclass",
    ):
        super().__init__()
        if gamma < 0:
            raise ImbalError(f"loss 'focal': gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.reduction = check_reduction(reduction)
        self.task = task
        self.alpha_scalar: float | None = None
        if task == "multiclass":
            if alpha is not None and not isinstance(alpha, (list, tuple)) and not hasattr(alpha, "__len__"):
                raise ImbalError(f"loss 'focal': multiclass alpha must be a list of class weights, got {alpha!r}")
            self.register_buffer(
                "alpha", None if alpha is None else torch.as_tensor(list(alpha), dtype=torch.float32)
            )
        else:
            if alpha is not None and not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
                raise ImbalError(f"loss 'focal': sigmoid alpha must be a number in [0, 1], got {alpha!r}")
            self.alpha_scalar = None if alpha is None else float(alpha)
            self.register_buffer("alpha", None)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.task == "multiclass":
            return softmax_focal_loss(logits, target, gamma=self.gamma, alpha=self.alpha, reduction=self.reduction)
        return sigmoid_focal_loss(
            logits, target, gamma=self.gamma, alpha=self.alpha_scalar, reduction=self.reduction
        )
