"""Asymmetric loss (ASL, Ridnik et al. 2021): multilabel/binary sigmoid form and single-label softmax form."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS, MULTILABEL, TASKS
from imbal.losses.base import (
    ImbalanceLoss,
    elementwise,
    check_gamma,
    check_reduction,
    fp32,
    no_autocast,
    reduce,
)


def _pow(base: Tensor, exponent: Tensor | float) -> Tensor:
    # Clamped at the smallest normal float so that d(x^g)/dx stays finite at x = 0 for g < 1.
    return base.clamp_min(torch.finfo(base.dtype).tiny).pow(exponent)


def asymmetric_loss_multilabel(
    logits: Tensor,
    target: Tensor,
    *,
    gamma_neg: float = 4.0,
    gamma_pos: float = 1.0,
    clip: float | None = 0.05,
    eps: float = 1e-8,
    disable_focal_grad: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """Per-element ASL: ``-[t (1-p)^g+ log p + (1-t) p_m^g- log(1-p_m)]`` with ``p_m = max(p - clip, 0)``.

    The formula of timm's ``AsymmetricLossMultiLabel`` (itself the authors' code):
    probabilities clamped at ``eps`` before the log, the clip shifted onto the
    negatives' ``1 - p``, the exponent ``gamma_pos * t + gamma_neg * (1 - t)`` (so soft
    targets interpolate it).  Reductions: ``mean`` over all elements (timm
    ``reduction='mean'``), ``sum`` (the authors' ``-loss.sum()``), ``none``.
    """
    x, t = elementwise(logits, target)
    u = 1 - t  # (no gradient: computed once, used three times)
    xs_pos = torch.sigmoid(x)
    xs_neg = 1 - xs_pos
    if clip is not None and clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    # t log p+ + (1 - t) log p-, the second product fused into an addcmul
    loss = torch.addcmul(t * torch.log(xs_pos.clamp(min=eps)), u, torch.log(xs_neg.clamp(min=eps)))
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not disable_focal_grad):
            pt = torch.addcmul(xs_pos * t, xs_neg, u)
            # gamma_pos t + gamma_neg (1 - t) (a lerp: exact at t = 0 and t = 1)
            g = torch.lerp(torch.full((), gamma_neg, dtype=x.dtype, device=x.device),
                           torch.full((), gamma_pos, dtype=x.dtype, device=x.device), t)
            base = 1 - pt
            # the clamp keeps d(x^g)/dx finite at x = 0 for g < 1; for g >= 1 it is finite anyway
            w = _pow(base, g) if min(gamma_neg, gamma_pos) < 1 else base.pow(g)
        loss = loss * w
    if reduction == "none":
        return -loss
    return -reduce(loss, reduction)


def asymmetric_loss_single_label(
    logits: Tensor,
    target: Tensor,
    *,
    gamma_neg: float = 4.0,
    gamma_pos: float = 1.0,
    label_smoothing: float = 0.1,
    disable_focal_grad: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """Softmax ASL: ``-sum_j q_j w_j log p_j``, ``w_y = (1 - p_y)^g+``, ``w_j = p_j^g-`` for j != y.

    ``q`` is the one-hot target smoothed by ``label_smoothing`` (``(1-e) onehot + e/C``),
    applied after the weights as in timm's ``AsymmetricLossSingleLabel``.  The
    per-sample loss sums over classes; ``mean`` averages over the N samples (timm's
    normalisation).  ``1 - p_y`` is ``-expm1(log p_y)`` and ``p_j^g`` is
    ``exp(g log p_j)``: the same values as timm's ``1 - p - (1 - p)`` without the cancellation.
    """
    x = fp32(logits)
    c = x.shape[-1]
    log_p = F.log_softmax(x, dim=-1)
    log_py = log_p.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
    grad_w = torch.is_grad_enabled() and not disable_focal_grad
    with torch.set_grad_enabled(grad_w):
        w_pos = _pow(-torch.expm1(log_py), gamma_pos)
    loss = -(1 - label_smoothing + label_smoothing / c) * w_pos * log_py
    if label_smoothing > 0:
        # The non-target terms, e/C * p_j^g- log p_j, as one dense sum over all classes
        # minus the target's own term: no [N, C] one-hot, mask or where (2x faster than
        # the dense form at C = 1000).
        with torch.set_grad_enabled(grad_w):
            w_all = torch.exp(gamma_neg * log_p) if gamma_neg != 0 else torch.ones_like(log_p)
            w_y = torch.exp(gamma_neg * log_py) if gamma_neg != 0 else torch.ones_like(log_py)
        neg = (w_all * log_p).sum(dim=-1) - w_y * log_py
        loss = loss - (label_smoothing / c) * neg
    return reduce(loss, reduction)


class AsymmetricLoss(ImbalanceLoss):
    """Asymmetric loss (ASL): focal-style weights with a larger exponent on negatives, plus probability clipping.

    Sigmoid form for ``multilabel``, ``binary`` and ``segmentation``; single-label
    softmax form for ``multiclass``.  Always computed in float32 (autocast is
    switched off inside: in bf16/fp16 the probabilities underflow the ``eps`` clamp).

    Normalisation (libraries differ): the sigmoid form's ``mean`` averages over all
    elements (timm ``reduction='mean'``); the authors' code returns ``-sum`` (our
    ``sum``); timm's default ``batchmean`` is our ``sum`` / N.  The single-label
    form's ``mean`` averages the per-sample sums over classes over N, as timm.

    Args:
        gamma_neg: exponent on negatives (paper: 4).
        gamma_pos: exponent on positives (paper: 1; the authors' single-label code uses 0).
        clip: probability margin m shifted onto negatives (paper: 0.05); sigmoid form only.
        eps: clamp of the probabilities before the log (paper: 1e-8); sigmoid form only.
        label_smoothing: single-label form only; ``None`` = the authors' 0.1.
        disable_focal_grad: no gradient through the focusing weights (the
            authors' ``disable_torch_grad_focal_loss``; timm default False).
        reduction: ``mean`` | ``sum`` | ``none``.

    Shape:
        multiclass: logits ``[N, C]``, target ``[N]`` int64.
        binary / multilabel: logits and float target of the same shape.
        segmentation (binary): logits ``[N, 1, H, W]``, target ``[N, H, W]`` float.

    Written here rather than wrapping timm (which the tests use as the reference):
    timm's single-label form builds a one-hot, a mask and a ``pow`` over ``[N, C]`` (4x
    slower at C = 1000, see bench/README.md) and has no ``disable_focal_grad``; its
    multilabel form takes neither the ``[N]`` binary nor the segmentation shapes.

    Reference:
        Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter, Zelnik-Manor. Asymmetric
        Loss For Multi-Label Classification. ICCV 2021.  timm.loss.AsymmetricLossMultiLabel /
        AsymmetricLossSingleLabel.
    """

    tasks = TASKS

    def __init__(
        self,
        *,
        gamma_neg: float = 4.0,
        gamma_pos: float = 1.0,
        clip: float | None = 0.05,
        eps: float = 1e-8,
        label_smoothing: float | None = None,
        disable_focal_grad: bool = False,
        reduction: str = "mean",
        task: str = MULTILABEL,
    ):
        super().__init__()
        self.gamma_neg = check_gamma(gamma_neg, loss="asymmetric", name="gamma_neg")
        self.gamma_pos = check_gamma(gamma_pos, loss="asymmetric", name="gamma_pos")
        if clip is not None and not 0.0 <= float(clip) < 1.0:
            raise ImbalError(f"loss 'asymmetric': clip must be in [0, 1) or None, got {clip!r}")
        if not 0.0 < float(eps) < 1.0:
            raise ImbalError(f"loss 'asymmetric': eps must be in (0, 1), got {eps!r}")
        if label_smoothing is None:
            label_smoothing = 0.1 if task == MULTICLASS else 0.0
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ImbalError(f"loss 'asymmetric': label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if task != MULTICLASS and label_smoothing:
            raise ImbalError(f"loss 'asymmetric': label_smoothing is for the multiclass form, got task '{task}'")
        self.clip = None if clip is None else float(clip)
        self.eps = float(eps)
        self.label_smoothing = float(label_smoothing)
        self.disable_focal_grad = bool(disable_focal_grad)
        self.reduction = check_reduction(reduction)
        self.task = task

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            if self.task == MULTICLASS:
                return asymmetric_loss_single_label(
                    logits,
                    target,
                    gamma_neg=self.gamma_neg,
                    gamma_pos=self.gamma_pos,
                    label_smoothing=self.label_smoothing,
                    disable_focal_grad=self.disable_focal_grad,
                    reduction=self.reduction,
                )
            return asymmetric_loss_multilabel(
                logits,
                target,
                gamma_neg=self.gamma_neg,
                gamma_pos=self.gamma_pos,
                clip=self.clip,
                eps=self.eps,
                disable_focal_grad=self.disable_focal_grad,
                reduction=self.reduction,
            )
