"""Focal loss (Lin et al. 2017), softmax and sigmoid forms, with optional DRW."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS, TASKS
from imbal.losses.base import (
    DeferredReweighting,
    ImbalanceLoss,
    elementwise,
    check_gamma,
    check_reduction,
    fp32,
    no_autocast,
    reduce,
)


def _modulator(one_minus_pt: Tensor, gamma: float) -> Tensor:
    """``(1 - p_t)^gamma`` with a finite gradient everywhere.

    For gamma < 1 the derivative of ``x^gamma`` is infinite at x = 0 (a sample
    classified with p_t = 1, reached at large logits), and inf * 0 = NaN in the
    backward pass; clamping at the smallest normal float keeps the value (to 1e-38)
    and makes the gradient finite.
    """
    return one_minus_pt.clamp_min(torch.finfo(one_minus_pt.dtype).tiny).pow(gamma)


def softmax_focal_loss(
    logits: Tensor, target: Tensor, *, gamma: float = 2.0, alpha: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Multiclass focal loss: ``-alpha_t (1 - p_t)^gamma log p_t``.

    ``alpha`` is an optional ``[C]`` tensor of class weights; ``mean`` divides
    by N (not by the sum of alpha), as the paper's normalisation by the
    number of samples.  With ``gamma=0`` and no alpha this is cross-entropy.
    """
    if gamma == 0 and alpha is None:  # cross-entropy: the fused kernel
        return F.cross_entropy(fp32(logits), target, reduction=reduction)
    log_pt = F.log_softmax(fp32(logits), dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    # 1 - p_t as -expm1(log p_t): exact near p_t = 1 where 1 - exp() cancels.
    one_minus_pt = (-torch.expm1(log_pt)).clamp_min(0.0)
    loss = -_modulator(one_minus_pt, gamma) * log_pt if gamma != 0 else -log_pt
    if alpha is not None:
        loss = alpha.to(loss.dtype)[target] * loss
    return reduce(loss, reduction)


def sigmoid_focal_loss(
    logits: Tensor, target: Tensor, *, gamma: float = 2.0, alpha: float | None = None, reduction: str = "mean"
) -> Tensor:
    """Sigmoid focal loss per element; equals ``torchvision.ops.sigmoid_focal_loss``.

    Written here rather than calling torchvision's: theirs has a NaN gradient at a
    saturated logit for gamma < 1 (``0 ** (gamma - 1)``), does not take the
    segmentation shapes, and would make torchvision a dependency of every loss.

    ``alpha`` weights positives by alpha and negatives by 1 - alpha; ``None``
    (torchvision's ``alpha=-1``) disables it.  ``mean`` averages over elements.
    Accepts binary segmentation shapes (logits ``[N, 1, H, W]``, target ``[N, H, W]``).
    """
    x, t = elementwise(logits, target)
    if gamma == 0 and alpha is None:
        return F.binary_cross_entropy_with_logits(x, t, reduction=reduction)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    loss = ce
    if gamma != 0:
        # 1 - p_t = p (1 - t) + (1 - p) t = t + p (1 - 2t): one fused addcmul instead of five
        # [N, ...] temporaries (bit-identical for t in {0, 1}: p, or 1 - p).
        one_minus_pt = torch.addcmul(t, torch.sigmoid(x), 1 - 2 * t)
        # (x^gamma has a finite derivative at 0 for gamma >= 1: the clamp is only needed below 1)
        mod = _modulator(one_minus_pt, gamma) if gamma < 1 else one_minus_pt.pow(gamma)
        loss = ce * mod
    if alpha is not None:
        # alpha t + (1 - alpha)(1 - t) as a lerp: exact at t = 0 and t = 1, one op
        a = torch.full((), alpha, dtype=x.dtype, device=x.device)
        loss = torch.lerp(1 - a, a, t) * loss
    return reduce(loss, reduction)


class FocalLoss(DeferredReweighting, ImbalanceLoss):
    """Focal loss, Lin et al. 2017: down-weights easy examples by ``(1 - p_t)^gamma``.

    Softmax form for ``multiclass``; sigmoid (per-element) form for ``binary``,
    ``multilabel`` and ``segmentation``.

    Args:
        gamma: focusing parameter, >= 0 (paper: 2).
        alpha: sigmoid form: weight of positives in [0, 1] (paper: 0.25;
            default ``None`` = unweighted, torchvision's ``alpha=-1``).
            Softmax form: a list of C class weights or ``None``.
        drw_epoch: multiclass only: deferred re-weighting (Cao et al. 2019).  From
            this epoch on the class-balanced weights (``drw_beta``) multiply each
            sample's focal term (they replace ``alpha``); ``mean`` then divides by N,
            as the focal loss of the LDAM-DRW reference code.  Needs class_counts.
        drw_beta: beta of the DRW weights (paper: 0.9999).
        reduction: ``mean`` | ``sum`` | ``none``.

    Shape:
        multiclass: logits ``[N, C]``, target ``[N]`` int64.
        binary / multilabel: logits and float target of the same shape.
        segmentation (binary): logits ``[N, 1, H, W]``, target ``[N, H, W]`` float.

    Reference:
        Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection. ICCV 2017.
        (The LDAM-DRW code computes ``exp(-w_y CE)`` as p_t when weighted; we keep
        the paper's ``alpha_t (1 - p_t)^gamma CE`` with alpha_t = w_y.)
    """

    tasks = TASKS

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        drw_epoch: int | None = None,
        drw_beta: float = 0.9999,
        reduction: str = "mean",
        task: str = MULTICLASS,
        class_counts: Sequence[int] | None = None,
    ):
        super().__init__()
        self.gamma = check_gamma(gamma, loss="focal")
        self.reduction = check_reduction(reduction)
        self.task = task
        self.alpha_scalar: float | None = None
        if task == MULTICLASS:
            if alpha is not None and not isinstance(alpha, (list, tuple)) and not hasattr(alpha, "__len__"):
                raise ImbalError(f"loss 'focal': multiclass alpha must be a list of class weights, got {alpha!r}")
            self.register_buffer(
                "alpha", None if alpha is None else torch.as_tensor(list(alpha), dtype=torch.float32)
            )
        else:
            if alpha is not None and not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
                raise ImbalError(f"loss 'focal': sigmoid alpha must be a number in [0, 1], got {alpha!r}")
            if drw_epoch is not None:
                raise ImbalError(f"loss 'focal': drw_epoch is for the multiclass (softmax) form, got task '{task}'")
            self.alpha_scalar = None if alpha is None else float(alpha)
            self.register_buffer("alpha", None)
        self.init_drw(drw_epoch, drw_beta, class_counts, loss="focal")

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            if self.task == MULTICLASS:
                weight = self.current_weight()
                alpha = self.alpha if weight is None else weight
                return softmax_focal_loss(logits, target, gamma=self.gamma, alpha=alpha, reduction=self.reduction)
            return sigmoid_focal_loss(
                logits, target, gamma=self.gamma, alpha=self.alpha_scalar, reduction=self.reduction
            )
