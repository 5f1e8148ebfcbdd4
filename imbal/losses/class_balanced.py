"""Class-balanced loss (Cui et al. 2019): losses re-weighted by the inverse effective number of samples."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import BINARY, MULTICLASS, MULTILABEL, SEGMENTATION, TASKS
from imbal.losses.base import (
    ImbalanceLoss,
    elementwise,
    check_gamma,
    check_reduction,
    effective_number_weights,
    fp32,
    no_autocast,
    reduce,
)

BASES = ("softmax", "sigmoid", "focal")


def class_balanced_weights(class_counts: Sequence[float], beta: float = 0.9999) -> Tensor:
    """``(1 - beta) / (1 - beta^n_c)``, normalised to sum to C (Cui et al. 2019, Eq. 4 and their code)."""
    return effective_number_weights(class_counts, beta, loss="class_balanced")


def _sigmoid_terms(x: Tensor, t: Tensor, gamma: float, focal: bool) -> Tensor:
    """Per-element BCE, times the focal modulator in the authors' log-domain form.

    ``exp(-gamma (t x + log(1 + exp(-x))))`` equals ``(1 - p_t)^gamma`` for t in {0, 1}
    (Cui et al.'s ``focal_loss``); written with softplus so it is finite and smooth
    at any logit, where ``(1 - p_t)^gamma`` with gamma = 0.5 has an infinite derivative at p_t = 1.
    """
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    if not focal or gamma == 0:
        return bce
    return torch.exp(-gamma * (t * x + F.softplus(-x))) * bce


def _one_hot_sigmoid_sum(x: Tensor, target: Tensor, gamma: float, focal: bool) -> Tensor:
    """``_sigmoid_terms(x, one_hot(target)).sum(-1)`` without the ``[N, C]`` one-hot.

    A negative's term is ``softplus(x) * exp(-gamma softplus(-x))``, the target's
    column is zeroed and the positive's term ``softplus(-x) * exp(-gamma softplus(x))``
    added per sample.  Same values (to rounding), fewer [N, C] temporaries.
    """
    idx = target.unsqueeze(-1)
    sp = F.softplus(x)
    neg = sp * torch.exp(-gamma * F.softplus(-x)) if focal and gamma != 0 else sp
    # zero the target column (not: subtract its term from the sum, which cancels
    # catastrophically when the target logit is large)
    neg = neg.scatter(-1, idx, 0.0)
    x_y = x.gather(-1, idx).squeeze(-1)
    pos_y = F.softplus(-x_y)
    if focal and gamma != 0:
        pos_y = pos_y * torch.exp(-gamma * F.softplus(x_y))
    return neg.sum(-1) + pos_y


class ClassBalancedLoss(ImbalanceLoss):
    """Class-balanced loss: a base loss weighted per class by ``(1 - beta) / (1 - beta^n_c)``.

    The weights are normalised to sum to C (a class with no training sample gets 0).
    Which weight applies to an element:
        multiclass: the weight of the sample's class, on every term of the sample (Cui et al.);
        multilabel: the weight of the label (counts = positives per label);
        binary / segmentation: ``w[1]`` on positives, ``w[0]`` on negatives
        (counts ``[n_neg, n_pos]``).

    Normalisation: the per-sample loss (summed over classes for the sigmoid and
    focal bases on ``[N, C]``) is averaged over N.  The authors' focal code divides
    the sum by ``sum(labels)`` (= N for one-hot targets: identical); their sigmoid
    code averages over N*C elements (a constant factor C) and their softmax code
    applies BCE to softmax probabilities; we use the paper's Eq. 5,
    ``-w_y log softmax_y``.  On ``[N]`` and ``[N, 1, H, W]`` shapes ``mean`` averages elements.

    Args:
        beta: effective-number hyper-parameter in [0, 1) (paper: 0.9999).
        gamma: focal exponent for ``base="focal"`` (paper: 0.5).
        base: ``softmax`` (multiclass only), ``sigmoid`` or ``focal`` (the authors' default).
        reduction: ``mean`` | ``sum`` | ``none``.

    Shape:
        multiclass: logits ``[N, C]``, target ``[N]`` int64.
        binary / multilabel: logits and float target of the same shape.
        segmentation (binary): logits ``[N, 1, H, W]``, target ``[N, H, W]`` float.

    Reference:
        Cui, Jia, Lin, Song, Belongie. Class-Balanced Loss Based on Effective Number
        of Samples. CVPR 2019.
    """

    tasks = TASKS

    def __init__(
        self,
        *,
        beta: float = 0.9999,
        gamma: float = 0.5,
        base: str = "focal",
        reduction: str = "mean",
        task: str = MULTICLASS,
        class_counts: Sequence[int],
    ):
        super().__init__()
        if base not in BASES:
            raise ImbalError(f"loss 'class_balanced': base '{base}' is not one of {', '.join(BASES)}")
        if base == "softmax" and task != MULTICLASS:
            raise ImbalError(f"loss 'class_balanced': base 'softmax' is for multiclass, got task '{task}'")
        self.gamma = check_gamma(gamma, loss="class_balanced")
        self.beta = float(beta)
        self.base = base
        self.task = task
        self.reduction = check_reduction(reduction)
        weight = class_balanced_weights(class_counts, beta)
        if task in (BINARY, SEGMENTATION) and weight.numel() != 2:
            raise ImbalError(
                f"loss 'class_balanced': task '{task}' needs class_counts [n_neg, n_pos], got {list(class_counts)!r}"
            )
        self.register_buffer("weight", weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            w = self.weight
            if self.task == MULTICLASS:
                x = fp32(logits)
                wy = w.to(x.dtype)[target]
                if self.base == "softmax":
                    loss = wy * F.cross_entropy(x, target, reduction="none")
                else:
                    loss = wy * _one_hot_sigmoid_sum(x, target, self.gamma, self.base == "focal")
                return reduce(loss, self.reduction)
            x, t = elementwise(logits, target)
            w = w.to(x.dtype)
            if self.task == MULTILABEL:
                wt = w  # [C], broadcast over the rows
            else:
                # w1 t + w0 (1 - t) as one lerp, exact at t = 0 and t = 1
                wt = torch.lerp(w[0], w[1], t)
            if self.base == "sigmoid" or self.gamma == 0:
                # the weight inside F.binary_cross_entropy_with_logits, with its fused reduction
                if self.task == MULTILABEL and self.reduction != "none":
                    loss = F.binary_cross_entropy_with_logits(x, t, weight=wt, reduction="sum")
                    return loss / x.shape[0] if self.reduction == "mean" and x.ndim > 1 else loss
                if self.task != MULTILABEL:
                    return F.binary_cross_entropy_with_logits(x, t, weight=wt, reduction=self.reduction)
                terms = F.binary_cross_entropy_with_logits(x, t, weight=wt, reduction="none")
            else:
                terms = wt * _sigmoid_terms(x, t, self.gamma, True)
            loss = terms.sum(-1) if self.task == MULTILABEL else terms
            return reduce(loss, self.reduction)
