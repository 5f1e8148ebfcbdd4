"""Softmax equalization loss (Tan et al. 2020)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS
from imbal.losses.base import ImbalanceLoss, check_reduction, counts_tensor, fp32, no_autocast


def softmax_equalization_loss(
    logits: Tensor, target: Tensor, tail: Tensor, *, gamma: float = 0.9, reduction: str = "mean"
) -> Tensor:
    """``-z_y + log sum_k w_k exp(z_k)`` with ``w_k = 1 - beta_k T(f_k) (1 - y_k)``.

    ``tail`` is the ``[C]`` boolean ``T_lambda(f_k)`` (class frequency below lambda);
    ``beta_k`` is drawn per element from Bernoulli(gamma).  A suppressed class
    (w_k = 0) is masked with -inf inside the log-softmax, so no exp() overflows at any
    logit and the target term (w_y = 1 always) keeps the sum finite.
    """
    x = fp32(logits)
    not_target = torch.ones_like(x, dtype=torch.bool).scatter_(-1, target.unsqueeze(-1), False)
    suppress = not_target & tail.to(x.device).unsqueeze(0)
    if gamma < 1.0:  # gamma = 1 suppresses always, gamma = 0 never (then this is cross-entropy)
        suppress = suppress & (torch.rand(x.shape, device=x.device) < gamma)
    # CE of the masked logits = logsumexp(masked) - z_y; F.cross_entropy's fused
    # log-softmax is 3x faster than torch.logsumexp here, and exp(-inf) = 0 in its backward.
    return F.cross_entropy(x.masked_fill(suppress, float("-inf")), target, reduction=reduction)


class EqualizationLoss(ImbalanceLoss):
    """Softmax equalization loss (EQL): the negative gradients of rare classes are randomly dropped.

    For a sample of class y, each rare class k != y (training frequency
    ``n_k / n < lambda``) is removed from the softmax denominator with probability
    ``gamma``; the sample then no longer pushes the rare class's logit down.
    ``gamma=0`` is cross-entropy.  The draw is made with torch's global RNG
    (seeded by the run's seed) at every forward, in train and eval mode alike.

    Args:
        lambda_: frequency threshold of a "rare" class (issue default 0.05;
            config key ``lambda_`` since ``lambda`` is a Python keyword).
        gamma: probability that a rare class is suppressed for a sample (paper: 0.9).
        reduction: ``mean`` | ``sum`` | ``none``.

    Shape:
        logits ``[N, C]``, target ``[N]`` int64.

    Reference:
        Tan, Wang, Li, Li, Ouyang, Yin, Yan. Equalization Loss for Long-Tailed
        Object Recognition. CVPR 2020, Eq. 7-8 (softmax EQL for image classification).
    """

    tasks = (MULTICLASS,)

    def __init__(
        self, *, lambda_: float = 0.05, gamma: float = 0.9, reduction: str = "mean", class_counts: Sequence[int]
    ):
        super().__init__()
        if not 0.0 <= float(lambda_) <= 1.0:
            raise ImbalError(f"loss 'equalization': lambda_ must be a frequency in [0, 1], got {lambda_!r}")
        if not 0.0 <= float(gamma) <= 1.0:
            raise ImbalError(f"loss 'equalization': gamma must be a probability in [0, 1], got {gamma!r}")
        self.lambda_ = float(lambda_)
        self.gamma = float(gamma)
        self.reduction = check_reduction(reduction)
        counts = counts_tensor(class_counts, loss="equalization")
        if counts.sum() <= 0:
            raise ImbalError(f"loss 'equalization': class_counts sum to zero, got {list(class_counts)!r}")
        self.register_buffer("tail", (counts / counts.sum()) < self.lambda_)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with no_autocast(logits.device.type):
            return softmax_equalization_loss(logits, target, self.tail, gamma=self.gamma, reduction=self.reduction)
