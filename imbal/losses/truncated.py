"""Su Jianlin's truncated losses: hard-truncated cross-entropy and its smooth form."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import CLASSIFICATION, MULTICLASS
from imbal.losses.base import ImbalanceLoss, elementwise, check_reduction, fp32, no_autocast, reduce


def truncated_cross_entropy(
    logits: Tensor, target: Tensor, *, m: float = 0.6, task: str = MULTICLASS, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy with the terms already beyond the margin set to zero.

    multiclass: a sample's CE counts only when ``p_y <= m``.
    binary / multilabel (per element): a positive counts only when ``p <= m``, a
    negative only when ``p >= 1 - m`` (Su's ``lambda(y, p)``).
    ``mean`` divides by all N (or N*C) terms, kept or not, as Su's ``K.mean``.
    """
    if task == MULTICLASS:
        x = fp32(logits)
        log_pt = F.log_softmax(x, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
        keep = log_pt.detach() <= math.log(m)
        loss = torch.where(keep, -log_pt, torch.zeros_like(log_pt))
        return reduce(loss, reduction)
    x, t = elementwise(logits, target)
    p = torch.sigmoid(x.detach())
    # a positive is kept while p <= m, a negative while p >= 1 - m: one where instead of
    # seven boolean [N, C] ops, and the mask as BCE's weight (masked_fill is 4x slower than a multiply)
    keep = torch.where(t > 0.5, p <= m, p >= 1 - m)
    return F.binary_cross_entropy_with_logits(x, t, weight=keep, reduction=reduction)


def soft_truncated_loss(
    logits: Tensor, target: Tensor, *, k: float = 1.0, task: str = MULTICLASS, reduction: str = "mean"
) -> Tensor:
    """The smooth truncation: the step ``theta`` replaced by a sigmoid of slope K.

    binary / multilabel: ``-t sigmoid(-K x) log sigmoid(x) - (1 - t) sigmoid(K x) log sigmoid(-x)``
    (with K = 1 this is the binary focal loss with gamma = 1).
    multiclass: ``-softmax(-K z)_y log softmax(z)_y`` (for C = 2 the binary form again).
    Gradients flow through the weights, as in Su's formula.  ``mean`` as in
    :func:`truncated_cross_entropy`.
    """
    if task == MULTICLASS:
        x = fp32(logits)
        idx = target.unsqueeze(-1)
        log_pt = F.log_softmax(x, dim=-1).gather(-1, idx).squeeze(-1)
        w = F.softmax(-k * x, dim=-1).gather(-1, idx).squeeze(-1)
        return reduce(-w * log_pt, reduction)
    x, t = elementwise(logits, target)
    loss = -t * torch.sigmoid(-k * x) * F.logsigmoid(x) - (1 - t) * torch.sigmoid(k * x) * F.logsigmoid(-x)
    return reduce(loss, reduction)


class TruncatedCrossEntropy(ImbalanceLoss):
    """Hard-truncated cross-entropy: samples already classified beyond the margin m contribute nothing.

    Easy examples (mostly of the frequent classes) stop dominating the gradient
    once they are right by a margin, so training concentrates on the rest.

    Args:
        m: margin on the probability, in (0.5, 1] for binary/multilabel and (0, 1]
            for multiclass (Su: 0.6).  ``m = 1`` is plain cross-entropy.
        reduction: ``mean`` (over all terms) | ``sum`` | ``none``.

    Shape:
        multiclass: logits ``[N, C]``, target ``[N]`` int64.
        binary / multilabel: logits and float target of the same shape.

    Reference:
        Su Jianlin, "文本情感分类（四）：更好的损失函数" (kexue.fm/archives/4293), 2017.
    """

    tasks = CLASSIFICATION

    def __init__(self, *, m: float = 0.6, reduction: str = "mean", task: str = MULTICLASS):
        super().__init__()
        low = 0.0 if task == MULTICLASS else 0.5
        if not low < float(m) <= 1.0:
            raise ImbalError(f"loss 'truncated_ce': m must be in ({low}, 1] for task '{task}', got {m!r}")
        self.m = float(m)
        self.task = task
        self.reduction = check_reduction(reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            return truncated_cross_entropy(logits, target, m=self.m, task=self.task, reduction=self.reduction)


class SoftTruncatedLoss(ImbalanceLoss):
    """Soft-truncated loss: positives weighted by ``sigmoid(-K x)``, negatives by ``sigmoid(K x)``.

    The smooth version of :class:`TruncatedCrossEntropy`; K sets how sharp the
    truncation is.  With K = 1 it is the binary focal loss with gamma = 1.

    Args:
        K: slope of the smooth step (Su: 1), > 0.
        reduction: ``mean`` (over all terms) | ``sum`` | ``none``.

    Shape:
        multiclass: logits ``[N, C]``, target ``[N]`` int64.
        binary / multilabel: logits and float target of the same shape.

    Reference:
        Su Jianlin, "从loss的硬截断、软化到focal loss" (kexue.fm/archives/4733), 2017.
    """

    tasks = CLASSIFICATION

    def __init__(self, *, K: float = 1.0, reduction: str = "mean", task: str = MULTICLASS):  # noqa: N803
        super().__init__()
        if not (float(K) > 0 and math.isfinite(float(K))):
            raise ImbalError(f"loss 'soft_truncated': K must be a finite number > 0, got {K!r}")
        self.K = float(K)
        self.task = task
        self.reduction = check_reduction(reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            return soft_truncated_loss(logits, target, k=self.K, task=self.task, reduction=self.reduction)
